"""Stellar populations, kinematics, dust and gas of one spectrum with pPXF (Cappellari 2017, 2023).

One fit has the SSP templates as kinematic component 0, attenuated by a Calzetti (2000) curve
through pPXF's ``dust`` keyword, and the gas emission lines of :func:`ppxf.ppxf_util.emission_lines`
as component 1; no polynomials, so the continuum shape is the dust's.  Weights are regularised
(``regul``) over the age × [M/H] grid.  Errors come from a wild bootstrap (Davidson & Flachaire
2008): the residuals, multiplied by random signs, are added to the best fit and refitted.

Pixels that no stellar template can describe are left out, as the MaNGA DAP's stellar-kinematics
module does (:class:`FitMasks`): interstellar absorption of Na D and Ca H+K in the rest frame, the
residuals of strong sky lines at their observed wavelengths, and outliers clipped iteratively by
pPXF's ``clean`` (3σ).  Interstellar Na D, which can be as deep as the stellar line, otherwise pulls
σ* far from the stars' value.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ppxf.ppxf import attenuation, ppxf
from ppxf.ppxf_util import emission_lines

from ..spectral import EMISSION_LINES_AIR
from ..units import C_KMS
from .spectra import RestSpectrum, TemplateGrid, to_rest_frame

#: Calzetti et al. (2000) R_V: E(B−V) = A_V / R_V.
CALZETTI_RV = 4.05
#: Bounds of the fitted velocity [km/s] relative to the input redshift, and of σ [km/s].
VELOCITY_BOUND_KMS = 1000.0
SIGMA_BOUNDS_KMS = (5.0, 600.0)
#: Velocity range [km/s] kept between the template and galaxy ranges: the velocity bound plus the
#: 900 km/s pPXF adds for the LOSVD's wings.
VELOCITY_MARGIN_KMS = VELOCITY_BOUND_KMS + 1000.0


@dataclass(frozen=True)
class FitMasks:
    """Pixels a pPXF fit leaves out (the workflow's ``evaluation.ppxf`` section, config/README.md).

    Attributes
    ----------
    interstellar : dict of str to (float, float)
        Rest-frame air windows [Å] of interstellar absorption: Na D 5889.95/5895.92 and Ca K
        3933.66, Ca H 3968.47, each wide enough for the line at R = 1500 and a few hundred km/s
        of gas motion.
    sky_lines : tuple of float
        Observed-frame air wavelengths [Å] of sky lines whose subtraction residuals SDSS spectra
        keep: [O I] 5577.34, Na D 5889.95/5895.92, [O I] 6300.30 and 6363.78.
    sky_half_width : float
        Half-width [Å] of the window masked around each sky line (the DAP masks 5570–5586 Å).
    clean : bool
        Clip outliers iteratively (pPXF's ``clean``, 3σ) in the best fit; the bootstrap refits keep
        the pixels it kept.
    """

    interstellar: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"NaD": (5880.0, 5906.0), "CaK": (3926.0, 3942.0), "CaH": (3961.0, 3976.0)}
    )
    sky_lines: tuple[float, ...] = (5577.34, 5889.95, 5895.92, 6300.30, 6363.78)
    sky_half_width: float = 8.0
    clean: bool = True

    @classmethod
    def none(cls) -> FitMasks:
        """No masks and no clipping: every pixel with positive inverse variance is fitted."""
        return cls(interstellar={}, sky_lines=(), clean=False)

    def masked(self, spectrum: RestSpectrum) -> np.ndarray:
        """True for the pixels of ``spectrum`` (rest-frame air) inside an interstellar or sky window."""
        out = np.zeros(spectrum.wave.size, dtype=bool)
        for lo, hi in self.interstellar.values():
            out |= (spectrum.wave >= lo) & (spectrum.wave <= hi)
        observed = spectrum.wave * (1.0 + spectrum.z)
        for line in self.sky_lines:
            out |= np.abs(observed - line) <= self.sky_half_width
        return out


def fit_window(spectrum: RestSpectrum, templates: TemplateGrid) -> tuple[float, float]:
    """Rest wavelengths [Å] the spectrum can be fitted over: inside the templates by a velocity margin."""
    margin = np.exp(VELOCITY_MARGIN_KMS / C_KMS)
    lo = max(spectrum.wave[0], templates.wave[0] * margin)
    hi = min(spectrum.wave[-1], templates.wave[-1] / margin)
    return lo, hi


def _noise(ivar: np.ndarray) -> np.ndarray:
    return np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 1.0)


def _single_fit(
    templates_columns, galaxy, noise, spectrum, templates, gas, start, regul, goodpixels, clean=False, fix_stars=False
):
    n_stars = templates_columns.shape[1]
    component = np.array([0] * n_stars + [1] * gas.shape[1])
    stars = component == 0
    dust = [{"start": [start["a_v"]], "bounds": [[0.0, 4.0]], "component": stars}]
    return ppxf(
        np.column_stack([templates_columns, gas]),
        galaxy,
        noise,
        spectrum.velscale,
        [[start["v"], start["sigma"]], [start["v"], start["gas_sigma"]]],
        moments=[2, 2],
        bounds=[[[-VELOCITY_BOUND_KMS, VELOCITY_BOUND_KMS], list(SIGMA_BOUNDS_KMS)]] * 2,
        degree=-1,
        mdegree=-1,
        component=component,
        gas_component=component > 0,
        lam=spectrum.wave,
        lam_temp=templates.wave,
        dust=dust,
        regul=regul,
        reg_dim=templates.flux.shape[1:],
        goodpixels=goodpixels,
        clean=clean,
        fixed=[[True, True], [False, False]] if fix_stars else None,
        quiet=True,
    )


def _properties(pp, templates: TemplateGrid, n_stars: int) -> dict[str, float]:
    weights = pp.weights[:n_stars].reshape(templates.flux.shape[1:])
    total = weights.sum()
    a_v = float(pp.dust[0]["sol"][0])
    return {
        "velocity": float(pp.sol[0][0]),
        "sigma_star": float(pp.sol[0][1]),
        "log_age": float((weights * templates.log_age).sum() / total),
        "metallicity": float((weights * templates.metal_grid).sum() / total),
        "ebv": a_v / CALZETTI_RV,
    }


def fit_rest_ppxf(
    spectrum: RestSpectrum,
    templates: TemplateGrid,
    regul: float = 10.0,
    bootstrap: int = 50,
    seed: int = 0,
    masks: FitMasks = FitMasks(),
    kinematics: dict | None = None,
) -> dict:
    """pPXF fit of a :class:`RestSpectrum`.

    Parameters
    ----------
    spectrum : RestSpectrum
    templates : TemplateGrid
        At the spectrum's resolving power and ``velscale`` (M11-MILES by default in the pipeline).
    regul : float
        pPXF regularisation strength (the paper: 10).
    bootstrap : int
        Wild-bootstrap refits for the errors (the paper: 50; 0 skips them).
    seed : int
        Seed of the bootstrap's random signs.
    masks : FitMasks
        Interstellar and sky-line windows left out, and whether outliers are clipped.
    kinematics : dict, optional
        The stars' ``velocity`` and ``sigma_star`` [km/s] (with their ``*_err``) from an earlier
        fit, held fixed: the MaNGA DAP's two steps, kinematics with a library of adequate
        resolution, then populations with another (:func:`img2spec.evaluation.fit_galaxy`).
        Its ``clipped_wave`` (the outliers that fit clipped) stay out of this fit, which then
        clips nothing more: one outlier set per spectrum, and a single population fit.

    Returns
    -------
    dict
        ``sigma_star`` and ``velocity`` [km/s], light-weighted ``log_age`` [log yr] and
        ``metallicity`` [M/H] [dex], ``ebv`` (stellar E(B−V) [mag]), each with ``<key>_err`` from
        the bootstrap; ``chi2_per_pixel`` and ``n_pixels`` over the pixels fitted,
        ``n_masked`` (windows) and ``n_clipped`` (outliers, at ``clipped_wave``); arrays on the rest-frame air grid
        ``wave``: ``flux``, ``ivar``, ``bestfit``, ``stellar_model``, ``gas_model``; ``gas_flux``
        and ``gas_flux_err`` per line [flux × Å]; ``light_weights`` (n_age, n_met); and
        ``model_intrinsic`` on ``model_wave``, the attenuated stellar model without the LOSVD,
        used for the velocity-dispersion correction of indices.
    """
    if templates.velscale != spectrum.velscale:
        raise ValueError(f"templates at {templates.velscale} km/s per pixel, spectrum at {spectrum.velscale}")
    lo, hi = fit_window(spectrum, templates)
    keep = (spectrum.wave >= lo) & (spectrum.wave <= hi)
    wave, flux, ivar = spectrum.wave[keep], spectrum.flux[keep], spectrum.ivar[keep]
    spectrum = RestSpectrum(wave, flux, ivar, spectrum.velscale, spectrum.resolving_power, spectrum.z)
    scale = float(np.median(flux[ivar > 0]))
    if not scale > 0:
        raise ValueError("spectrum has no positive flux to fit")
    galaxy, noise = flux / scale, _noise(ivar) / scale
    in_window = masks.masked(spectrum)
    fixed = kinematics is not None
    known = kinematics or {}
    outliers_known = "clipped_wave" in known
    clipped_before = np.isin(wave, known["clipped_wave"]) if outliers_known else np.zeros(wave.size, bool)
    usable = (ivar > 0) & ~in_window
    goodpixels = np.flatnonzero(usable & ~clipped_before)
    if goodpixels.size == 0:
        raise ValueError("no pixel left to fit outside the masks")
    with contextlib.redirect_stdout(io.StringIO()):  # emission_lines lists the lines it made
        gas, gas_names, _ = emission_lines(
            np.log(templates.wave), [wave[0], wave[-1]], lambda w: w / spectrum.resolving_power
        )
    columns = templates.columns
    n_stars = columns.shape[1]
    start = {
        "v": known.get("velocity", 0.0),
        "sigma": known.get("sigma_star", 150.0),
        "gas_sigma": 100.0,
        "a_v": 0.3,
    }
    clean = masks.clean and not outliers_known
    pp = _single_fit(
        columns, galaxy, noise, spectrum, templates, gas, start, regul, goodpixels, clean=clean, fix_stars=fixed
    )
    best = _properties(pp, templates, n_stars)
    kept = np.asarray(pp.goodpixels)

    rng = np.random.default_rng(seed)
    residual = galaxy - pp.bestfit
    start = {
        "v": best["velocity"],
        "sigma": best["sigma_star"],
        "gas_sigma": float(pp.sol[1][1]),
        "a_v": best["ebv"] * CALZETTI_RV,
    }
    draws = []
    for _ in range(bootstrap):
        signs = rng.choice([-1.0, 1.0], size=galaxy.size)
        refit = _single_fit(
            columns, pp.bestfit + residual * signs, noise, spectrum, templates, gas, start, regul, kept, fix_stars=fixed
        )
        draws.append(_properties(refit, templates, n_stars))

    weights = pp.weights[:n_stars] * scale
    a_v = best["ebv"] * CALZETTI_RV
    model_intrinsic = (templates.columns @ weights) * attenuation(templates.wave, a_v)
    gas_model = pp.gas_bestfit * scale if pp.gas_bestfit is not None else np.zeros_like(flux)
    good = np.zeros(flux.size, dtype=bool)
    good[kept] = True
    result: dict[str, Any] = dict(best)
    for key in ("velocity", "sigma_star", "log_age", "metallicity", "ebv"):
        result[f"{key}_err"] = float(np.std([d[key] for d in draws], ddof=1)) if bootstrap > 1 else np.nan
    if fixed:
        for key in ("velocity", "sigma_star"):
            result[key], result[f"{key}_err"] = known[key], known.get(f"{key}_err", np.nan)
    result.update(
        chi2_per_pixel=float(np.sum((flux - pp.bestfit * scale)[good] ** 2 * ivar[good]) / good.sum()),
        n_pixels=int(good.sum()),
        n_masked=int(np.sum(in_window & (ivar > 0))),
        n_clipped=int(goodpixels.size - kept.size + clipped_before.sum()),
        clipped_wave=wave[np.setdiff1d(np.flatnonzero(usable), kept)],
        bootstrap=bootstrap,
        templates=templates.name,
        wave=wave,
        flux=flux,
        ivar=ivar,
        bestfit=pp.bestfit * scale,
        stellar_model=pp.bestfit * scale - gas_model,
        gas_model=gas_model,
        gas_flux={name: float(f) * scale for name, f in zip(gas_names, pp.gas_flux)},
        gas_flux_err={name: float(f) * scale for name, f in zip(gas_names, pp.gas_flux_error)},
        light_weights=(pp.weights[:n_stars] / pp.weights[:n_stars].sum()).reshape(templates.flux.shape[1:]),
        model_wave=templates.wave,
        model_intrinsic=model_intrinsic,
        velscale=spectrum.velscale,
    )
    return result


def fit_ppxf(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: float,
    templates: TemplateGrid,
    resolving_power: float = 1500.0,
    **options,
) -> dict:
    """Fit stellar populations, kinematics, dust and gas emission to one spectrum with pPXF.

    Parameters
    ----------
    wave : ndarray
        Observed-frame vacuum wavelength [Å].
    flux, ivar : ndarray
        f_λ and its inverse variance (0: pixel left out).
    z : float
        Redshift; velocities are relative to it.
    templates : TemplateGrid
        From :func:`img2spec.toolbox.prepare_templates` with the spectrum's ``resolving_power``.
    resolving_power : float
        λ / FWHM of the spectrum.
    **options
        ``regul``, ``bootstrap``, ``seed``, ``masks`` of :func:`fit_rest_ppxf`.

    Returns
    -------
    dict
        As :func:`fit_rest_ppxf`.
    """
    spectrum = to_rest_frame(wave, flux, ivar, z, resolving_power, templates.velscale)
    return fit_rest_ppxf(spectrum, templates, **options)


def emission_mask(wave: np.ndarray, half_width_kms: float = 800.0) -> np.ndarray:
    """True for pixels within ``half_width_kms`` of a strong emission line (rest air wavelengths)."""
    centres = np.array(list(EMISSION_LINES_AIR.values()))
    distance = np.abs(np.log(wave[:, None] / centres[None, :])).min(axis=1) * C_KMS
    return distance < half_width_kms
