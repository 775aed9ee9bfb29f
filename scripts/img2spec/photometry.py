"""Synthetic photometry through the SDSS filters: AB maggies, nanomaggies and asinh magnitudes."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import speclite.filters
from numpy.typing import ArrayLike

from .io import BANDS, InputError
from .units import AB_ZERO_POINT_FNU, C_ANGSTROM_PER_S

#: Softening parameters b of SDSS asinh magnitudes (Lupton, Gunn & Szalay 1999), ugriz.
ASINH_SOFTENING = np.array([1.4e-10, 0.9e-10, 1.2e-10, 1.8e-10, 7.4e-10])
#: Aperture radii of the photometric features measured on image cubes [pixels of 0.396″].
APERTURE_RADII_PIX = (3.0, 6.0, 12.0, 24.0)


@dataclass(frozen=True)
class FilterSet:
    """Response curves of the SDSS 2010 ugriz filters (airmass 1.3, from speclite).

    Attributes
    ----------
    wave : list of ndarray
        Wavelength of each curve [Å].
    response : list of ndarray
        Photon-counting response, dimensionless.
    effective_wave : ndarray
        Effective wavelength of each band [Å].
    """

    wave: tuple[np.ndarray, ...]
    response: tuple[np.ndarray, ...]
    effective_wave: np.ndarray


def sdss_filters() -> FilterSet:
    """Load the SDSS ugriz response curves shipped with speclite."""
    curves = speclite.filters.load_filters(*(f"sdss2010-{b}" for b in BANDS))
    return FilterSet(
        tuple(np.asarray(c.wavelength, float) for c in curves),
        tuple(np.asarray(c.response, float) for c in curves),
        np.array([c.effective_wavelength.value for c in curves]),
    )


def ab_maggies(wave: np.ndarray, flux: np.ndarray, filters: FilterSet, bands: str = "".join(BANDS)) -> np.ndarray:
    """AB maggies of spectra in each band.

    Parameters
    ----------
    wave : ndarray, (n_pix,)
        Observed wavelength [Å], increasing; must cover every filter curve.
    flux : ndarray, (..., n_pix)
        Flux density [erg s⁻¹ cm⁻² Å⁻¹].
    filters : FilterSet
    bands : str
        Bands to compute, e.g. ``"r"`` or ``"gri"``.

    Returns
    -------
    ndarray, (..., n_bands)
        Flux in units of the AB zero point (multiply by 1e9 for nanomaggies).
    """
    out = []
    for band in bands:
        band_wave, response = filters.wave[BANDS.index(band)], filters.response[BANDS.index(band)]
        if band_wave[0] < wave[0] or band_wave[-1] > wave[-1]:
            raise ValueError(
                f"spectrum covers {wave[0]:.0f}-{wave[-1]:.0f} A but the filter needs "
                f"{band_wave[0]:.0f}-{band_wave[-1]:.0f} A"
            )
        r = np.interp(wave, band_wave, response, left=0.0, right=0.0)
        weight = r * wave * np.gradient(wave)
        reference = np.sum(weight * AB_ZERO_POINT_FNU * C_ANGSTROM_PER_S / wave**2)
        out.append(flux @ weight / reference)
    return np.stack(out, axis=-1)


def line_maggies(line_wave: np.ndarray, line_flux: np.ndarray, filters: FilterSet) -> np.ndarray:
    """AB maggies of unresolved emission lines in each band.

    Parameters
    ----------
    line_wave : ndarray, (..., n_lines)
        Observed wavelengths [Å].
    line_flux : ndarray, (..., n_lines)
        Integrated fluxes [erg s⁻¹ cm⁻²].

    Returns
    -------
    ndarray, (..., 5)
        A line of flux F at λ adds F R(λ) λ / ∫ f_AB,λ R λ dλ, the photon-counting definition used by
        :func:`ab_maggies`.
    """
    out = []
    for band_wave, response in zip(filters.wave, filters.response):
        grid = np.gradient(band_wave)
        reference = np.sum(response * band_wave * grid * AB_ZERO_POINT_FNU * C_ANGSTROM_PER_S / band_wave**2)
        r = np.interp(line_wave, band_wave, response, left=0.0, right=0.0)
        out.append(np.sum(line_flux * r * line_wave, axis=-1) / reference)
    return np.stack(out, axis=-1)


def nanomaggies_to_mag(nanomaggies: np.ndarray) -> np.ndarray:
    """Pogson AB magnitude of a flux in nanomaggies: 22.5 − 2.5 log10 f."""
    return 22.5 - 2.5 * np.log10(nanomaggies)


def mag_to_nanomaggies(mag: ArrayLike) -> np.ndarray:
    """Flux in nanomaggies of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - 22.5))


def asinh_mag(nanomaggies: np.ndarray) -> np.ndarray:
    """SDSS asinh magnitudes ("luptitudes") of fluxes (..., 5) in nanomaggies, ugriz softening."""
    maggies = np.asarray(nanomaggies) * 1e-9
    b = ASINH_SOFTENING
    return -2.5 / np.log(10.0) * (np.arcsinh(maggies / (2 * b)) + np.log(b))


def aperture_fluxes(images: np.ndarray, radii_pix: tuple[float, ...]) -> np.ndarray:
    """Fluxes (N, n_radii, bands) inside circles of ``radii_pix`` around the cube centre [image units].

    Pixels count by the fraction of a 4×4 sub-pixel grid inside the circle, so fluxes change smoothly
    with radius.
    """
    images = np.asarray(images, np.float64)
    return np.einsum("nbyx,ryx->nrb", images, _aperture_weights(images.shape[-2:], tuple(radii_pix)))


@functools.lru_cache(maxsize=8)
def _aperture_weights(shape: tuple[int, int], radii_pix: tuple[float, ...]) -> np.ndarray:
    size_y, size_x = shape
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    y = (np.arange(size_y)[:, None] + sub[None, :]).ravel() - (size_y - 1) / 2
    x = (np.arange(size_x)[:, None] + sub[None, :]).ravel() - (size_x - 1) / 2
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return np.stack([(r2 <= r**2).reshape(size_y, 4, size_x, 4).mean(axis=(1, 3)) for r in radii_pix])


def robust_centre_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and 1.4826 × MAD of ``values`` (N, F); a column without spread gets scale 1."""
    centre = np.median(values, axis=0)
    scale = 1.4826 * np.median(np.abs(values - centre), axis=0)
    return centre, np.where(scale > 0, scale, 1.0)


def photometric_features(images: np.ndarray, radii_pix: tuple[float, ...] = APERTURE_RADII_PIX) -> np.ndarray:
    """Photometric features of ugriz cubes (N, 5, H, W) [nanomaggies], measured around the cube centre.

    Used by the nearest-neighbour baseline and, optionally, as extra conditioning of the networks.

    Per aperture: the r asinh magnitude and the four adjacent colours u−g, g−r, r−i, i−z; plus the
    concentration, r magnitude in the smallest minus the largest aperture.  Returns (N, 5·n_radii + 1).

    Raises
    ------
    InputError
        For a wrong shape or non-finite pixels.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 5:
        raise InputError(f"image cubes have shape {images.shape}; expected (N, 5, H, W) ugriz")
    bad = np.flatnonzero(~np.isfinite(images).all(axis=(1, 2, 3)))
    if bad.size:
        raise InputError(f"{bad.size} image cubes have non-finite pixels (first at position {bad[0]})")
    mags = asinh_mag(aperture_fluxes(images, radii_pix))  # (N, n_radii, 5)
    colours = mags[..., :-1] - mags[..., 1:]
    per_aperture = np.concatenate([mags[..., 2:3], colours], axis=-1).reshape(len(images), -1)
    concentration = mags[:, 0, 2] - mags[:, -1, 2]
    return np.concatenate([per_aperture, concentration[:, None]], axis=1)
