"""Absorption-line indices: Lick Mg b, Fe5270, Fe5335, Hβ, [MgFe]′ and the 4000 Å break Dn4000.

Lick indices are measured with pyphot's definitions (Worthey et al. 1994; Trager et al. 1998) on
the rest-frame, air-wavelength spectrum degraded to the Lick/IDS resolution (Worthey & Ottaviani
1997).  The paper corrected for velocity dispersion with the coefficients of Zheng et al. (2019),
which are not published in usable form; here each galaxy's own stellar-population model gives the
correction instead: the index on the model without the galaxy's LOSVD divided by the index on the
model broadened by σ*, multiplying the observed index (Kuntschner 2004 style).
"""

from __future__ import annotations

import warnings

import numpy as np
from ppxf.ppxf_util import varsmooth
from pyphot.licks import LickLibrary

from ..preprocessing import rebin_matrix
from ..spectral import FWHM_PER_SIGMA
from .spectra import RestSpectrum, broaden_velocity, pixel_edges, to_rest_frame

LICK_NAMES = ("Mg_b", "Fe5270", "Fe5335", "H_beta")
#: Lick/IDS FWHM [Å] against wavelength [Å] (Worthey & Ottaviani 1997), linear in between.
LICK_FWHM = (np.array([4000.0, 4400.0, 4900.0, 5400.0, 6000.0]), np.array([11.5, 9.2, 8.4, 8.4, 9.8]))
#: Balogh et al. (1999) narrow 4000 Å break windows [Å]: blue, red.
DN4000_WINDOWS = ((3850.0, 3950.0), (4000.0, 4100.0))
#: Smallest fraction of good pixels in an index's windows for it to be measured; the rest are interpolated.
MIN_GOOD_FRACTION = 0.9
#: Sampling [Å] onto which a spectrum is interpolated before pyphot sums pixels inside a band.
FINE_STEP = 0.05

_LICK = LickLibrary()
_DEFINITIONS = {name: _LICK[name] for name in LICK_NAMES}


def lick_fwhm(wave: np.ndarray) -> np.ndarray:
    """Lick/IDS resolution FWHM [Å] at rest air wavelength ``wave`` [Å] (held constant outside 4000–6000 Å)."""
    return np.interp(wave, *LICK_FWHM)


def to_lick_resolution(wave: np.ndarray, flux: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Degrade spectra on a log-λ grid from FWHM ``fwhm`` [Å] per pixel to the Lick/IDS resolution.

    Where the spectrum is already broader than Lick it is left as it is.
    """
    sigma_a = np.sqrt(np.clip(lick_fwhm(wave) ** 2 - fwhm**2, 0.0, None)) / FWHM_PER_SIGMA
    return varsmooth(np.log(wave), np.asarray(flux, dtype=np.float64).T, sigma_a / wave).T


def _filled(wave: np.ndarray, flux: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``flux`` with bad pixels linearly interpolated from their good neighbours."""
    return np.where(good, flux, np.interp(wave, wave[good], flux[good]))


def _enough_good(wave: np.ndarray, good: np.ndarray | None, lo: float, hi: float) -> bool:
    return good is None or good[(wave >= lo) & (wave <= hi)].mean() >= MIN_GOOD_FRACTION


def _lick_on(wave: np.ndarray, flux: np.ndarray, good: np.ndarray | None = None) -> dict[str, float]:
    """Lick indices [Å] of one Lick-resolution spectrum; NaN where a window has too few good pixels."""
    fine = np.arange(wave[0], wave[-1], FINE_STEP)
    fine_flux = np.interp(fine, wave, flux)
    out = {}
    for name, index in _DEFINITIONS.items():
        blue, red = index.blue.value, index.red.value
        if blue[0] < wave[0] or red[1] > wave[-1] or not _enough_good(wave, good, blue[0], red[1]):
            out[name] = np.nan
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyphot warns that plain arrays are taken as Å and flam
            out[name] = float(index.get(fine, fine_flux))
    return out


def dn4000(wave: np.ndarray, flux: np.ndarray, good: np.ndarray | None = None) -> float:
    """Narrow 4000 Å break (Balogh et al. 1999): mean f_ν in 4000–4100 Å over 3850–3950 Å.

    Parameters
    ----------
    wave : ndarray
        Rest-frame air wavelength [Å], increasing.
    flux : ndarray
        f_λ (any units).
    good : ndarray of bool, optional
        Usable pixels; NaN is returned when fewer than :data:`MIN_GOOD_FRACTION` of a window's
        pixels are good (flux at bad pixels must already be interpolated).
    """
    edges = pixel_edges(wave)
    f_nu = np.asarray(flux) * wave**2
    means = []
    for lo, hi in DN4000_WINDOWS:
        if lo < edges[0] or hi > edges[-1]:
            return np.nan
        overlap = np.asarray(rebin_matrix(edges, np.array([lo, hi])).todense()).ravel()
        if not _enough_good(wave, good, lo, hi):
            return np.nan
        means.append(overlap @ f_nu / overlap.sum())
    return float(means[1] / means[0])


def mgfe_prime(mg_b: float, fe5270: float, fe5335: float) -> float:
    """[MgFe]′ = √(Mg b (0.72 Fe5270 + 0.28 Fe5335)) (Thomas, Maraston & Bender 2003), nearly [α/Fe]-free."""
    product = mg_b * (0.72 * fe5270 + 0.28 * fe5335)
    return float(np.sqrt(product)) if product > 0 else np.nan


def sigma_corrections(
    model_wave: np.ndarray, model_intrinsic: np.ndarray, sigma_star: float, velscale: float, fwhm: np.ndarray
) -> dict[str, float]:
    """Factor per Lick index turning an index measured at σ* into its value at σ* = 0.

    Parameters
    ----------
    model_wave : ndarray
        Rest air wavelength [Å] of a log-λ grid of width ``velscale`` [km/s].
    model_intrinsic : ndarray
        The galaxy's stellar-population model at the instrumental resolution ``fwhm`` [Å] but
        without its line-of-sight velocity distribution.
    sigma_star : float
        Stellar velocity dispersion [km/s].
    """
    broadened = broaden_velocity(model_intrinsic, sigma_star, velscale)
    at_zero = _lick_on(model_wave, to_lick_resolution(model_wave, model_intrinsic, fwhm))
    at_sigma = _lick_on(model_wave, to_lick_resolution(model_wave, broadened, fwhm))
    return {name: at_zero[name] / at_sigma[name] for name in LICK_NAMES}


def indices_of_rest(spectrum: RestSpectrum, stellar_fit: dict | None = None) -> dict[str, float | str]:
    """Indices of a :class:`RestSpectrum`; see :func:`measure_indices`."""
    flux = _filled(spectrum.wave, spectrum.flux, spectrum.good)
    lick = _lick_on(spectrum.wave, to_lick_resolution(spectrum.wave, flux, spectrum.fwhm), spectrum.good)
    result: dict[str, float] = {"Dn4000": dn4000(spectrum.wave, flux, spectrum.good)}
    if stellar_fit is None:
        result.update(lick)
        result.update({f"{name}_sigma_correction": np.nan for name in LICK_NAMES})
        hbeta_source = "data"
    else:
        model_wave = np.asarray(stellar_fit["model_wave"])
        model_fwhm = model_wave / spectrum.resolving_power
        factors = sigma_corrections(
            model_wave,
            np.asarray(stellar_fit["model_intrinsic"]),
            stellar_fit["sigma_star"],
            spectrum.velscale,
            model_fwhm,
        )
        stellar = np.interp(
            spectrum.wave,
            np.asarray(stellar_fit["wave"]),
            np.asarray(stellar_fit["stellar_model"]),
            left=np.nan,
            right=np.nan,
        )
        covered = np.isfinite(stellar)
        stellar_lick = _lick_on(
            spectrum.wave[covered], to_lick_resolution(spectrum.wave[covered], stellar[covered], spectrum.fwhm[covered])
        )
        lick["H_beta"] = stellar_lick["H_beta"]
        for name in LICK_NAMES:
            result[name] = lick[name] * factors[name]
            result[f"{name}_sigma_correction"] = factors[name]
        hbeta_source = "stellar model"
    result["MgFe_prime"] = mgfe_prime(result["Mg_b"], result["Fe5270"], result["Fe5335"])
    return {**result, "H_beta_source": hbeta_source}


def measure_indices(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: float,
    resolving_power: float = 1500.0,
    stellar_fit: dict | None = None,
) -> dict[str, float | str]:
    """Lick Mg b, Fe5270, Fe5335, Hβ, [MgFe]′ [Å] and Dn4000 of one spectrum.

    Parameters
    ----------
    wave : ndarray
        Observed-frame vacuum wavelength [Å].
    flux, ivar : ndarray
        f_λ and inverse variance (0 marks unusable pixels, which are interpolated; an index with
        fewer than :data:`MIN_GOOD_FRACTION` good pixels in its windows is NaN).
    z : float
        Redshift.
    resolving_power : float
        λ / FWHM of the spectrum.
    stellar_fit : dict, optional
        A :func:`img2spec.toolbox.fit_ppxf` result.  With it, Hβ is measured on the stellar-only
        model (emission-line infill removed, as the paper) and every Lick index is corrected to
        σ* = 0 with the model; without it, Hβ comes from the data and no correction is applied.

    Returns
    -------
    dict
        ``Mg_b``, ``Fe5270``, ``Fe5335``, ``H_beta``, ``MgFe_prime`` [Å], ``Dn4000``, the factor
        ``<index>_sigma_correction`` applied to each Lick index and ``H_beta_source``.
    """
    spectrum = to_rest_frame(wave, flux, ivar, z, resolving_power)
    return indices_of_rest(spectrum, stellar_fit)
