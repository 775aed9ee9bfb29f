"""The map from the 563-pixel low-resolution grid to the 1 Å grid that CDM_sr's residual is taken on.

The residual target is the full-resolution ln flux minus the upsampled low-resolution ln flux: with
a plain linear interpolation (:func:`linear_upsampling`) or a banded linear map fitted by least
squares on the training split (:class:`UpsamplingFit`, measured by
:func:`img2spec.statistics.fit_upsampling`), so that the residual holds only what the low-resolution
spectrum cannot tell.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch


def lowres_to_fullres(wave_lowres: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """(n_low, n_full) linear-interpolation matrix from low-resolution pixel centres to the full grid."""
    eye = np.eye(wave_lowres.size)
    return np.stack([np.interp(wave, wave_lowres, row) for row in eye])


#: Ridge of the upsampling fit, relative to the mean diagonal of each pixel's normal matrix: numerical only
#: (ln-flux bins of neighbouring pixels are strongly correlated), far below the noise it is fitted through.
UPSAMPLING_RIDGE = 1e-6


@dataclass(frozen=True)
class Upsampling:
    """A banded linear map from a low-resolution ln spectrum (…, n_low) to the full grid (…, L).

    Full-resolution pixel j is ``bias[j] + Σ_b weights[j, b] · lowres[first[j] + b]``: the low-resolution
    bins around it, weighted.  CDM_sr models (``residual``) the full-resolution spectrum minus this
    map of its low-resolution condition, and the inference adds the map of the kept candidate back.

    Linear interpolation (:func:`linear_upsampling`) is one such map.  Its residual is, wherever the
    low-resolution bins smear a line over 8 Å, a peak with troughs on both sides at fixed rest
    wavelengths, and the population's mean residual has that shape (issue 25): a CDM_sr that does
    not follow its condition draws it into every spectrum, lines into passive galaxies with troughs
    beside them.  The map fitted by least squares on the training spectra (:func:`fit_upsampling`)
    is the best linear prediction of each full-resolution pixel from its low-resolution neighbours,
    E[full | low-resolution] to first order: it puts a line back where the condition has its bump and
    nowhere else, its residual has zero mean at every pixel, and what is left to draw is the noise and
    the fine structure the low-resolution spectrum cannot tell.

    Attributes
    ----------
    first : ndarray of int, (L,)
        First low-resolution bin of each pixel's band.
    weights : ndarray, (L, B)
        Weight of each of the B bins of the band.
    bias : ndarray, (L,)
        Offset [ln flux].
    n_low : int
        Bins of the low-resolution spectrum.
    """

    first: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    n_low: int

    def matrix(self) -> np.ndarray:
        """Dense (n_low, L) float32 matrix M with ``upsampled = lowres @ M + bias``."""
        n_full, band = self.weights.shape
        dense = np.zeros((self.n_low, n_full), np.float32)
        columns = np.repeat(np.arange(n_full), band)
        dense[(self.first[:, None] + np.arange(band)).ravel(), columns] = self.weights.ravel()
        return dense

    @functools.cached_property
    def _dense(self) -> np.ndarray:
        # built once per map: apply() runs for every training item and every inference chunk
        return self.matrix()

    def apply(self, lowres):
        """Upsampled (…, L) ln spectra of ``lowres`` (…, n_low), numpy arrays or torch tensors."""
        if isinstance(lowres, torch.Tensor):
            matrix = torch.as_tensor(self._dense, dtype=lowres.dtype, device=lowres.device)
            return lowres @ matrix + torch.as_tensor(self.bias, dtype=lowres.dtype, device=lowres.device)
        return (np.asarray(lowres, np.float32) @ self._dense + self.bias).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "first": np.asarray(self.first).tolist(),
            "weights": np.asarray(self.weights).tolist(),
            "bias": np.asarray(self.bias).tolist(),
            "n_low": self.n_low,
        }

    @classmethod
    def from_dict(cls, values: dict) -> Upsampling:
        return cls(
            np.asarray(values["first"], np.int64),
            np.asarray(values["weights"], np.float32),
            np.asarray(values["bias"], np.float32),
            int(values["n_low"]),
        )


def upsampling_bands(wave_lowres: np.ndarray, wave: np.ndarray, half_width: int) -> np.ndarray:
    """First bin (L,) of each full pixel's band: the ``2 half_width + 1`` bins centred on its nearest one."""
    if half_width < 1:
        raise ValueError(f"upsampling half width {half_width}: it needs at least one bin on each side")
    band = 2 * half_width + 1
    if band > wave_lowres.size:
        raise ValueError(f"upsampling band of {band} bins exceeds the {wave_lowres.size} low-resolution bins")
    nearest = np.abs(wave[:, None] - wave_lowres[None, :]).argmin(axis=1)
    return np.clip(nearest - half_width, 0, wave_lowres.size - band)


def linear_upsampling(wave_lowres: np.ndarray, wave: np.ndarray, half_width: int = 1) -> Upsampling:
    """Linear interpolation between low-resolution bin centres (flat beyond the end ones) as an :class:`Upsampling`."""
    first = upsampling_bands(wave_lowres, wave, half_width)
    dense = lowres_to_fullres(wave_lowres, wave)
    band = first[:, None] + np.arange(2 * half_width + 1)
    weights = np.take_along_axis(dense.T, band, axis=1)
    return Upsampling(first, weights.astype(np.float32), np.zeros(wave.size, np.float32), wave_lowres.size)


class UpsamplingFit:
    """Least-squares fit of an :class:`Upsampling` (band and bias), streamed over chunks of training spectra.

    Each full-resolution pixel gets its own regression on the ln flux of its band of low-resolution
    bins, over the spectra where that pixel is good; a pixel good in fewer spectra than it has
    parameters keeps linear interpolation.
    """

    def __init__(self, wave_lowres: np.ndarray, wave: np.ndarray, half_width: int) -> None:
        self.first = upsampling_bands(wave_lowres, wave, half_width)
        self.linear = linear_upsampling(wave_lowres, wave, half_width)
        self.n_low, n_params = wave_lowres.size, 2 * half_width + 2
        self.normal = np.zeros((wave.size, n_params, n_params))
        self.moment = np.zeros((wave.size, n_params))
        self.count = np.zeros(wave.size, np.int64)

    def add(self, flux: np.ndarray, mask: np.ndarray, flux_lowres: np.ndarray) -> None:
        """Accumulate spectra: ``flux`` and ``mask`` (N, L) at full resolution, ``flux_lowres`` (N, n_low), ln flux."""
        band = self.first[:, None] + np.arange(self.normal.shape[1] - 1)
        design = np.concatenate(
            [np.asarray(flux_lowres, np.float64)[:, band], np.ones((*flux.shape, 1))], axis=2
        )  # (N, L, B + 1)
        good = ~np.asarray(mask, bool)
        design = design * good[..., None]
        self.normal += np.einsum("nlb,nlc->lbc", design, design)
        self.moment += np.einsum("nlb,nl->lb", design, np.where(good, flux, 0.0))
        self.count += good.sum(axis=0)

    def solve(self) -> Upsampling:
        """The fitted map; pixels with too few good spectra keep linear interpolation."""
        n_params = self.normal.shape[1]
        ridge = UPSAMPLING_RIDGE * np.trace(self.normal, axis1=1, axis2=2) / n_params + 1e-12
        solution = np.linalg.solve(self.normal + ridge[:, None, None] * np.eye(n_params), self.moment[..., None])[
            ..., 0
        ]
        fitted = self.count >= 2 * n_params
        weights = np.where(fitted[:, None], solution[:, :-1], self.linear.weights)
        bias = np.where(fitted, solution[:, -1], 0.0)
        return Upsampling(self.first, weights.astype(np.float32), bias.astype(np.float32), self.n_low)
