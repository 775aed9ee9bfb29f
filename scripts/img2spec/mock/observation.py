"""How the mock survey observes: seeing, sky, noise and pixel flags of its spectra and images.

The sky-line list and the SDSS-like observing conditions (:class:`ObservationSettings`), shared by the
spectra's noise model and the images'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..settings import Settings

#: Bright night-sky lines [Å, air] and fluxes through a 3″ fiber [1e-17 erg/s/cm²] (order of
#: magnitude of SDSS sky spectra): [O I], Na D and the strongest OH Meinel bands.
SKY_LINES_AIR = np.array(
    [
        5577.34,
        5889.95,
        5895.92,
        6300.30,
        6363.78,
        6863.96,
        6923.22,
        7276.41,
        7316.28,
        7340.89,
        7750.64,
        7794.11,
        7821.50,
        7913.71,
        7993.33,
        8344.60,
        8399.17,
        8430.17,
        8465.36,
        8827.10,
        8885.85,
        8919.63,
        8958.08,
        9001.39,
    ]
)
SKY_LINE_FLUX = np.array(
    [
        2000,
        300,
        300,
        700,
        230,
        350,
        300,
        350,
        500,
        450,
        600,
        700,
        500,
        600,
        700,
        1200,
        1000,
        900,
        800,
        1500,
        1300,
        1000,
        1200,
        1400,
    ],
    dtype=float,
)
#: SDSS pixel-mask bit for sky lines brighter than the continuum around them.
BRIGHTSKY_BIT = 1 << 23


@dataclass(frozen=True, kw_only=True)
class ObservationSettings(Settings):
    """How the mock SDSS observes its galaxies.

    Attributes
    ----------
    image_size, pixel_arcsec : int, float
        Cube size [pixels] and SDSS pixel scale [″].
    psf_fwhm : tuple of float
        Seeing FWHM per band [″], ugriz (SDSS median ≈1.4″ in r).
    depth_5sigma : tuple of float
        5σ point-source AB magnitude per band (SDSS: 22.0, 22.2, 22.2, 21.3, 20.5).
    electrons_per_nmgy : tuple of float
        Detected electrons per nanomaggy per band, for the galaxies' own Poisson noise.
    fiber_radius, fiber_seeing : float
        Fiber aperture radius and seeing FWHM during the spectroscopic exposure [″].
    sky_mag : tuple of float
        Night-sky surface brightness per band [AB mag/arcsec²].
    snr_r18 : float
        Spectral S/N per pixel at 6200 Å for a fiber magnitude r = 18.
    resolving_power : float
        Spectrograph R = λ/FWHM.
    calibration_error : float
        Amplitude of the smooth flux-calibration error across the spectrum (fractional).
    sky_residual : float
        Relative amplitude of sky-line subtraction residuals.
    bad_pixel_rate : float
        Fraction of spectral pixels flagged and given zero inverse variance.
    neighbour_probability, star_probability : float
        Chance that a cube contains another galaxy or a star.
    """

    SECTION: ClassVar[str] = "mock.observation"

    image_size: int
    pixel_arcsec: float
    psf_fwhm: tuple[float, ...]
    depth_5sigma: tuple[float, ...]
    electrons_per_nmgy: tuple[float, ...]
    fiber_radius: float
    fiber_seeing: float
    sky_mag: tuple[float, ...]
    snr_r18: float
    resolving_power: float
    calibration_error: float
    sky_residual: float
    bad_pixel_rate: float
    neighbour_probability: float
    star_probability: float
