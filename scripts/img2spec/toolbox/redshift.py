"""Redshift of a spectrum by a template fit over a grid of trial redshifts (never reading a catalog z).

As the SDSS pipeline (Bolton et al. 2012), the model at each trial z is a linear combination of
eigenspectra and an additive polynomial, fitted by weighted least squares; the redshift is the
χ² minimum.  The trials are whole pixels of a log10-λ grid of step 1e-4 (69 km/s), so every sum
in the normal equations is a cross-correlation, all computed at once with FFTs; a parabola through
the three lowest points refines the minimum.

The basis: the leading principal components of an SSP library (broadened to a typical galaxy
σ and the instrument), and emission-line templates with fixed ratios within a group (Balmer
series, [O II], [O III], [N II], [S II]) whose amplitudes may take either sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from ..preprocessing import gaussian_smooth
from ..spectral import FWHM_PER_SIGMA, LOG10_STEP, PIXEL_KMS
from ..templates import SSPLibrary, extend_with_power_laws
from ..units import C_KMS, air_to_vacuum
from .spectra import check_spectrum, rebin

#: Emission-line groups: rest air wavelengths [Å] and relative fluxes (Balmer: case B, 10⁴ K).
LINE_GROUPS = {
    "balmer": ((6562.80, 4861.33, 4340.47, 4101.74), (2.86, 1.0, 0.47, 0.26)),
    "oii": ((3726.03, 3728.82), (1.0, 1.0)),
    "oiii": ((4958.92, 5006.84), (1.0, 2.98)),
    "nii": ((6548.03, 6583.41), (1.0, 2.94)),
    "sii": ((6716.47, 6730.85), (1.0, 1.0)),
}


@dataclass(frozen=True)
class RedshiftBasis:
    """Rest-frame templates on the log10-λ grid λ = 10^(k·1e-4), k = k0, k0+1, ….

    Attributes
    ----------
    k0 : int
        Index of the first template pixel.
    templates : ndarray, (n_templates, n_pix)
        Eigenspectra then emission-line groups (vacuum wavelengths).
    names : tuple of str
    z_max : float
        Largest redshift the templates cover for ``obs_range``.
    obs_range : (float, float)
        Observed vacuum wavelengths [Å] the templates cover at every 0 ≤ z ≤ z_max.
    poly_degree : int
        Degree of the additive Legendre polynomial.
    """

    k0: int
    templates: np.ndarray
    names: tuple[str, ...]
    z_max: float
    obs_range: tuple[float, float]
    poly_degree: int


def build_basis(
    library: SSPLibrary,
    resolving_power: float = 1500.0,
    sigma_kms: float = 150.0,
    n_eigen: int = 5,
    z_max: float = 0.35,
    obs_range: tuple[float, float] = (3800.0, 9200.0),
    poly_degree: int = 2,
) -> RedshiftBasis:
    """Eigenspectra of ``library`` plus emission-line groups, covering ``obs_range`` for 0 ≤ z ≤ ``z_max``.

    Outside the library's range the SSPs continue as power laws
    (:func:`img2spec.templates.extend_with_power_laws`); all lines are broadened to
    √(σ² + σ_inst²), ignoring the library's own (smaller) resolution.
    """
    k0 = int(np.floor(np.log10(obs_range[0] / (1 + z_max)) / LOG10_STEP)) - 2
    k1 = int(np.ceil(np.log10(obs_range[1]) / LOG10_STEP)) + 2
    wave = 10.0 ** (np.arange(k0, k1 + 1) * LOG10_STEP)
    sigma_total = np.hypot(sigma_kms, C_KMS / (resolving_power * FWHM_PER_SIGMA))
    ssp = extend_with_power_laws(air_to_vacuum(library.wave_air), library.flux, wave)
    ssp = gaussian_smooth(ssp / ssp.mean(axis=1, keepdims=True), sigma_total / PIXEL_KMS)
    _, _, components = np.linalg.svd(ssp - ssp.mean(axis=0), full_matrices=False)
    eigen = np.vstack([ssp.mean(axis=0), components[: n_eigen - 1]])
    edges = 10.0 ** ((np.arange(k0, k1 + 2) - 0.5) * LOG10_STEP)
    lines = []
    for centres, ratios in LINE_GROUPS.values():
        profile = np.zeros(wave.size)
        for centre, ratio in zip(air_to_vacuum(np.array(centres)), ratios):
            width = centre * sigma_total / C_KMS * np.sqrt(2.0)
            profile += ratio * np.diff(0.5 * erf((edges - centre) / width)) / np.diff(edges)
        lines.append(profile / profile.max())
    return RedshiftBasis(
        k0,
        np.vstack([eigen / np.abs(eigen).max(axis=1, keepdims=True), lines]),
        tuple([f"eigen{i}" for i in range(n_eigen)] + list(LINE_GROUPS)),
        z_max,
        obs_range,
        poly_degree,
    )


def _correlate(data: np.ndarray, templates: np.ndarray, n_lags: int) -> np.ndarray:
    """c[..., L] = Σ_i data[..., i] templates[..., i + L] for L = 0 … n_lags−1 (broadcast over leading axes)."""
    size = int(2 ** np.ceil(np.log2(data.shape[-1] + templates.shape[-1])))
    product = np.conj(np.fft.rfft(data, size)) * np.fft.rfft(templates, size)
    return np.fft.irfft(product, size)[..., :n_lags]


def measure_redshift(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    basis: RedshiftBasis,
    z_range: tuple[float, float] = (0.0, 0.3),
    name: str = "spectrum",
) -> dict[str, float]:
    """Redshift of one spectrum by χ² minimisation over trial redshifts.

    Parameters
    ----------
    wave : ndarray
        Observed vacuum wavelength [Å], inside ``basis.obs_range``.
    flux, ivar : ndarray
        f_λ and inverse variance (ivar = 0: pixel not used).
    basis : RedshiftBasis
    z_range : (float, float)
        Trial redshifts, within [0, ``basis.z_max``].

    Returns
    -------
    dict
        ``z``, ``z_err`` (from the χ² curvature, Δχ² = 1), ``chi2_per_dof`` at the minimum, and
        ``delta_chi2_per_dof`` to the best trial more than 1000 km/s away (small: ambiguous).
    """
    wave, flux, ivar = check_spectrum(wave, flux, ivar, name)
    if not 0.0 <= z_range[0] < z_range[1] <= basis.z_max:
        raise ValueError(f"z_range {z_range} must lie within [0, {basis.z_max}]")
    if wave[0] < basis.obs_range[0] or wave[-1] > basis.obs_range[1]:
        raise ValueError(f"{name}: {wave[0]:.0f}-{wave[-1]:.0f} Å outside the basis' {basis.obs_range} Å")
    k_data0 = int(np.ceil(np.log10(wave[0]) / LOG10_STEP))
    k_data = np.arange(k_data0, int(np.floor(np.log10(wave[-1]) / LOG10_STEP)) + 1)
    y, w = rebin(wave, flux, ivar, 10.0 ** (k_data * LOG10_STEP))
    n, m = k_data.size, basis.templates.shape[1]
    x = np.linspace(-1.0, 1.0, n)
    poly = np.polynomial.legendre.legvander(x, basis.poly_degree).T  # (n_poly, n)
    t = basis.templates
    n_t, n_p = t.shape[0], poly.shape[0]
    n_lags = m - n + 1
    pairs = np.triu_indices(n_t)
    tt = _correlate(w, t[pairs[0]] * t[pairs[1]], n_lags)  # (n_pairs, n_lags)
    tp = _correlate(w * poly[:, None, :], t[None, :, :], n_lags)  # (n_p, n_t, n_lags)
    ty = _correlate(w * y, t, n_lags)  # (n_t, n_lags)
    pp = (w * poly) @ poly.T
    py = (w * poly) @ y

    # trial shift s (pixels): data pixel k uses template pixel k − s, i.e. lag L = k_data0 − k0 − s
    s_lo = int(np.ceil(np.log10(1 + z_range[0]) / LOG10_STEP))
    s_hi = int(np.floor(np.log10(1 + z_range[1]) / LOG10_STEP))
    shifts = np.arange(s_lo, s_hi + 1)
    lags = k_data0 - basis.k0 - shifts
    size = n_t + n_p
    normal = np.zeros((shifts.size, size, size))
    normal[:, pairs[0], pairs[1]] = tt[:, lags].T
    normal[:, pairs[1], pairs[0]] = tt[:, lags].T
    normal[:, :n_t, n_t:] = tp[:, :, lags].transpose(2, 1, 0)
    normal[:, n_t:, :n_t] = tp[:, :, lags].transpose(2, 0, 1)
    normal[:, n_t:, n_t:] = pp
    rhs = np.concatenate([ty[:, lags].T, np.broadcast_to(py, (shifts.size, n_p))], axis=1)
    normal += np.eye(size) * 1e-10 * np.trace(normal, axis1=1, axis2=2)[:, None, None] / size
    coeffs = np.linalg.solve(normal, rhs[..., None])[..., 0]
    chi2 = np.sum(w * y * y) - np.einsum("sk,sk->s", coeffs, rhs)

    best = int(np.argmin(chi2))
    shift, curvature = float(shifts[best]), np.nan
    if 0 < best < shifts.size - 1:
        left, centre, right = chi2[best - 1 : best + 2]
        curvature = left - 2 * centre + right
        if curvature > 0:
            shift += 0.5 * (left - right) / curvature
    dof = max(int((w > 0).sum()) - size, 1)
    far = np.abs(shifts - shifts[best]) * PIXEL_KMS > 1000.0
    z = 10.0 ** (shift * LOG10_STEP) - 1.0
    z_err = (1 + z) * np.log(10) * LOG10_STEP * np.sqrt(2.0 / curvature) if curvature > 0 else np.nan
    return {
        "z": float(z),
        "z_err": float(z_err),
        "chi2_per_dof": float(chi2[best] / dof),
        "delta_chi2_per_dof": float((chi2[far].min() - chi2[best]) / dof) if far.any() else np.nan,
    }
