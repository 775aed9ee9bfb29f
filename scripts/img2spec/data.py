"""Training data: a torch Dataset over ``dataset.h5``, augmentation, statistics and a sharded sampler.

Images are optionally arcsinh-stretched and standardised per band with training-split statistics;
spectra (natural-log normalised flux) are standardised with training-split statistics, one mean and
standard deviation (the paper) or one per pixel.
Randomness (order, flips, crops) is a function of (seed, epoch, index) only, so a run resumed at an
epoch boundary sees exactly the batches it would have seen, and every process of a distributed run
draws a disjoint shard.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset import DatasetFile, spectrum_key
from .photometry import APERTURE_RADII_PIX, photometric_features, robust_centre_scale


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


def _read_block(h5: h5py.File, key: str, rows: np.ndarray) -> np.ndarray:
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
            values = _read_block(h5, source, rows).astype(np.float64)
            if residual:
                assert upsampling is not None  # set above
                values = values - upsampling.apply(_read_block(h5, lowres_key, rows))
            good = ~_read_block(h5, mask_key, rows)
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


def fit_upsampling(path: str, frame: str, half_width: int, chunk: int = 512) -> Upsampling:
    """:class:`UpsamplingFit` over the training split of ``path`` (full and low-resolution ln flux in ``frame``)."""
    keys = target_keys("residual", frame)
    with DatasetFile(path) as data:
        fit = UpsamplingFit(data.wave_of(frame, lowres=True), data.wave_of(frame), half_width)
        train = data.rows("train")
        for start in range(0, train.size, chunk):
            rows = train[start : start + chunk]
            flux, mask, lowres = (_read_block(data.h5, key, rows) for key in (keys.flux, keys.mask, keys.lowres))
            fit.add(flux.astype(np.float64), mask, lowres.astype(np.float64))
    return fit.solve()


class SpectraImages(Dataset):
    """Image–spectrum pairs of one split.

    Items are dicts of tensors: ``images`` (5, 64, 64) standardised by ``image_stats``, ``spectrum``
    (L,) the standardised ``target``, ``weight`` (L,) (0 on masked pixels), ``index`` (row in the
    file), ``redshift`` (the spectrum's own, ``z_spec``), and, when ``lowres_stats`` is given
    (super-resolution), ``lowres`` (L,): the standardised low-resolution spectrum interpolated to
    full resolution, and ``reference`` (L,): that interpolation in the target's units (ln flux, less
    the upsampled condition for a residual), the prediction without any fine structure.

    ``target`` is ``flux_lowres``, ``flux`` or ``residual`` (see :func:`spectrum_stats`; on
    ``upsampling``, linear interpolation when None), in ``frame`` ('observed' or 'rest').
    """

    def __init__(
        self,
        path: str,
        split: str,
        target: str,
        stats: SpectrumStats,
        image_stats: ImageStats,
        lowres_stats: SpectrumStats | None = None,
        augment: bool = False,
        crop_pad: int = 4,
        seed: int = 0,
        frame: str = "observed",
        upsampling: Upsampling | None = None,
    ) -> None:
        self.path, self.target, self.stats, self.lowres_stats = path, target, stats, lowres_stats
        self.image_stats = image_stats
        self.augment, self.crop_pad, self.seed = augment, crop_pad, seed
        self.source, self.mask_key, self.lowres_key, self.residual = target_keys(target, frame)
        with DatasetFile(path) as data:
            self.rows = data.rows(split)
            self.redshift = data.read("z_spec", self.rows).astype(np.float32)
            wave_lowres, wave = data.wave_of(frame, lowres=True), data.wave_of(frame)
        self.interp = lowres_to_fullres(wave_lowres, wave).astype(np.float32) if lowres_stats is not None else None
        self.upsampling = (upsampling or linear_upsampling(wave_lowres, wave)) if self.residual else None
        self._h5 = None

    def __len__(self) -> int:
        return self.rows.size

    def _file(self) -> h5py.File:
        if self._h5 is None:  # opened lazily so that each DataLoader worker has its own handle
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def __getitem__(self, item) -> dict[str, torch.Tensor]:
        position, epoch = item if isinstance(item, tuple) else (item, 0)
        row = int(self.rows[position])
        h5 = self._file()
        raw = h5["images"][row]
        images = self.image_stats.apply(raw)
        if self.augment:
            rng = np.random.default_rng((self.seed, epoch, row))
            if rng.random() < 0.5:
                images = images[:, :, ::-1]
            if rng.random() < 0.5:
                images = images[:, ::-1, :]
            if self.crop_pad:
                padded = np.pad(images, ((0, 0), (self.crop_pad,) * 2, (self.crop_pad,) * 2), mode="reflect")
                dy, dx = rng.integers(0, 2 * self.crop_pad + 1, 2)
                images = padded[:, dy : dy + 64, dx : dx + 64]
        values = h5[self.source][row].astype(np.float32)
        condition = None
        if self.upsampling is not None or self.interp is not None:
            low = h5[self.lowres_key][row].astype(np.float32)
            base = self.upsampling.apply(low) if self.upsampling is not None else np.zeros_like(values)
            values = values - base
            if self.interp is not None and self.lowres_stats is not None:
                condition = (self.lowres_stats.standardise(low) @ self.interp).astype(np.float32)
                reference = (low @ self.interp - base).astype(np.float32)
        item = {
            "images": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
            "spectrum": torch.from_numpy(self.stats.standardise(values).astype(np.float32)),
            "weight": torch.from_numpy((~h5[self.mask_key][row]).astype(np.float32)),
            "index": torch.tensor(row),
            "redshift": torch.tensor(self.redshift[position]),
        }
        features = self.image_stats.features(raw[None])  # flip- and rotation-invariant; measured unaugmented
        if features is not None:
            item["features"] = torch.from_numpy(features[0])
        if condition is not None:
            item["lowres"] = torch.from_numpy(condition)
            item["reference"] = torch.from_numpy(reference)
        return item


def _ignore_sigterm(worker_id: int) -> None:
    """A DataLoader worker outlives a SIGTERM to its process group (a cluster's pre-emption warning), so
    that the training process can finish its batch and save its state; it ends with that process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ShardedEpochSampler(Sampler):
    """Permutation seeded by (seed, epoch), dealt round-robin over ``world_size`` processes.

    Yields (position, epoch) so the dataset can seed its augmentation by epoch too.  Lightning calls
    :meth:`set_epoch` at the start of every epoch.  Process r gets positions r, r + W, … of the
    order, so its k-th batch of B/W items and the other processes' k-th batches together are the
    k-th batch of B items of one process.  No position is repeated: with ``equal_shares`` (training,
    where every process must run the same number of steps) the last n mod W positions of each epoch's
    permutation are left out, different ones in each epoch; without (validation) every position is
    yielded once and the shares differ by at most one.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1, equal_shares: bool = True
    ) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0
        self.per_rank = n // world_size if equal_shares else len(range(rank, n, world_size))
        self._skip: tuple[int | None, int] = (None, 0)  # (epoch, items already consumed) of a run resumed mid-epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, items: int) -> None:
        """Leave out the first ``items`` of this process's share of ``epoch``: a run resumed mid-epoch."""
        self._skip = (epoch, items)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        order = (
            np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        share = order[self.rank :: self.world_size][: self.per_rank]
        if self._skip[0] == self.epoch:
            share = share[self._skip[1] :]
            self._skip = (None, 0)
        return iter([(int(i), self.epoch) for i in share])


class ResumableLoader(DataLoader):
    """A training DataLoader whose position within an epoch is saved with the checkpoint and restored.

    Lightning treats a loader with ``state_dict``/``load_state_dict`` as resumable; without one, a run
    resumed mid-epoch would start the epoch again and see other batches than the uninterrupted run.
    ``batches_done`` is set after every training batch (:class:`img2spec.train.EpochPosition`).
    """

    def __init__(self, dataset: Dataset, *, sampler: ShardedEpochSampler, batch_size: int, **kwargs) -> None:
        super().__init__(dataset, sampler=sampler, batch_size=batch_size, **kwargs)
        self.epoch_sampler, self.items_per_batch = sampler, batch_size
        self.batches_done = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.epoch_sampler.epoch), "batches_done": int(self.batches_done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches_done = state["batches_done"]
        self.epoch_sampler.resume_at(state["epoch"], state["batches_done"] * self.items_per_batch)


class SpectraDataModule(pl.LightningDataModule):
    """Train and validation loaders for one network."""

    def __init__(
        self,
        path: str,
        target: str,
        batch_size: int,
        stats: SpectrumStats,
        image_stats: ImageStats,
        lowres_stats: SpectrumStats | None,
        num_workers: int = 0,
        seed: int = 0,
        crop_pad: int = 4,
        val_batch_size: int | None = None,
        frame: str = "observed",
        upsampling: Upsampling | None = None,
    ) -> None:
        super().__init__()
        self.frame, self.upsampling = frame, upsampling
        self.path, self.target, self.batch_size = path, target, batch_size
        self.stats, self.image_stats, self.lowres_stats = stats, image_stats, lowres_stats
        self.num_workers, self.seed, self.crop_pad = num_workers, seed, crop_pad
        self.val_batch_size = val_batch_size or batch_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = SpectraImages(
            self.path,
            split,
            self.target,
            self.stats,
            self.image_stats,
            self.lowres_stats,
            augment=train,
            crop_pad=self.crop_pad,
            seed=self.seed,
            frame=self.frame,
            upsampling=self.upsampling,
        )
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        batch_size = self.batch_size if train else self.val_batch_size
        if batch_size % world:
            raise ValueError(
                f"batch size {batch_size} ({split}) cannot be split over {world} processes (devices × num_nodes): "
                "each process takes an equal share of the global batch; choose a batch size divisible by it"
            )
        if len(dataset) < world:
            raise ValueError(f"{self.path}: {len(dataset)} {split} galaxies for {world} processes; each needs one")
        sampler = ShardedEpochSampler(
            len(dataset), self.seed, shuffle=train, rank=rank, world_size=world, equal_shares=train
        )
        return (ResumableLoader if train else DataLoader)(
            dataset,
            batch_size=batch_size // world,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=train and len(sampler) >= batch_size // world,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            worker_init_fn=_ignore_sigterm,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)
