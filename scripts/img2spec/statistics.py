"""What a network's inputs and targets are standardised with, measured on the training split.

Spectra (natural-log normalised flux) get one mean and standard deviation (the paper) or one per
pixel; images an optional arcsinh stretch and per-band statistics, with the photometric features';
redshift heads the training redshifts' median and scale.  :class:`NetworkStatistics` bundles a
network's, and travels in its checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np
import torch

from .dataset import DatasetFile, spectrum_key
from .photometry import APERTURE_RADII_PIX, photometric_features, robust_centre_scale
from .upsampling import Upsampling, UpsamplingFit, linear_upsampling


@dataclass(frozen=True)
class SpectrumStats:
    """Standardisation of log-flux spectra: per-pixel mean and standard deviation over the training split.

    The diffusion models and contrastive networks see ``(x − mean) / std``.  With per-pixel statistics
    (``per_pixel=True`` in :func:`spectrum_stats`) a network models each galaxy's deviation from the
    mean training spectrum in units of the population's spread at that wavelength, so the 4000 Å
    break, the continuum slope and the lines all carry comparable weight in the loss; with global
    statistics (one mean and std, as the paper) the continuum shape dominates.

    Attributes
    ----------
    mean, std : ndarray (L,)
        Natural-log flux per pixel (constant arrays for global statistics).
    low, high : float
        Smallest and largest standardised training value: the bound for x0 estimates when sampling.
    """

    mean: np.ndarray
    std: np.ndarray
    low: float
    high: float

    def to_dict(self) -> dict:
        return {
            "mean": np.asarray(self.mean).tolist(),
            "std": np.asarray(self.std).tolist(),
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, values: dict) -> SpectrumStats:
        return cls(
            np.asarray(values["mean"], np.float32),
            np.asarray(values["std"], np.float32),
            float(values["low"]),
            float(values["high"]),
        )

    @property
    def standardised_range(self) -> tuple[float, float]:
        return (self.low, self.high)

    def standardise(self, values):
        """(values − mean)/std for numpy arrays or torch tensors (…, L)."""
        mean, std = self._like(values)
        return (values - mean) / std

    def restore(self, standardised):
        """Inverse of :meth:`standardise`."""
        mean, std = self._like(standardised)
        return standardised * std + mean

    def _like(self, values):
        if isinstance(values, torch.Tensor):
            return (
                torch.as_tensor(self.mean, dtype=values.dtype, device=values.device),
                torch.as_tensor(self.std, dtype=values.dtype, device=values.device),
            )
        return self.mean, self.std


def read_block(h5: h5py.File, key: str, rows: np.ndarray) -> np.ndarray:
    """Rows (increasing, from one block of consecutive training rows) read as one slice: one read per block, bounded by the block."""
    return h5[key][rows[0] : rows[-1] + 1][rows - rows[0]]


class TargetKeys(NamedTuple):
    """``dataset.h5`` keys a network's target is read from (:func:`target_keys`)."""

    flux: str
    mask: str
    lowres: str
    residual: bool


def target_keys(target: str, frame: str) -> TargetKeys:
    """Keys of ``target`` (``flux``, ``flux_lowres`` or ``residual``) in ``frame``.

    'residual' is the full-resolution log flux minus the upsampled low-resolution log flux (:class:`Upsampling`).
    """
    name, residual = ("flux", True) if target == "residual" else (target, False)
    mask = "mask" if name == "flux" else "mask_lowres"
    return TargetKeys(
        spectrum_key(name, frame), spectrum_key(mask, frame), spectrum_key("flux_lowres", frame), residual
    )


def spectrum_stats(
    path: str,
    key: str,
    per_pixel: bool = False,
    chunk: int = 2048,
    frame: str = "observed",
    upsampling: Upsampling | None = None,
) -> SpectrumStats:
    """Streaming statistics of ``key`` in ``frame`` ('observed' or 'rest') over unmasked training pixels.

    ``key``: ``flux`` (full resolution), ``flux_lowres``, or ``residual`` (full resolution minus the
    ``upsampling`` of the low-resolution spectrum, the super-resolution model's target; linear
    interpolation when None).
    """
    source, mask_key, lowres_key, residual = target_keys(key, frame)
    with DatasetFile(path) as data:
        h5 = data.h5
        train = data.rows("train")
        if residual and upsampling is None:
            upsampling = linear_upsampling(data.wave_of(frame, lowres=True), data.wave_of(frame))
        n_pix = h5[source].shape[1]
        total, total_sq, count = np.zeros(n_pix), np.zeros(n_pix), np.zeros(n_pix)
        low, high = np.full(n_pix, np.inf), np.full(n_pix, -np.inf)
        for start in range(0, train.size, chunk):
            rows = train[start : start + chunk]
            values = read_block(h5, source, rows).astype(np.float64)
            if residual:
                assert upsampling is not None  # set above
                values = values - upsampling.apply(read_block(h5, lowres_key, rows))
            good = ~read_block(h5, mask_key, rows)
            total += np.where(good, values, 0).sum(0)
            total_sq += np.where(good, values**2, 0).sum(0)
            count += good.sum(0)
            low = np.minimum(low, np.where(good, values, np.inf).min(0))
            high = np.maximum(high, np.where(good, values, -np.inf).max(0))
    if not per_pixel:
        total, total_sq, count = (np.full(n_pix, a.sum()) for a in (total, total_sq, count))
        low, high = np.full(n_pix, low.min()), np.full(n_pix, high.max())
    seen = count > 1
    if not seen.any():
        raise ValueError(f"{path}: no unmasked training pixel of {key}")
    mean = np.divide(total, count, out=np.zeros(n_pix), where=seen)
    std = np.sqrt(np.maximum(np.divide(total_sq, count, out=np.zeros(n_pix), where=seen) - mean**2, 0))
    # pixels masked in (almost) every training spectrum borrow the neighbouring statistics
    fill = np.flatnonzero(seen)
    mean = np.interp(np.arange(n_pix), fill, mean[fill])
    std = np.maximum(np.interp(np.arange(n_pix), fill, std[fill]), 1e-3 * np.median(std[fill]) + 1e-6)
    standard_low = np.where(seen, (low - mean) / std, np.inf).min()
    standard_high = np.where(seen, (high - mean) / std, -np.inf).max()
    return SpectrumStats(mean.astype(np.float32), std.astype(np.float32), float(standard_low), float(standard_high))


@dataclass(frozen=True)
class ImageStats:
    """How image cubes [nanomaggies] become network input.

    Pixels: optional arcsinh stretch, then per-band standardisation.  ``arcsinh(f / b)`` with ``b``
    about the sky noise per band (Lupton et al. 1999) keeps the faint outskirts, where colour
    gradients live, and compresses the bright core that dominates a linear standardisation.

    Features (optional): the aperture magnitudes, colours and concentration of
    :func:`img2spec.photometry.photometric_features`, measured on the same cube and standardised by
    the training median and robust spread.  They hand the networks, explicitly, the colours that a
    small CNN trained for minutes finds only in part; nothing but the cube goes into them.

    Attributes
    ----------
    softening : ndarray (5,) or None
        ``b`` per band [nanomaggies]; None for the paper's plain linear standardisation.
    mean, std : ndarray (5,)
        Per-band mean and standard deviation of the (stretched) training images.
    feature_centre, feature_scale : ndarray (F,) or None
        Standardisation of the photometric features; None when the network uses none.
    radii_pix : tuple of float
        Aperture radii of the features [pixels].
    """

    softening: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    feature_centre: np.ndarray | None = None
    feature_scale: np.ndarray | None = None
    radii_pix: tuple[float, ...] = APERTURE_RADII_PIX

    @property
    def n_features(self) -> int:
        return 0 if self.feature_centre is None else int(self.feature_centre.size)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """(…, 5, H, W) nanomaggies → standardised float32 network input."""
        values = np.asarray(images, np.float32)
        if self.softening is not None:
            values = np.arcsinh(values / self.softening[:, None, None])
        return ((values - self.mean[:, None, None]) / self.std[:, None, None]).astype(np.float32)

    def features(self, images: np.ndarray) -> np.ndarray | None:
        """(N, 5, H, W) nanomaggies → standardised (N, F) float32 features, or None without features."""
        if self.feature_centre is None:
            return None
        return ((photometric_features(images, self.radii_pix) - self.feature_centre) / self.feature_scale).astype(
            np.float32
        )

    def to_dict(self) -> dict:
        def plain(values):
            return None if values is None else np.asarray(values).tolist()

        return {
            "softening": plain(self.softening),
            "mean": plain(self.mean),
            "std": plain(self.std),
            "feature_centre": plain(self.feature_centre),
            "feature_scale": plain(self.feature_scale),
            "radii_pix": list(self.radii_pix),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ImageStats:
        def array(key):
            return None if values.get(key) is None else np.asarray(values[key], np.float32)

        return cls(
            array("softening"),
            array("mean"),
            array("std"),
            array("feature_centre"),
            array("feature_scale"),
            tuple(values.get("radii_pix", APERTURE_RADII_PIX)),
        )


def image_stats(path: str, transform: str = "linear", features: bool = False, max_images: int = 2000) -> ImageStats:
    """Image statistics of the training split for ``transform`` 'linear' (the file's own) or 'arcsinh'.

    For 'arcsinh' the softening of each band is the robust (1.4826·MAD) scatter of the pixels in
    the outer 8-pixel frame of up to ``max_images`` training cubes: the sky noise, where the stretch
    turns from linear to logarithmic (a band with no scatter there gets its overall pixel spread).
    ``features`` adds the standardisation of the photometric features.
    """
    if transform not in ("linear", "arcsinh"):
        raise ValueError(f"unknown image transform {transform!r} (linear, arcsinh)")
    with DatasetFile(path) as data:
        train = data.rows("train")
        rows = np.unique(train[np.linspace(0, train.size - 1, min(max_images, train.size)).astype(int)])
        images = data.read("images", rows).astype(np.float64)  # only these rows: bounded by max_images, not N
        linear_mean, linear_std = data.image_train_statistics()
    feature_centre = feature_scale = None
    if features:
        values = photometric_features(images)
        feature_centre, feature_scale = robust_centre_scale(values)
    if transform == "linear":
        return ImageStats(
            None, linear_mean.astype(np.float32), linear_std.astype(np.float32), feature_centre, feature_scale
        )
    frame = np.ones(images.shape[-2:], dtype=bool)
    frame[8:-8, 8:-8] = False
    sky = images[:, :, frame]
    centred = sky - np.median(sky, axis=(0, 2))[None, :, None]
    softening = 1.4826 * np.median(np.abs(centred), axis=(0, 2))
    # a band without sky scatter (blanked or block-averaged in the image ablation) is left nearly linear
    spread = images.std(axis=(0, 2, 3))
    softening = np.where(softening > 0, softening, np.where(spread > 0, spread, 1.0))
    stretched = np.arcsinh(images / softening[None, :, None, None])
    std = stretched.std(axis=(0, 2, 3))
    return ImageStats(
        softening.astype(np.float32),
        stretched.mean(axis=(0, 2, 3)).astype(np.float32),
        np.where(std > 1e-6, std, 1.0).astype(np.float32),
        feature_centre,
        feature_scale,
    )


@dataclass(frozen=True)
class RedshiftStats:
    """Centre and scale (median and normalised MAD) of the training redshifts: a redshift head's standardisation."""

    centre: float
    scale: float

    def standardise(self, z):
        return (z - self.centre) / self.scale

    def restore(self, standardised):
        return standardised * self.scale + self.centre


@dataclass(frozen=True)
class NetworkStatistics:
    """Everything a trained network needs besides its weights to turn data into its inputs and back.

    Measured on the training split when the training starts and saved in every checkpoint
    (:func:`img2spec.tasks.load_task`), so inference never recomputes them from a dataset file.

    Attributes
    ----------
    spectrum : SpectrumStats
        Standardisation of what the network models (its target).
    images : ImageStats
        Image transform and standardisation, and the photometric features'.
    lowres : SpectrumStats or None
        The upsampling CDM's low-resolution condition; None for the others.
    redshift : RedshiftStats or None
        The redshift head's standardisation; None without a head.
    upsampling : Upsampling or None
        The map a residual CDM_sr's target is taken on (fitted on the training split); None for the others.
    """

    spectrum: SpectrumStats
    images: ImageStats
    lowres: SpectrumStats | None = None
    redshift: RedshiftStats | None = None
    upsampling: Upsampling | None = None

    def to_dict(self) -> dict:
        """Plain types (lists and floats) only, so a checkpoint loads without unpickling classes."""
        return {
            "spectrum": self.spectrum.to_dict(),
            "images": self.images.to_dict(),
            "lowres": None if self.lowres is None else self.lowres.to_dict(),
            "redshift": None if self.redshift is None else dataclasses.asdict(self.redshift),
            "upsampling": None if self.upsampling is None else self.upsampling.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> NetworkStatistics:
        lowres, redshift, upsampling = values.get("lowres"), values.get("redshift"), values.get("upsampling")
        return cls(
            SpectrumStats.from_dict(values["spectrum"]),
            ImageStats.from_dict(values["images"]),
            None if lowres is None else SpectrumStats.from_dict(lowres),
            None if redshift is None else RedshiftStats(**redshift),
            None if upsampling is None else Upsampling.from_dict(upsampling),
        )


def redshift_stats(path: str) -> RedshiftStats:
    """Centre and scale (median and normalised MAD) of the training galaxies' redshifts, for a redshift head."""
    with DatasetFile(path) as data:
        z = data.read("z_spec", data.rows("train"))
    centre, scale = robust_centre_scale(z[:, None])
    return RedshiftStats(float(centre[0]), float(scale[0]))


def fit_upsampling(path: str, frame: str, half_width: int, chunk: int = 512) -> Upsampling:
    """:class:`UpsamplingFit` over the training split of ``path`` (full and low-resolution ln flux in ``frame``)."""
    keys = target_keys("residual", frame)
    with DatasetFile(path) as data:
        fit = UpsamplingFit(data.wave_of(frame, lowres=True), data.wave_of(frame), half_width)
        train = data.rows("train")
        for start in range(0, train.size, chunk):
            rows = train[start : start + chunk]
            flux, mask, lowres = (read_block(data.h5, key, rows) for key in (keys.flux, keys.mask, keys.lowres))
            fit.add(flux.astype(np.float64), mask, lowres.astype(np.float64))
    return fit.solve()
