"""Spectral energy distributions of mock galaxies: stellar continua, emission lines, fiber spectra.

Stellar light is a sum of SSP spectra weighted by each component's star-formation history,
interpolated in metallicity, attenuated by Calzetti dust and broadened by the component's velocity
dispersion.  The SSPs are placed on the SDSS grid (Δlog10 λ = 1e-4) in the rest frame, so that
redshifting is a pure shift and, with the line-of-sight velocity distribution, one multiplication in
Fourier space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from ..dust import calzetti_k
from ..preprocessing import gaussian_smooth, rebin_matrix
from ..spectral import FWHM_PER_SIGMA, LOG10_STEP, PIXEL_KMS
from ..templates import BLUE_WINDOWS, RED_WINDOWS, SSPLibrary, extend_with_power_laws
from ..units import C_KMS, L_SUN_ERG_S, SDSS_FLUX_UNIT, air_to_vacuum

#: SDSS observed grid: log10 λ indices of 3800.4 Å and 9201.4 Å.
OBSERVED_K0, OBSERVED_K1 = 35798, 39638
#: Rest-frame range of the spectroscopic templates kept [Å, vacuum]; a few Å inside MIUSCAT's so
#: that convolution edges never reach the data.
REST_RANGE = (3500.0, 9400.0)
#: Rest range and step of the photometric SED grid [Å]: wide enough for u at z = 0.15 and z at
#: z = 0.05.
PHOT_RANGE, PHOT_STEP = (2400.0, 10800.0), 4.0


def observed_loglam() -> np.ndarray:
    """log10 λ of the mock's observed pixels (the SDSS grid from 3800 to 9200 Å)."""
    return np.arange(OBSERVED_K0, OBSERVED_K1 + 1) * LOG10_STEP


@dataclass
class SpectralModel:
    """SSP library prepared for fast synthesis.

    Attributes
    ----------
    ages, metallicities : ndarray
        The library's grid axes [Gyr], [dex].
    rest_k0 : int
        log10-λ index of the first rest-frame pixel (λ = 10**(k·1e-4)).
    spec : ndarray, (n_met·n_age, n_rest)
        SSPs on the rest log grid at the SDSS resolution R = 2000 [L_sun/Å per M_sun].
    phot_wave, phot : ndarray
        Rest wavelength [Å] and SSPs (n_met·n_age, n_phot) for broad-band photometry, extended by
        power laws outside the library's range.
    extrapolated : ndarray of bool
        True where ``phot_wave`` lies outside the library.
    instrument_sigma_kms : float
        Gaussian σ of the line-spread function of R = 2000.
    """

    ages: np.ndarray
    metallicities: np.ndarray
    rest_k0: int
    spec: np.ndarray
    phot_wave: np.ndarray
    phot: np.ndarray
    extrapolated: np.ndarray
    instrument_sigma_kms: float

    @classmethod
    def from_library(cls, library: SSPLibrary, resolving_power: float = 2000.0) -> SpectralModel:
        """Put ``library`` on the rest log grid and broaden it to ``resolving_power``.

        MILES-based spectra have a constant FWHM in Å (2.51 Å for MIUSCAT), so their velocity
        resolution improves to the red.  Where they are sharper than the instrument, a Gaussian of
        σ² = σ_inst² − σ_ssp(λ)² is added (σ varying with λ, by interpolating between spectra
        smoothed with a set of fixed kernels); bluewards of ≈5000 Å they are slightly broader
        than SDSS and are left as they are.
        """
        ages, metals = library.ages, library.metallicities
        grid = np.zeros((metals.size, ages.size, library.wave_air.size))
        for m, metal in enumerate(metals):
            for a, age in enumerate(ages):
                hit = np.flatnonzero((library.metallicity == metal) & (library.age_gyr == age))
                if hit.size != 1:
                    raise ValueError(f"{library.name}: no unique SSP at age {age}, [M/H] {metal}")
                grid[m, a] = library.flux[hit[0]]
        flat = grid.reshape(-1, library.wave_air.size)
        wave_vac = air_to_vacuum(library.wave_air)
        in_edges = np.concatenate(
            [
                [wave_vac[0] - 0.5 * (wave_vac[1] - wave_vac[0])],
                0.5 * (wave_vac[1:] + wave_vac[:-1]),
                [wave_vac[-1] + 0.5 * (wave_vac[-1] - wave_vac[-2])],
            ]
        )
        k0 = int(np.ceil(np.log10(REST_RANGE[0]) / LOG10_STEP))
        k1 = int(np.floor(np.log10(REST_RANGE[1]) / LOG10_STEP))
        k = np.arange(k0, k1 + 1)
        out_edges = 10.0 ** ((np.append(k, k1 + 1) - 0.5) * LOG10_STEP)
        weights = rebin_matrix(in_edges, out_edges)
        rest = (weights.T @ flat.T).T / np.asarray(weights.sum(axis=0)).ravel()

        sigma_inst = C_KMS / (resolving_power * FWHM_PER_SIGMA)
        wave_rest = 10.0 ** (k * LOG10_STEP)
        sigma_ssp = C_KMS * library.fwhm / FWHM_PER_SIGMA / wave_rest
        extra_pix = np.sqrt(np.clip(sigma_inst**2 - sigma_ssp**2, 0.0, None)) / PIXEL_KMS
        levels = np.linspace(0.0, extra_pix.max(), 8)
        smoothed = np.stack([rest if lv == 0 else gaussian_smooth(rest, lv) for lv in levels])
        position = np.interp(extra_pix, levels, np.arange(levels.size))
        lo = np.floor(position).astype(int).clip(0, levels.size - 2)
        t = position - lo
        cols = np.arange(k.size)
        spec = smoothed[lo, :, cols].T * (1 - t) + smoothed[lo + 1, :, cols].T * t

        phot_wave = np.arange(PHOT_RANGE[0], PHOT_RANGE[1] + PHOT_STEP, PHOT_STEP)
        phot = extend_with_power_laws(wave_vac, flat, phot_wave)
        return cls(
            ages,
            metals,
            k0,
            spec,
            phot_wave,
            phot,
            (phot_wave < BLUE_WINDOWS[0][0]) | (phot_wave > RED_WINDOWS[1][1]),
            sigma_inst,
        )

    @property
    def rest_wave(self) -> np.ndarray:
        """Rest-frame vacuum wavelength of ``spec``'s pixels [Å]."""
        return 10.0 ** ((self.rest_k0 + np.arange(self.spec.shape[1])) * LOG10_STEP)

    def ssp_weights(self, sfh: np.ndarray, metallicity: np.ndarray) -> np.ndarray:
        """Weights (n, n_met·n_age) [M_sun] of a star-formation history at one metallicity each.

        ``sfh`` (n, n_age) is the mass formed per SSP age; the metallicity is interpolated linearly
        between the two bracketing library values and clipped to the library's range.
        """
        met = np.clip(metallicity, self.metallicities[0], self.metallicities[-1])
        upper = np.clip(np.searchsorted(self.metallicities, met), 1, self.metallicities.size - 1)
        t = (met - self.metallicities[upper - 1]) / (self.metallicities[upper] - self.metallicities[upper - 1])
        weights = np.zeros((sfh.shape[0], self.metallicities.size, sfh.shape[1]))
        rows = np.arange(sfh.shape[0])
        weights[rows, upper - 1] = sfh * (1 - t)[:, None]
        weights[rows, upper] += sfh * t[:, None]
        return weights.reshape(sfh.shape[0], -1)


def redshift_and_broaden(
    rest: np.ndarray, rest_k0: int, z: np.ndarray, sigma_kms: np.ndarray, target_k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shift rest-frame spectra on the log grid to redshift ``z`` and convolve with a Gaussian LOSVD.

    Both are one multiplication in Fourier space: exp(−2π²σ²f²) for the LOSVD and the phase ramp
    exp(−2πi f φ) for the fractional part φ of the shift log10(1+z)/1e-4 pixels.

    Parameters
    ----------
    rest : ndarray, (n, n_rest)
        Spectra on the log grid starting at index ``rest_k0``.
    z, sigma_kms : ndarray, (n,)
    target_k : ndarray, (n_out,)
        log10-λ indices of the observed pixels.

    Returns
    -------
    flux : ndarray, (n, n_out)
        The observed-frame spectra (zero where not covered); per unit of ``rest`` divided by (1+z)
        is left to the caller.
    covered : ndarray of bool, (n, n_out)
        Pixels at least 6σ inside the rest-frame range.
    """
    _n, n_rest = rest.shape
    pad = 64
    padded = np.pad(rest, ((0, 0), (pad, pad)), mode="edge")
    n_fft = int(2 ** np.ceil(np.log2(padded.shape[1] + pad)))
    freq = np.fft.rfftfreq(n_fft)
    shift = np.log10(1.0 + z) / LOG10_STEP
    whole = np.floor(shift).astype(int)
    frac = shift - whole
    sigma_pix = sigma_kms / PIXEL_KMS
    transfer = np.exp(-2 * np.pi**2 * sigma_pix[:, None] ** 2 * freq**2 - 2j * np.pi * freq * frac[:, None])
    shifted = np.fft.irfft(np.fft.rfft(padded, n_fft, axis=1) * transfer, n_fft, axis=1)
    index = target_k[None, :] - whole[:, None] - rest_k0 + pad  # position in ``padded``
    margin = np.ceil(6 * sigma_pix[:, None]) + 3
    covered = (index >= pad + margin) & (index <= pad + n_rest - 1 - margin)
    flux = np.take_along_axis(shifted, np.clip(index, 0, n_fft - 1), axis=1)
    return np.where(covered, flux, 0.0), covered


def line_profiles(loglam: np.ndarray, centre: np.ndarray, sigma_kms: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Gaussian lines integrated over log-λ pixels, as flux density.

    Parameters
    ----------
    loglam : ndarray, (n_pix,)
        Pixel centres in log10 λ on a grid of step 1e-4.
    centre : ndarray, (n, n_lines)
        Observed vacuum wavelengths [Å].
    sigma_kms : ndarray, (n, n_lines)
        Total Gaussian σ, instrument included [km/s].
    flux : ndarray, (n, n_lines)
        Integrated line fluxes [flux-density unit × Å].

    Returns
    -------
    ndarray, (n, n_pix)
    """
    edges = 10.0 ** np.append(loglam - 0.5 * LOG10_STEP, loglam[-1] + 0.5 * LOG10_STEP)
    width = np.diff(edges)
    out = np.zeros((centre.shape[0], loglam.size))
    sigma_a = centre * sigma_kms / C_KMS
    for j in range(centre.shape[1]):
        lo = np.searchsorted(edges, (centre[:, j] - 8 * sigma_a[:, j]).min()) - 1
        hi = np.searchsorted(edges, (centre[:, j] + 8 * sigma_a[:, j]).max()) + 1
        lo, hi = max(lo, 0), min(hi, edges.size - 1)
        if hi <= lo:
            continue
        e = edges[lo : hi + 1]
        cdf = 0.5 * (1 + erf((e[None, :] - centre[:, j : j + 1]) / (np.sqrt(2) * sigma_a[:, j : j + 1])))
        out[:, lo:hi] += flux[:, j : j + 1] * np.diff(cdf, axis=1) / width[lo:hi]
    return out


def luminosity_to_sdss_flux(luminosity_distance_cm: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Factor turning L_sun Å⁻¹ (rest) into observed 1e-17 erg s⁻¹ cm⁻² Å⁻¹: L_sun / (4π d_L² (1+z))."""
    return L_SUN_ERG_S / (4 * np.pi * luminosity_distance_cm**2 * (1 + z)) / SDSS_FLUX_UNIT


def attenuated(spectra: np.ndarray, wave_rest: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """Apply Calzetti attenuation with E(B−V)_star ``ebv`` (n,) to rest-frame spectra (n, n_pix)."""
    return spectra * np.exp(-0.4 * np.log(10.0) * ebv[:, None] * calzetti_k(wave_rest)[None, :])
