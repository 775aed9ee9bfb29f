"""Agreement between predicted and observed spectra."""

from __future__ import annotations

import numpy as np


def mean_relative_deviation(predicted_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Δ̄ per spectrum (the paper's eq. 9): mean over good pixels of |F_pred − F_obs| / F_obs.

    Parameters
    ----------
    predicted_ln, observed_ln : ndarray, (N, L)
        Natural log of normalised flux.
    mask : ndarray of bool, (N, L), optional
        True where the observed pixel is not a measurement; left out.
    """
    predicted, observed = np.exp(predicted_ln), np.exp(observed_ln)
    good = np.ones_like(observed, bool) if mask is None else ~mask
    deviation = np.where(good, np.abs(predicted - observed) / observed, 0.0)
    return deviation.sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def mse(predicted_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean squared difference of the log spectra over good pixels, per spectrum."""
    good = np.ones_like(observed_ln, bool) if mask is None else ~mask
    return np.where(good, (predicted_ln - observed_ln) ** 2, 0.0).sum(axis=1) / np.maximum(good.sum(axis=1), 1)


def band_coverage(lower_ln: np.ndarray, upper_ln: np.ndarray, observed_ln: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of good observed pixels inside [lower, upper] (0.68 for calibrated 16–84% bands)."""
    good = np.ones_like(observed_ln, bool) if mask is None else ~mask
    inside = (observed_ln >= lower_ln) & (observed_ln <= upper_ln)
    return float(inside[good].mean())


def chi2_per_pixel(predicted_ln: np.ndarray, observed_ln: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """χ²/N per spectrum in linear normalised flux with the observed inverse variance (good pixels with ivar > 0)."""
    good = (ivar > 0) if mask is None else (~mask & (ivar > 0))
    residual = np.exp(predicted_ln) - np.exp(observed_ln)
    return np.where(good, residual**2 * ivar, 0.0).sum(axis=1) / np.maximum(good.sum(axis=1), 1)
