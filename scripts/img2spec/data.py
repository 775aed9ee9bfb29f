"""Training data: a torch Dataset over ``dataset.h5``, augmentation and a sharded sampler.

Images and spectra are standardised with the network's training-split statistics
(:mod:`img2spec.statistics`).  Randomness (order, flips, crops) is a function of (seed, epoch, index)
only, so a run resumed at an epoch boundary sees exactly the batches it would have seen, and every
process of a distributed run draws a disjoint shard.
"""

from __future__ import annotations

import signal

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset import DatasetFile
from .statistics import ImageStats, SpectrumStats, target_keys
from .upsampling import Upsampling, linear_upsampling, lowres_to_fullres


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
