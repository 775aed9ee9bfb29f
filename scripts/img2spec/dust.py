"""Dust attenuation and extinction curves."""

from __future__ import annotations

import numpy as np


def calzetti_k(wave_rest: np.ndarray, r_v: float = 4.05) -> np.ndarray:
    """Calzetti et al. (2000) starburst attenuation curve k(λ) = A(λ)/E(B−V)_star.

    Parameters
    ----------
    wave_rest : ndarray
        Rest-frame wavelength [Å]; the published fit covers 1200 Å–2.2 µm and is extended
        linearly in 1/λ beyond it.
    r_v : float
        Total-to-selective attenuation (4.05 in the paper).
    """
    x = 1e4 / np.asarray(wave_rest, dtype=np.float64)  # inverse micron
    lam = 1.0 / x
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + r_v
    red = 2.659 * (-1.857 + 1.040 * x) + r_v
    return np.clip(np.where(lam < 0.63, blue, red), 0.0, None)


def calzetti_transmission(wave_rest: np.ndarray, ebv_star: np.ndarray) -> np.ndarray:
    """Fraction of light transmitted, 10^(−0.4 E(B−V) k(λ)), broadcast over ``ebv_star[..., None]``."""
    return 10.0 ** (-0.4 * np.asarray(ebv_star)[..., None] * calzetti_k(wave_rest))


def ccm_extinction(wave: np.ndarray, r_v: float = 3.1) -> np.ndarray:
    """Milky-Way extinction A(λ)/E(B−V) of Cardelli, Clayton & Mathis (1989), 0.3–8 µm⁻¹.

    Parameters
    ----------
    wave : ndarray
        Wavelength [Å].
    """
    x = 1e4 / np.asarray(wave, dtype=np.float64)
    a = np.zeros_like(x)
    b = np.zeros_like(x)
    infrared = x < 1.1
    a[infrared] = 0.574 * x[infrared] ** 1.61
    b[infrared] = -0.527 * x[infrared] ** 1.61
    optical = (x >= 1.1) & (x < 3.3)
    y = x[optical] - 1.82
    a[optical] = np.polyval([0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y)
    b[optical] = np.polyval([-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y)
    ultraviolet = x >= 3.3
    xu = x[ultraviolet]
    a[ultraviolet] = 1.752 - 0.316 * xu - 0.104 / ((xu - 4.67) ** 2 + 0.341)
    b[ultraviolet] = -3.090 + 1.825 * xu + 1.206 / ((xu - 4.62) ** 2 + 0.263)
    return r_v * (a + b / r_v)
