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
