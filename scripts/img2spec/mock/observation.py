"""How the mock survey observes: seeing, sky, noise and pixel flags of its spectra and images.

The sky-line list and the SDSS-like observing conditions (:class:`ObservationSettings`), shared by the
spectra's noise model and the images'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cubes import CUBE_SIZE, PIXEL_ARCSEC

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


@dataclass(frozen=True)
class ObservationSettings:
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

    image_size: int = CUBE_SIZE
    pixel_arcsec: float = PIXEL_ARCSEC
    psf_fwhm: tuple[float, ...] = (1.55, 1.45, 1.35, 1.3, 1.3)
    depth_5sigma: tuple[float, ...] = (22.0, 22.2, 22.2, 21.3, 20.5)
    electrons_per_nmgy: tuple[float, ...] = (160.0, 1100.0, 940.0, 700.0, 160.0)
    fiber_radius: float = 1.5
    fiber_seeing: float = 1.35
    sky_mag: tuple[float, ...] = (22.1, 21.9, 20.9, 20.2, 18.9)
    snr_r18: float = 15.0
    resolving_power: float = 2000.0
    calibration_error: float = 0.02
    sky_residual: float = 0.01
    bad_pixel_rate: float = 1e-3
    neighbour_probability: float = 0.25
    star_probability: float = 0.15
