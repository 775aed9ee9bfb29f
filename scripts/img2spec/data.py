"""Training data: a torch Dataset over ``dataset.h5``, augmentation, statistics and a sharded sampler.

Images are standardised per band with the training split's statistics stored in the file;
spectra (natural-log normalised flux) with one mean and standard deviation of the training split.
Randomness (order, flips, crops) is a function of (seed, epoch, index) only, so a run resumed at an
epoch boundary sees exactly the batches it would have seen, and every process of a distributed run
draws a disjoint shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset import SPLITS


@dataclass(frozen=True)
class SpectrumStats:
    """Mean, standard deviation and range of log flux over the training split (unmasked pixels)."""

    mean: float
    std: float
    minimum: float
    maximum: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "minimum": self.minimum, "maximum": self.maximum}

    @property
    def standardised_range(self) -> tuple[float, float]:
        """The training data's range in standardised units: the bound for x0 estimates when sampling."""
        return ((self.minimum - self.mean) / self.std, (self.maximum - self.mean) / self.std)


def spectrum_stats(path: str, key: str, chunk: int = 2048) -> SpectrumStats:
    """Streaming mean/std of ``key`` ('flux' or 'flux_lowres') over unmasked training pixels."""
    mask_key = "mask" if key == "flux" else "mask_lowres"
    total = total_sq = count = 0.0
    low, high = np.inf, -np.inf
    with h5py.File(path, "r") as h5:
        train = np.flatnonzero(h5["split"][()] == SPLITS["train"])
        for start in range(0, train.size, chunk):
            rows = train[start : start + chunk]
            values = h5[key][rows[0] : rows[-1] + 1][rows - rows[0]].astype(np.float64)
            good = ~h5[mask_key][rows[0] : rows[-1] + 1][rows - rows[0]]
            total += values[good].sum()
            total_sq += (values[good] ** 2).sum()
            count += good.sum()
            low, high = min(low, values[good].min()), max(high, values[good].max())
    mean = total / count
    return SpectrumStats(float(mean), float(np.sqrt(total_sq / count - mean**2)), float(low), float(high))


def lowres_to_fullres(wave_lowres: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """(n_low, n_full) linear-interpolation matrix from low-resolution pixel centres to the full grid."""
    eye = np.eye(wave_lowres.size)
    return np.stack([np.interp(wave, wave_lowres, row) for row in eye])


class SpectraImages(Dataset):
    """Image–spectrum pairs of one split.

    Items are dicts of tensors: ``images`` (5, 64, 64), ``spectrum`` (L,) standardised, ``weight`` (L,)
    (0 on masked pixels), ``index`` (position in the file), and for super-resolution ``lowres``
    (4500,), the standardised low-resolution spectrum interpolated to full resolution.
    """

    def __init__(self, path: str, split: str, target: str, stats: SpectrumStats, lowres_stats: SpectrumStats | None = None,
                 augment: bool = False, crop_pad: int = 4, seed: int = 0) -> None:
        self.path, self.target, self.stats, self.lowres_stats = path, target, stats, lowres_stats
        self.augment, self.crop_pad, self.seed = augment, crop_pad, seed
        with h5py.File(path, "r") as h5:
            self.rows = np.flatnonzero(h5["split"][()] == SPLITS[split])
            self.image_mean = h5["images"].attrs["train_mean"].astype(np.float32)[:, None, None]
            self.image_std = h5["images"].attrs["train_std"].astype(np.float32)[:, None, None]
            self.interp = lowres_to_fullres(h5["wave_lowres"][()], h5["wave"][()]).astype(np.float32) if lowres_stats else None
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
        images = (h5["images"][row] - self.image_mean) / self.image_std
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
        key, mask_key = ("flux", "mask") if self.target == "full" else ("flux_lowres", "mask_lowres")
        spectrum = (h5[key][row] - self.stats.mean) / self.stats.std
        item = {
            "images": torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
            "spectrum": torch.from_numpy(spectrum.astype(np.float32)),
            "weight": torch.from_numpy((~h5[mask_key][row]).astype(np.float32)),
            "index": torch.tensor(row),
        }
        if self.interp is not None:
            low = (h5["flux_lowres"][row] - self.lowres_stats.mean) / self.lowres_stats.std
            item["lowres"] = torch.from_numpy(low.astype(np.float32) @ self.interp)
        return item


class ShardedEpochSampler(Sampler):
    """Permutation seeded by (seed, epoch), split evenly over ``world_size`` processes.

    Yields (position, epoch) so the dataset can seed its augmentation by epoch too.  Lightning calls
    :meth:`set_epoch` at the start of every epoch.
    """

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0
        self.per_rank = -(-n // world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle else np.arange(self.n)
        order = np.resize(order, self.per_rank * self.world_size)  # pad by wrapping so shards are equal
        return iter([(int(i), self.epoch) for i in order[self.rank :: self.world_size]])


class SpectraDataModule(pl.LightningDataModule):
    """Train and validation loaders for one network."""

    def __init__(self, path: str, target: str, batch_size: int, stats: SpectrumStats, lowres_stats: SpectrumStats | None,
                 num_workers: int = 0, seed: int = 0, crop_pad: int = 4, val_batch_size: int | None = None) -> None:
        super().__init__()
        self.path, self.target, self.batch_size = path, target, batch_size
        self.stats, self.lowres_stats = stats, lowres_stats
        self.num_workers, self.seed, self.crop_pad = num_workers, seed, crop_pad
        self.val_batch_size = val_batch_size or batch_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = SpectraImages(self.path, split, self.target, self.stats, self.lowres_stats, augment=train, crop_pad=self.crop_pad, seed=self.seed)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = ShardedEpochSampler(len(dataset), self.seed, shuffle=train, rank=rank, world_size=world)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.val_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=train and len(dataset) >= self.batch_size * world,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)
