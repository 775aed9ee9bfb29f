"""Putting an observed spectrum and a template library on one rest-frame log-λ grid.

Every fitter and index in :mod:`img2spec.toolbox` starts from a :class:`RestSpectrum`: the spectrum
shifted to the rest frame, converted to air wavelengths (those of the MILES-based templates and of
the Lick definitions) and rebinned, flux-conserving, onto pixels of constant velocity width.  The
line-spread function of the img2spec spectra has a constant resolving power (R = 1500 after
preprocessing), which is also R in the rest frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ppxf.ppxf_util import varsmooth
from scipy.interpolate import make_interp_spline

from ..preprocessing import gaussian_smooth, rebin_matrix
from ..spectral import FWHM_PER_SIGMA, PIXEL_KMS
from ..templates import SSPLibrary
from ..units import C_KMS, vacuum_to_air

#: Rest-frame air window [Å] in which each template is normalised, so weights are light fractions.
LIGHT_NORM_WINDOW = (5070.0, 5950.0)
#: Minimum good-pixel coverage of an output pixel; below it the pixel is not a measurement.
MIN_COVERAGE = 0.5


def pixel_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of pixels from their centres (midpoints, the outer ones mirrored)."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def log_grid(wave_min: float, wave_max: float, velscale: float) -> np.ndarray:
    """Pixel centres [Å] of constant velocity width ``velscale`` [km/s] inside [wave_min, wave_max]."""
    step = velscale / C_KMS
    n = int(np.floor(np.log(wave_max / wave_min) / step)) + 1
    return wave_min * np.exp(step * np.arange(n))


@dataclass(frozen=True)
class RestSpectrum:
    """A spectrum in the rest frame on a log-λ grid.

    Attributes
    ----------
    wave : ndarray, (n,)
        Rest-frame air wavelength of the pixel centres [Å], constant ``velscale`` spacing.
    flux : ndarray, (n,)
        Rest-frame flux density f_λ (input units × (1+z)).
    ivar : ndarray, (n,)
        Inverse variance of ``flux``; 0 where the pixel is not a measurement.
    velscale : float
        Pixel width [km/s].
    resolving_power : float
        λ / FWHM of the line-spread function.
    z : float
        Redshift the spectrum was moved to the rest frame from (to place observed-frame features
        such as sky lines).
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    velscale: float
    resolving_power: float
    z: float = 0.0

    @property
    def good(self) -> np.ndarray:
        return self.ivar > 0

    @property
    def fwhm(self) -> np.ndarray:
        """Instrumental FWHM at each pixel [Å]."""
        return self.wave / self.resolving_power


def check_spectrum(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, name: str = "spectrum"
) -> tuple[np.ndarray, ...]:
    """Validate a spectrum's arrays; non-finite flux or ivar becomes ivar = 0.

    Raises
    ------
    ValueError
        Naming ``name``, for mismatched shapes, non-increasing wavelengths, negative inverse
        variance or no usable pixel.
    """
    wave, flux, ivar = (np.asarray(a, dtype=np.float64) for a in (wave, flux, ivar))
    if wave.ndim != 1 or flux.shape != wave.shape or ivar.shape != wave.shape:
        raise ValueError(
            f"{name}: wave, flux and ivar must be 1-d of one length, got {wave.shape}, {flux.shape}, {ivar.shape}"
        )
    if np.any(np.diff(wave) <= 0):
        raise ValueError(f"{name}: wavelengths must increase")
    if np.any(ivar < 0):
        raise ValueError(f"{name}: negative inverse variance")
    bad = ~np.isfinite(flux) | ~np.isfinite(ivar)
    ivar = np.where(bad, 0.0, ivar)
    flux = np.where(bad, 0.0, flux)
    if not np.any(ivar > 0):
        raise ValueError(f"{name}: no pixel with positive inverse variance")
    return wave, flux, ivar


def rebin(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, out_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving rebinning of a spectrum with inverse variance onto pixels centred at ``out_wave``.

    Output pixels get the overlap-weighted mean flux of the good input pixels and its propagated
    variance; those less than :data:`MIN_COVERAGE` covered by good pixels get ivar = 0.

    Returns
    -------
    flux, ivar : ndarray, (len(out_wave),)
    """
    out_edges = pixel_edges(out_wave)
    overlap = rebin_matrix(pixel_edges(wave), out_edges)
    good = (ivar > 0).astype(np.float64)
    good_length = good @ overlap
    coverage = good_length / np.diff(out_edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_flux = (flux * good) @ overlap / good_length
        variance = (
            np.divide(1.0, ivar, out=np.zeros_like(ivar), where=ivar > 0) @ overlap.multiply(overlap) / good_length**2
        )
    usable = (coverage >= MIN_COVERAGE) & (variance > 0)
    return np.where(usable, mean_flux, 0.0), np.where(usable, 1.0 / np.where(usable, variance, 1.0), 0.0)


def to_rest_frame(
    wave_vacuum: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: float,
    resolving_power: float = 1500.0,
    velscale: float = PIXEL_KMS,
    wave_range: tuple[float, float] | None = None,
    name: str = "spectrum",
) -> RestSpectrum:
    """Shift an observed spectrum to the rest frame, convert to air and rebin to a log-λ grid.

    Parameters
    ----------
    wave_vacuum : ndarray, (n,)
        Observed-frame vacuum wavelength of the pixel centres [Å].
    flux, ivar : ndarray, (n,)
        Flux density f_λ and its inverse variance (ivar = 0: no measurement).
    z : float
        Redshift.
    resolving_power : float
        λ / FWHM of the spectrum's line-spread function.
    velscale : float
        Output pixel width [km/s] (default: the SDSS pixel, 69 km/s).
    wave_range : (float, float), optional
        Rest-frame air range [Å] to keep.
    name : str
        How errors name the spectrum.

    Notes
    -----
    The flux is resampled by cubic-spline interpolation, not by flux-conserving rebinning: a
    rebinning convolves with the input and the output pixel (boxcars adding (Δv_in² + Δv_out²)/12
    to σ², 25 km/s in quadrature here), which would bias σ* high for small dispersions.  Output
    pixels next to a bad input pixel are bad; the variance is interpolated like the flux.
    """
    wave, flux, ivar = check_spectrum(wave_vacuum, flux, ivar, name)
    rest = vacuum_to_air(wave / (1.0 + z))
    lo, hi = rest[0], rest[-1]
    if wave_range is not None:
        lo, hi = max(lo, wave_range[0]), min(hi, wave_range[1])
    if hi <= lo:
        raise ValueError(f"{name}: rest-frame range {rest[0]:.0f}-{rest[-1]:.0f} Å misses {wave_range}")
    out_wave = log_grid(lo, hi, velscale)
    good = ivar > 0
    filled = np.interp(rest, rest[good], flux[good])
    out_flux = make_interp_spline(rest, filled, k=3)(out_wave)
    variance = np.interp(out_wave, rest, np.divide(1.0, ivar, out=np.zeros_like(ivar), where=good))
    right = np.clip(np.searchsorted(rest, out_wave), 1, rest.size - 1)
    usable = good[right] & good[right - 1] & (variance > 0)
    out_ivar = np.where(usable, 1.0 / np.where(usable, variance, 1.0), 0.0)
    return RestSpectrum(
        out_wave, np.where(usable, out_flux, 0.0) * (1.0 + z), out_ivar / (1.0 + z) ** 2, velscale, resolving_power, z
    )


@dataclass(frozen=True)
class TemplateGrid:
    """SSP templates on a rest-frame log-λ grid, broadened to a galaxy's instrumental resolution.

    Attributes
    ----------
    wave : ndarray, (n_pix,)
        Rest-frame air wavelength [Å], constant ``velscale`` spacing.
    flux : ndarray, (n_pix, n_age, n_met)
        Each template normalised to mean 1 in :data:`LIGHT_NORM_WINDOW`, so weights are light
        fractions there.
    age_gyr : ndarray, (n_age,)
    metallicity : ndarray, (n_met,)
        [M/H] [dex].
    velscale, resolving_power : float
    name : str
        Library name.
    """

    wave: np.ndarray
    flux: np.ndarray
    age_gyr: np.ndarray
    metallicity: np.ndarray
    velscale: float
    resolving_power: float
    name: str

    @property
    def log_age(self) -> np.ndarray:
        """log10 age [yr] of the grid, (n_age, n_met)."""
        return np.broadcast_to(np.log10(self.age_gyr * 1e9)[:, None], self.flux.shape[1:])

    @property
    def metal_grid(self) -> np.ndarray:
        return np.broadcast_to(self.metallicity[None, :], self.flux.shape[1:])

    @property
    def columns(self) -> np.ndarray:
        """Templates as columns, (n_pix, n_age·n_met), age varying slowest."""
        return self.flux.reshape(self.flux.shape[0], -1)


def regular_grid(
    library: SSPLibrary, ages_gyr: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The library's spectra as a full (age × metallicity) grid.

    Only ages present at every metallicity are kept (M11-MILES lacks young ages at some [M/H]),
    and of those the ones nearest to ``ages_gyr`` when given.

    Returns
    -------
    flux : ndarray, (n_pix, n_age, n_met)
    ages : ndarray, (n_age,)
    metallicities : ndarray, (n_met,)
    """
    metals = library.metallicities
    common = sorted(set.intersection(*(set(library.age_gyr[library.metallicity == m]) for m in metals)))
    ages = np.array(common)
    if ages_gyr is not None:
        wanted = np.asarray(ages_gyr, dtype=float)
        if np.any(wanted < ages[0] * 0.99) or np.any(wanted > ages[-1] * 1.01):
            raise ValueError(
                f"{library.name}: ages {list(wanted)} Gyr outside the complete grid {ages[0]}-{ages[-1]} Gyr"
            )
        ages = np.unique(ages[np.abs(np.log(ages)[None, :] - np.log(wanted)[:, None]).argmin(axis=1)])
    flux = np.empty((library.wave_air.size, ages.size, metals.size))
    for a, age in enumerate(ages):
        for m, metal in enumerate(metals):
            flux[:, a, m] = library.flux[np.flatnonzero((library.age_gyr == age) & (library.metallicity == metal))[0]]
    return flux, ages, metals


def prepare_templates(
    library: SSPLibrary,
    resolving_power: float = 1500.0,
    velscale: float = PIXEL_KMS,
    ages_gyr: Sequence[float] | None = None,
) -> TemplateGrid:
    """Broaden a library from its constant FWHM to the galaxy's λ/R and rebin to a log-λ grid.

    The Gaussian added has σ(λ) = √((λ/R)² − FWHM_lib²)/2.355 [Å]; where the library is already
    broader than λ/R (blue of λ = R·FWHM_lib, 3810 Å for M11-MILES at R 1500) nothing is added.
    """
    flux, ages, metals = regular_grid(library, ages_gyr)
    wave = library.wave_air
    sigma = np.sqrt(np.clip((wave / resolving_power) ** 2 - library.fwhm**2, 0.0, None)) / FWHM_PER_SIGMA
    n_pix = wave.size
    broadened = varsmooth(wave, flux.reshape(n_pix, -1), sigma)
    out_wave = log_grid(wave[0], wave[-1], velscale)
    overlap = rebin_matrix(pixel_edges(wave), pixel_edges(out_wave))
    rebinned = (overlap.T @ broadened) / np.asarray(overlap.sum(axis=0)).ravel()[:, None]
    window = (out_wave >= LIGHT_NORM_WINDOW[0]) & (out_wave <= LIGHT_NORM_WINDOW[1])
    rebinned /= rebinned[window].mean(axis=0)
    return TemplateGrid(
        out_wave,
        rebinned.reshape(out_wave.size, ages.size, metals.size),
        ages,
        metals,
        velscale,
        resolving_power,
        library.name,
    )


def broaden_velocity(flux: np.ndarray, sigma_kms: float, velscale: float) -> np.ndarray:
    """Convolve spectra on a log-λ grid (last axis) with a Gaussian LOSVD of ``sigma_kms``."""
    if sigma_kms <= 0:
        return np.array(flux, dtype=np.float64)
    return gaussian_smooth(np.asarray(flux, dtype=np.float64), sigma_kms / velscale).reshape(np.shape(flux))
