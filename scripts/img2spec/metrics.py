"""Agreement between predicted and observed spectra."""

from __future__ import annotations

import numpy as np


def mean_relative_deviation(
    predicted_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Δ̄ per spectrum (the paper's eq. 9): mean over good pixels of |F_pred − F_obs| / F_obs.

    Parameters
    ----------
    predicted_ln, observed_ln : ndarray, (N, L)
        Natural log of normalised flux.
    mask : ndarray of bool, (N, L), optional
        True where the observed pixel is not a measurement; left out.
    """
    predicted, observed = np.exp(predicted_ln), np.exp(observed_ln)
    good = np.ones_like(observed, bool) if mask is None else ~mask
    deviation = np.where(good, np.abs(predicted - observed) / observed, 0.0)
    return deviation.sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def mse(predicted_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean squared difference of the log spectra over good pixels, per spectrum."""
    good = np.ones_like(observed_ln, bool) if mask is None else ~mask
    return np.where(good, (predicted_ln - observed_ln) ** 2, 0.0).sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def band_coverage(
    lower_ln: np.ndarray, upper_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Fraction of good observed pixels inside [lower, upper] (0.68 for calibrated 16–84% bands)."""
    good = np.ones_like(observed_ln, bool) if mask is None else ~mask
    inside = (observed_ln >= lower_ln) & (observed_ln <= upper_ln)
    return float(inside[good].mean())


def chi2_per_pixel(
    predicted_ln: np.ndarray, observed_ln: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """χ²/N per spectrum in linear normalised flux with the observed inverse variance (good pixels with ivar > 0)."""
    good = (ivar > 0) if mask is None else (~mask & (ivar > 0))
    residual = np.exp(predicted_ln) - np.exp(observed_ln)
    return np.where(good, residual**2 * ivar, 0.0).sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def sigma_mad(values: np.ndarray) -> float:
    """1.4826 × median absolute deviation from the median of the finite values: a robust Gaussian σ."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else float("nan")


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Counts (n_classes, n_classes): rows the actual class, columns the predicted one."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, (np.vectorize(index.get)(actual), np.vectorize(index.get)(predicted)), 1)
    return matrix


def classification_scores(actual: np.ndarray, predicted: np.ndarray, positive: str = "AGN") -> dict[str, float]:
    """Overall accuracy, and accuracy, precision and recall of ``positive`` against the rest."""
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    true_pos = np.sum((actual == positive) & (predicted == positive))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": float(np.mean(actual == predicted)),
            f"{positive}_accuracy": float(np.mean((actual == positive) == (predicted == positive))),
            f"{positive}_precision": float(true_pos / np.sum(predicted == positive))
            if np.any(predicted == positive)
            else float("nan"),
            f"{positive}_recall": float(true_pos / np.sum(actual == positive))
            if np.any(actual == positive)
            else float("nan"),
        }


def monte_carlo_scores(
    classify_actual,
    classify_predicted,
    actual: dict,
    predicted: dict,
    relative_errors: dict[str, float],
    ew_error: float,
    draws: int,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean and spread of :func:`classification_scores` when the measurements are perturbed.

    Parameters
    ----------
    classify_actual, classify_predicted : callable
        ``classify(fluxes: dict, ew: ndarray) -> classes`` for the actual and the predicted set.
    actual, predicted : dict
        ``{"fluxes": {line: ndarray}, "ew": ndarray}`` of the two sets.
    relative_errors : dict
        Gaussian relative error per line (the paper: 15% Hβ and [O III], 20% Hα, 30% [N II]).
    ew_error : float
        Gaussian error of EW(Hα) [Å] (the paper: 1 Å).
    draws : int
        Monte-Carlo draws (the paper: 5,000).
    """
    rng = np.random.default_rng(seed)

    def perturbed(classify, inputs):
        fluxes = {k: v * (1 + relative_errors[k] * rng.standard_normal(v.shape)) for k, v in inputs["fluxes"].items()}
        return classify(fluxes, inputs["ew"] + ew_error * rng.standard_normal(inputs["ew"].shape))

    samples = [
        classification_scores(perturbed(classify_actual, actual), perturbed(classify_predicted, predicted))
        for _ in range(draws)
    ]
    return {
        key: {"mean": float(np.nanmean([s[key] for s in samples])), "std": float(np.nanstd([s[key] for s in samples]))}
        for key in samples[0]
    }


# --------------------------------------------------------------------------- plausibility of the lines
#: EW(Hα) [Å] above which a predicted line counts as emission where the observed spectrum has none
#: (< :data:`img2spec.spectral.PASSIVE_EW_HALPHA`), and which an observed line must pass to count as
#: missed when the prediction falls below 1 Å.
FALSE_EMISSION_EW = 3.0
#: Observed EW(Hα) [Å] above which a galaxy counts as emitting, for line-flux biases.
EMITTING_EW = 5.0
#: Rest-frame distances [Å] from a Balmer line searched for a trough, and the continuum windows.
SIDE_LOBE_RANGE = (4.0, 25.0)
SIDE_LOBE_CONTINUUM = (30.0, 60.0)
#: A trough deeper than this fraction of the local continuum is a side-lobe.
SIDE_LOBE_DEPTH = 0.7
#: Width [pixels] of the running median whose residual is the fine structure of a spectrum.
FINE_STRUCTURE_WIDTH = 31


def emission_plausibility(
    ew_observed: np.ndarray,
    ew_predicted: np.ndarray,
    passive_ew: float,
    false_ew: float = FALSE_EMISSION_EW,
) -> dict[str, float]:
    """False- and missed-emission rates of a predictor against the observed spectra.

    ``false_emission_rate``: of the galaxies whose observed EW(Hα) [Å, emission positive] is below
    ``passive_ew``, the fraction predicted above ``false_ew``; ``missed_emission_rate``: of those
    observed above ``false_ew``, the fraction predicted below ``passive_ew``.  A galaxy with a
    non-finite EW in either spectrum is left out.
    """
    ok = np.isfinite(ew_observed) & np.isfinite(ew_predicted)
    passive = ok & (ew_observed < passive_ew)
    emitting = ok & (ew_observed > false_ew)
    return {
        "n_passive_observed": int(passive.sum()),
        "false_emission_rate": float(np.mean(ew_predicted[passive] > false_ew)) if passive.any() else float("nan"),
        "n_emitting_observed": int(emitting.sum()),
        "missed_emission_rate": float(np.mean(ew_predicted[emitting] < passive_ew)) if emitting.any() else float("nan"),
    }


def line_flux_bias(predicted: np.ndarray, observed: np.ndarray, draws: int = 500, seed: int = 0) -> dict[str, float]:
    """Median log10(predicted / observed) of one line's fluxes, with its bootstrap spread.

    Only galaxies where both fluxes are positive and finite count.  ``bootstrap_std`` is the
    standard deviation of the median over ``draws`` resamplings of the galaxies.
    """
    ok = np.isfinite(predicted) & np.isfinite(observed) & (predicted > 0) & (observed > 0)
    ratio = np.log10(predicted[ok] / observed[ok])
    if ratio.size == 0:
        return {"n": 0, "median_log_ratio": float("nan"), "bootstrap_std": float("nan")}
    rng = np.random.default_rng(seed)
    medians = np.median(ratio[rng.integers(0, ratio.size, (draws, ratio.size))], axis=1)
    return {"n": int(ratio.size), "median_log_ratio": float(np.median(ratio)), "bootstrap_std": float(np.std(medians))}


def side_lobe_depth(
    wave: np.ndarray, flux_ln: np.ndarray, mask: np.ndarray, z: np.ndarray, line_rest: float
) -> np.ndarray:
    """Deepest pixel 4–25 Å (rest) on either side of a line, over the median of the continuum 30–60 Å away.

    Parameters
    ----------
    wave : ndarray, (L,)
        Observed wavelengths [Å].
    flux_ln : ndarray, (N, L)
        Natural log of normalised flux.
    mask : ndarray of bool, (N, L)
        Pixels left out.
    z : ndarray, (N,)
        Redshift each spectrum is at.
    line_rest : float
        Rest (vacuum) wavelength of the line [Å].

    Returns
    -------
    ndarray, (N,)
        The ratio (1 for no trough, below :data:`SIDE_LOBE_DEPTH` for a side-lobe); NaN where a
        window has no good pixel or lies outside ``wave``.
    """
    flux = np.exp(flux_ln)
    out = np.full(len(flux), np.nan)
    for i, zi in enumerate(np.asarray(z, float)):
        if not np.isfinite(zi):
            continue
        offset = np.abs(wave / (1 + zi) - line_rest)
        good = ~mask[i] & np.isfinite(flux[i])
        trough = good & (offset >= SIDE_LOBE_RANGE[0]) & (offset <= SIDE_LOBE_RANGE[1])
        continuum = good & (offset >= SIDE_LOBE_CONTINUUM[0]) & (offset <= SIDE_LOBE_CONTINUUM[1])
        if trough.any() and continuum.sum() > 10:
            out[i] = flux[i, trough].min() / np.median(flux[i, continuum])
    return out


def fine_structure_power(flux_ln: np.ndarray, mask: np.ndarray, width: int = FINE_STRUCTURE_WIDTH) -> np.ndarray:
    """Mean squared residual of ln flux about its running median of ``width`` pixels, over good pixels (N,)."""
    from scipy.ndimage import median_filter

    filled = np.where(mask, np.nan, flux_ln)
    # masked pixels take their neighbours' values so that the running median is not pulled by them
    for row in filled:
        bad = ~np.isfinite(row)
        if bad.all():
            row[:] = 0.0
        elif bad.any():
            row[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), row[~bad])
    residual = filled - median_filter(filled, size=(1, width), mode="nearest")
    good = ~mask & np.isfinite(flux_ln)
    return np.where(good, residual**2, 0.0).sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def noise_power(flux_ln: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean variance of ln flux from the observational noise, σ²/F² = 1/(ivar F²), over good pixels (N,)."""
    flux = np.exp(flux_ln)
    good = ~mask & (ivar > 0)
    variance = np.where(good, 1.0 / np.where(good, ivar * flux**2, 1.0), 0.0)
    return variance.sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def window_ew(
    wave: np.ndarray, flux_ln: np.ndarray, mask: np.ndarray, z: np.ndarray, line_rest: float, half_width: float = 10.0
) -> np.ndarray:
    """Rest-frame EW [Å, emission positive] of the flux within ``half_width`` Å (rest) of a line over the median
    continuum 30–60 Å away: a quick line strength without a stellar fit (to pick example galaxies); NaN where not covered."""
    flux = np.exp(flux_ln)
    out = np.full(len(flux), np.nan)
    step = float(wave[1] - wave[0])
    for i, zi in enumerate(np.asarray(z, float)):
        if not np.isfinite(zi):
            continue
        offset = np.abs(wave / (1 + zi) - line_rest)
        good = ~mask[i] & np.isfinite(flux[i])
        inner = good & (offset <= half_width)
        continuum = good & (offset >= SIDE_LOBE_CONTINUUM[0]) & (offset <= SIDE_LOBE_CONTINUUM[1])
        if inner.sum() > half_width and continuum.sum() > 10:
            level = np.median(flux[i, continuum])
            out[i] = np.sum(flux[i, inner] / level - 1.0) * step / (1 + zi)
    return out
