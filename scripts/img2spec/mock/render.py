"""Galaxy light profiles as mixtures of Gaussians: images, fiber apertures and Petrosian radii.

A Sérsic profile is approximated by a mixture of concentric Gaussians (the idea of Hogg & Lang
2013; the amplitudes here come from our own non-negative least-squares fit).  Then convolution with a
Gaussian PSF, pixel integration, elliptical projection and aperture fluxes are all analytic, which
keeps the mock fast and its photometry exact.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls
from scipy.special import gammaincinv

from ..spectral import FWHM_PER_SIGMA

N_THETA = 64


@functools.cache
def sersic_mixture(n: float, n_gauss: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-mixture approximation of a Sérsic profile of index ``n`` and half-light radius 1.

    Returns
    -------
    amplitude : ndarray
        Flux fraction of each Gaussian (sums to 1).
    sigma : ndarray
        Standard deviation of each Gaussian, in units of the half-light radius; the mixture's own
        half-light radius is exactly 1.
    """
    b_n = gammaincinv(2 * n, 0.5)
    r = np.logspace(-3, np.log10(8.0), 600)
    profile = np.exp(-b_n * (r ** (1 / n) - 1))
    sigma = np.logspace(np.log10(0.002 if n > 2 else 0.05), np.log10(3.0 if n > 2 else 1.5), n_gauss)
    # flux-weighted fit: each radius counts with the light in its logarithmic annulus (∝ r²)
    basis = np.exp(-0.5 * (r[:, None] / sigma) ** 2) / (2 * np.pi * sigma**2)
    weight = r
    amp, _ = nnls(basis * weight[:, None], profile * weight)
    amp = amp / amp.sum()
    enclosed = lambda radius: np.sum(amp * (1 - np.exp(-0.5 * (radius / sigma) ** 2)))
    lo, hi = 0.01, 10.0
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if enclosed(mid) < 0.5 else (lo, mid)
    return amp, sigma / np.sqrt(lo * hi)


def component_covariances(
    re_arcsec: np.ndarray, q: np.ndarray, pa_deg: np.ndarray, sersic_n: float
) -> tuple[np.ndarray, np.ndarray]:
    """Covariance matrices [arcsec²] of the Gaussians of elliptical Sérsic components.

    ``re_arcsec`` is the half-light semi-major axis.  Returns amplitudes (n_gauss,) and
    covariances (n_gal, n_gauss, 2, 2) on the sky (x right, y up, PA from +y through +x).
    """
    amp, sigma = sersic_mixture(sersic_n)
    theta = np.deg2rad(pa_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    major = (re_arcsec[:, None] * sigma[None, :]) ** 2
    minor = major * q[:, None] ** 2
    # the major axis points along (sin θ, cos θ)
    cxx = major * sin[:, None] ** 2 + minor * cos[:, None] ** 2
    cyy = major * cos[:, None] ** 2 + minor * sin[:, None] ** 2
    cxy = (major - minor) * (sin * cos)[:, None]
    cov = np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2)
    return amp, cov


def render_gaussians(
    amp: np.ndarray, cov: np.ndarray, centre_pix: np.ndarray, size: int, pixel_arcsec: float
) -> np.ndarray:
    """Images of unit-flux Gaussian mixtures, each pixel holding its integrated flux.

    Parameters
    ----------
    amp : ndarray, (n_gal, n_gauss)
        Flux fraction of each Gaussian.
    cov : ndarray, (n_gal, n_gauss, 2, 2)
        Covariances [arcsec²] including the PSF; the pixel response adds pixel²/12 per axis.
    centre_pix : ndarray, (n_gal, 2)
        Centre (x, y) in pixel coordinates (0 is the centre of the first pixel).

    Returns
    -------
    ndarray, (n_gal, size, size)
        Images indexed [y, x] whose sum over the whole plane is 1.
    """
    c = cov / pixel_arcsec**2 + np.eye(2) / 12.0
    det = c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] ** 2
    inv_xx, inv_yy, inv_xy = c[..., 1, 1] / det, c[..., 0, 0] / det, -c[..., 0, 1] / det
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, :] - centre_pix[:, 0:1]  # (n_gal, size)
    dy = grid[None, :] - centre_pix[:, 1:2]
    norm = amp / (2 * np.pi * np.sqrt(det))
    # exponent = −½ (ixx dx² + 2 ixy dx dy + iyy dy²), evaluated as an outer sum per Gaussian
    ex = -0.5 * inv_xx[:, :, None] * dx[:, None, :] ** 2  # (n_gal, n_gauss, size_x)
    ey = -0.5 * inv_yy[:, :, None] * dy[:, None, :] ** 2
    exy = -inv_xy[:, :, None, None] * dy[:, None, :, None] * dx[:, None, None, :]
    images = np.exp(ey[..., :, None] + ex[..., None, :] + exy)
    return np.einsum("gk,gkyx->gyx", norm, images)


def enclosed_fraction(cov: np.ndarray, radius: ArrayLike) -> np.ndarray:
    """Fraction of a centred 2-D Gaussian's flux inside circles of ``radius``.

    Uses ∫₀^R p r dr = (1 − e^(−R²A/2)) / (2π σ₁σ₂ A) with A(θ) = cos²θ/σ₁² + sin²θ/σ₂², then a
    trapezoid rule in θ, exact to round-off for a periodic integrand.

    Parameters
    ----------
    cov : ndarray, (..., 2, 2)
    radius : ndarray
        Broadcast against ``cov``'s leading dimensions.
    """
    eig = np.linalg.eigvalsh(cov)
    s1, s2 = np.sqrt(eig[..., 0]), np.sqrt(eig[..., 1])
    theta = np.linspace(0, 2 * np.pi, N_THETA, endpoint=False)
    a = np.cos(theta) ** 2 / s1[..., None] ** 2 + np.sin(theta) ** 2 / s2[..., None] ** 2
    r2 = np.asarray(radius)[..., None] ** 2
    integrand = -np.expm1(-0.5 * r2 * a) / a
    return integrand.mean(axis=-1) / (s1 * s2)


def with_psf(cov: np.ndarray, psf_fwhm_arcsec: float) -> np.ndarray:
    """Add a circular Gaussian PSF of the given FWHM to covariances (..., 2, 2)."""
    psf_var = (psf_fwhm_arcsec / FWHM_PER_SIGMA) ** 2
    return cov + psf_var * np.eye(2)


def petrosian_quantities(
    amps: list[np.ndarray], covs: list[np.ndarray], fluxes: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """SDSS Petrosian radius, R50, R90 [arcsec] and flux of PSF-convolved mixtures.

    The Petrosian ratio is the mean surface brightness in the annulus 0.8–1.25 r over the mean
    within r; the Petrosian radius is where it falls to 0.2, and the Petrosian flux is the flux
    within twice that radius (Blanton et al. 2001; Strauss et al. 2002).

    Parameters
    ----------
    amps : list of ndarray (n_gauss,)
    covs : list of ndarray (n_gal, n_gauss, 2, 2)
        One entry per component, PSF included.
    fluxes : list of ndarray (n_gal,)
        Total flux of each component.
    """
    # a log grid on which 0.8 r and 1.25 r are exactly 4 steps away (log10 1.25 = −log10 0.8)
    step = np.log10(1.25) / 4
    radius_all = 10.0 ** np.arange(-1.0 - 4 * step, 2.0 + 5 * step, step)  # arcsec
    radius = radius_all[4:-4]

    def enclosed(r: np.ndarray) -> np.ndarray:
        """Flux inside radii r of shape (n_gal or 1, n_r)."""
        total = np.zeros(1)
        for amp, cov, flux in zip(amps, covs, fluxes):
            frac = enclosed_fraction(cov[:, :, None], r[:, None, :])  # (n_gal, n_gauss, n_r)
            total = total + flux[:, None] * np.einsum("k,gkr->gr", amp, frac)
        return total

    rows = np.arange(len(fluxes[0]))
    curve = enclosed(radius_all[None, :])
    inner = curve[:, 4:-4]
    annulus = curve[:, 8:] - curve[:, :-8]
    ratio = (annulus / (1.25**2 - 0.8**2)) / inner
    below = ratio < 0.2
    first = np.where(below.any(axis=1), np.argmax(below, axis=1), radius.size - 1)
    before = np.clip(first - 1, 0, None)
    change = ratio[rows, before] - ratio[rows, first]
    frac = np.clip((ratio[rows, before] - 0.2) / np.where(change > 0, change, 1.0), 0.0, 1.0)
    r_petro = radius[before] * (radius[first] / radius[before]) ** frac
    petro_flux = enclosed(2 * r_petro[:, None])[:, 0]
    out = {"petroRad": r_petro, "petroFlux": petro_flux}
    for level, name in ((0.5, "petroR50"), (0.9, "petroR90")):
        target = level * petro_flux[:, None]
        out[name] = np.array([np.interp(t, curve, radius) for t, curve in zip(target[:, 0], inner)])
    return out
