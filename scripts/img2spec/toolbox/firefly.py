"""The FIREFLY method (Wilkinson et al. 2017), implemented anew.

The original FIREFLY code is on no package index and carries no licence, so this module follows
the method as published, in its own code:

1. The spectrum is put in the rest frame (air) and emission lines are masked.
2. The SSP models are convolved to the galaxy's σ* and the instrumental resolution.
3. Dust without a parametric curve in the fit: a high-pass filter (HPF; here the ratio to a
   Gaussian low-pass of width ``hpf_width`` Å) removes the continuum shape from data and models,
   the best combination is found on the filtered spectra, and the ratio of the low-passed data to
   the low-passed unattenuated model is matched to a Calzetti (2000) curve, giving E(B−V).
4. The attenuated models are combined iteratively: every single SSP, then each of the best
   ``beam`` combinations extended by every other SSP, with non-negative weights; a level is
   accepted only while it lowers the Bayesian information criterion BIC = χ² + k ln N.
5. Every combination tried gives properties; they are averaged with likelihood weights
   exp(−Δχ²/2), which also gives their spread.

Departures from the original: the dust ratio is fitted by least squares to one Calzetti curve
instead of matching a tabulated set of curves; the combinations are solved exactly for
non-negative weights instead of on a fixed grid of weight fractions; properties are light-weighted
by each SSP's share of the model flux over the fitted pixels; and ``bootstrap`` wild-bootstrap
refits (residuals times random signs) add the noise-driven error in quadrature.
"""

from __future__ import annotations

import numpy as np

from ..dust import calzetti_k
from ..preprocessing import gaussian_smooth
from ..units import C_KMS
from .spectra import RestSpectrum, TemplateGrid, broaden_velocity, to_rest_frame
from .stellar import emission_mask, fit_window


def _low_pass(flux: np.ndarray, good: np.ndarray, width_pix: float) -> np.ndarray:
    """Gaussian low-pass along the last axis, bad pixels bridged by interpolation first."""
    x = np.arange(flux.shape[-1])
    filled = np.array([np.interp(x, x[good], row[good]) for row in np.atleast_2d(flux)])
    return gaussian_smooth(filled, width_pix).reshape(np.shape(flux))


def _combination_search(
    gram: np.ndarray, rhs: np.ndarray, yy: float, n_pix: int, beam: int, max_components: int
) -> list[tuple[tuple[int, ...], np.ndarray, float]]:
    """All combinations tried, as (SSP indices, non-negative weights, χ²), by the BIC-guided search."""
    tried: dict[tuple[int, ...], tuple[np.ndarray, float]] = {}

    def solve(subset: tuple[int, ...]):
        if subset in tried:
            return tried[subset]
        idx = np.array(subset)
        try:
            weights = np.linalg.solve(gram[np.ix_(idx, idx)], rhs[idx])
        except np.linalg.LinAlgError:
            weights = np.full(idx.size, -1.0)
        chi2 = yy - weights @ rhs[idx] if np.all(weights > 0) else np.inf
        tried[subset] = (weights, chi2)
        return tried[subset]

    level: list[tuple[int, ...]] = [(i,) for i in range(gram.shape[0])]
    best_bic = np.inf
    for k in range(1, max_components + 1):
        scored = sorted((solve(s)[1], s) for s in level)
        scored = [(c, s) for c, s in scored if np.isfinite(c)]
        if not scored:
            break
        bic = scored[0][0] + k * np.log(n_pix)
        if bic >= best_bic:
            break
        best_bic = bic
        kept = [s for _, s in scored[:beam]]
        level = sorted({tuple(sorted(s + (j,))) for s in kept for j in range(gram.shape[0]) if j not in s})
    return [(s, w, c) for s, (w, c) in tried.items() if np.isfinite(c)]


def _fit_combinations(models: np.ndarray, flux: np.ndarray, ivar: np.ndarray, beam: int, max_components: int):
    weighted = models * ivar[None, :]
    gram = weighted @ models.T
    rhs = weighted @ flux
    yy = float(np.sum(ivar * flux**2))
    return _combination_search(gram, rhs, yy, int((ivar > 0).sum()), beam, max_components)


def _ebv_from_hpf(wave, flux, ivar, models, good, width_pix, beam, max_components) -> float:
    """E(B−V) from the low-frequency ratio of data to the best HPF-fitted, unattenuated model."""
    data_low = _low_pass(flux, good, width_pix)
    models_low = _low_pass(models, np.ones(wave.size, bool), width_pix)
    hpf_ivar = ivar * data_low**2
    combos = _fit_combinations(models / models_low, flux / data_low, hpf_ivar, beam, max_components)
    subset, weights, _ = min(combos, key=lambda c: c[2])
    model_low = weights @ models_low[list(subset)]
    ratio = data_low / model_low
    usable = good & (ratio > 0)
    design = np.column_stack([np.ones(usable.sum()), -0.4 * np.log(10) * calzetti_k(wave[usable])])
    (_, ebv), *_ = np.linalg.lstsq(design, np.log(ratio[usable]), rcond=None)
    return float(max(ebv, 0.0))


def _properties(combos, models, ivar, log_age, metallicity):
    """Likelihood-weighted mean and spread of light-weighted log age and [M/H] over combinations."""
    chi2 = np.array([c for _, _, c in combos])
    like = np.exp(-0.5 * (chi2 - chi2.min()))
    light_per_ssp = models[:, ivar > 0].sum(axis=1)
    ages, metals = [], []
    for subset, weights, _ in combos:
        light = weights * light_per_ssp[list(subset)]
        ages.append(light @ log_age[list(subset)] / light.sum())
        metals.append(light @ metallicity[list(subset)] / light.sum())
    ages, metals = np.array(ages), np.array(metals)
    mean = lambda v: float(np.sum(like * v) / like.sum())
    spread = lambda v: float(np.sqrt(np.sum(like * (v - mean(v)) ** 2) / like.sum()))
    return mean(ages), spread(ages), mean(metals), spread(metals), chi2.min()


def fit_rest_firefly(
    spectrum: RestSpectrum,
    templates: TemplateGrid,
    sigma_star: float,
    hpf_width: float = 100.0,
    beam: int = 8,
    max_components: int = 6,
    bootstrap: int = 10,
    seed: int = 0,
) -> dict:
    """FIREFLY-method fit of a :class:`RestSpectrum`.

    Parameters
    ----------
    spectrum : RestSpectrum
    templates : TemplateGrid
    sigma_star : float
        Stellar velocity dispersion [km/s] the models are convolved to.
    hpf_width : float
        σ [Å] of the low-pass whose ratio is the high-pass filter.
    beam : int
        Best combinations extended at each level of the search.
    max_components : int
        Most SSPs in one combination.
    bootstrap : int
        Wild-bootstrap refits (10 in the pipeline by default).
    seed : int

    Returns
    -------
    dict
        ``log_age`` [log yr], ``metallicity`` [M/H] [dex] and ``ebv`` [mag], each with ``_err``;
        ``chi2_per_pixel``, ``n_pixels``, ``n_components`` of the best combination,
        ``n_combinations`` tried; rest-frame air ``wave`` with ``flux``, ``ivar`` (emission lines not
        masked) and ``bestfit``, the stellar model at every pixel;
        ``light_weights`` (n_age, n_met) of the best combination.
    """
    lo, hi = fit_window(spectrum, templates)
    keep = (spectrum.wave >= lo) & (spectrum.wave <= hi)
    wave, flux, observed_ivar = spectrum.wave[keep], spectrum.flux[keep], spectrum.ivar[keep]
    ivar = np.where(emission_mask(wave), 0.0, observed_ivar)
    good = ivar > 0
    if good.sum() < 100:
        raise ValueError(f"only {good.sum()} usable pixels after masking emission lines")
    scale = float(np.median(flux[good]))
    flux, ivar = flux / scale, ivar * scale**2
    broadened = broaden_velocity(templates.columns.T, sigma_star, templates.velscale)
    models = np.array([np.interp(np.log(wave), np.log(templates.wave), row) for row in broadened])
    width_pix = hpf_width / (np.median(wave) * spectrum.velscale / C_KMS)
    log_age = templates.log_age.ravel()
    metallicity = templates.metal_grid.ravel()

    def one_fit(data):
        ebv = _ebv_from_hpf(wave, data, ivar, models, good, width_pix, beam, max_components)
        attenuated = models * 10.0 ** (-0.4 * ebv * calzetti_k(wave))[None, :]
        combos = _fit_combinations(attenuated, data, ivar, beam, max_components)
        return ebv, combos, attenuated

    ebv, combos, attenuated = one_fit(flux)
    age, age_spread, metal, metal_spread, chi2_min = _properties(combos, attenuated, ivar, log_age, metallicity)
    subset, weights, _ = min(combos, key=lambda c: c[2])
    bestfit = weights @ attenuated[list(subset)]

    rng = np.random.default_rng(seed)
    residual = flux - bestfit
    draws: list[tuple[float, float, float]] = []
    for _ in range(bootstrap):
        data = bestfit + residual * rng.choice([-1.0, 1.0], size=flux.size)
        b_ebv, b_combos, b_att = one_fit(data)
        b_age, _, b_metal, _, _ = _properties(b_combos, b_att, ivar, log_age, metallicity)
        draws.append((b_age, b_metal, b_ebv))
    noise = np.array(draws).reshape(-1, 3).std(axis=0, ddof=1) if bootstrap > 1 else np.zeros(3)
    light = np.zeros(log_age.size)
    light[list(subset)] = weights * attenuated[list(subset)][:, good].sum(axis=1)
    return {
        "log_age": age,
        "log_age_err": float(np.hypot(age_spread, noise[0])),
        "metallicity": metal,
        "metallicity_err": float(np.hypot(metal_spread, noise[1])),
        "ebv": ebv,
        "ebv_err": float(noise[2]) if bootstrap > 1 else np.nan,
        "sigma_star": float(sigma_star),
        "chi2_per_pixel": float(chi2_min / good.sum()),
        "n_pixels": int(good.sum()),
        "n_components": len(subset),
        "n_combinations": len(combos),
        "bootstrap": bootstrap,
        "templates": templates.name,
        "wave": wave,
        "flux": flux * scale,
        "ivar": observed_ivar,
        "bestfit": bestfit * scale,
        "light_weights": (light / light.sum()).reshape(templates.flux.shape[1:]),
    }


def fit_firefly(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: float,
    sigma_star: float,
    templates: TemplateGrid,
    resolving_power: float = 1500.0,
    **options,
) -> dict:
    """Light-weighted age, metallicity and dust of one spectrum by the FIREFLY method.

    Parameters
    ----------
    wave : ndarray
        Observed-frame vacuum wavelength [Å].
    flux, ivar : ndarray
        f_λ and inverse variance (0: pixel left out).
    z : float
        Redshift.
    sigma_star : float
        Stellar velocity dispersion [km/s] the models are convolved to (e.g. from :func:`fit_ppxf`).
    templates : TemplateGrid
        SSP models at the spectrum's instrumental resolution (:func:`prepare_templates`).
    resolving_power : float
        λ / FWHM of the spectrum.
    **options
        ``hpf_width``, ``beam``, ``max_components``, ``bootstrap``, ``seed`` of :func:`fit_rest_firefly`.

    Returns
    -------
    dict
        As :func:`fit_rest_firefly`.
    """
    spectrum = to_rest_frame(wave, flux, ivar, z, resolving_power, templates.velscale)
    return fit_rest_firefly(spectrum, templates, sigma_star, **options)
