"""Training of the four networks with PyTorch Lightning: modules, callbacks and trainer construction.

Lightning gives CPU, one GPU, DDP over several processes, bf16 mixed precision, checkpointing and
resume.  What is ours: exponential moving average (EMA) weights, a finite-loss guard, a SIGTERM
checkpoint that several processes agree on, RNG state in checkpoints (exact resume), validation
metrics over the whole split (never NaN-best, independent of batches and processes), W processes
training as one (:mod:`img2spec.distributed`), and resume state that survives the workflow.

Snakemake deletes a job's declared outputs before it runs the job again, so everything a resumed
training needs lives in ``<out_dir>/resume/`` (:data:`RESUME_DIR`), which no rule declares: the
periodic and SIGTERM checkpoints, the metrics so far and a fingerprint of what is trained.  Only a
finished training writes the declared ``last.ckpt``, ``best.ckpt`` and ``metrics.csv`` and removes
the resume state; an interrupted one raises :class:`TrainingInterrupted` (a non-zero exit, so the
workflow reruns it), and the rerun continues from the saved step when the fingerprint still matches.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import pickle
import random
import shutil
import signal
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.exceptions import SIGTERMException

from . import networks as registry
from .data import (
    NetworkStatistics,
    ResumableLoader,
    SpectraDataModule,
    Upsampling,
    fit_upsampling,
    image_stats,
    linear_upsampling,
    redshift_stats,
    spectrum_stats,
)
from .dataset import DatasetFile
from .diffusion import NoiseSchedule
from .distributed import (
    GlobalBatchNorm,
    gather_rows,
    gather_with_gradient,
    local_rank,
    shard_of,
    sum_over_ranks,
)
from .models import (
    BoundDenoiser,
    ConditionalDenoiser,
    ContrastiveModel,
    RegressionHead,
    ResNetEncoder,
    SpectrumEncoder,
    UNet1D,
    info_nce,
)
from .networks import ContrastiveHyperparameters, DiffusionHyperparameters, NetworkHyperparameters, hyperparameters

#: Folder below a network's output folder holding the state of an unfinished training.
RESUME_DIR = "resume"


class CheckpointFiles(NamedTuple):
    """What a finished training writes: the last and the best (validation metric) checkpoint, and its metrics (CSV)."""

    last: Path
    best: Path
    metrics: Path

    @classmethod
    def in_folder(cls, folder: str | Path) -> CheckpointFiles:
        """The files in ``folder`` under the names the workflow's training rules declare."""
        return cls(Path(folder) / "last.ckpt", Path(folder) / "best.ckpt", Path(folder) / "metrics.csv")


class TrainingInterrupted(RuntimeError):
    """Training stopped before ``max_steps`` (SIGTERM); its state is saved for the next run."""


#: Per-step decay of the running residual scale (``residual_standardisation: running``): about the
#: last 100 batches, short against any training and long against one batch's noise.
RESIDUAL_SCALE_DECAY = 0.99


def target_key(network: str, hp: NetworkHyperparameters) -> str:
    """What the network models (a key of :func:`img2spec.data.spectrum_stats`).

    CDM_sr with ``residual: true`` models the full-resolution log flux minus its conditioning
    low-resolution spectrum upsampled (``upsampling``: interpolated, or by the fitted map of
    :class:`img2spec.data.Upsampling`), as CorrDiff (Mardani et al. 2024) models a residual
    on a coarse prediction: the lines and small-scale structure the low-resolution step cannot hold.
    """
    if registry.network(network).resolution == "lowres":
        return "flux_lowres"
    return "residual" if isinstance(hp, DiffusionHyperparameters) and hp.residual else "flux"


def learning_rate_factor(step: int, warmup_steps: int, max_steps: int, schedule: str) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 10% at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _optimizer_with_schedule(parameters, hp: NetworkHyperparameters, optimizer_class):
    optimizer = optimizer_class(parameters, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    factor = functools.partial(
        learning_rate_factor, warmup_steps=hp.lr_warmup_steps, max_steps=hp.max_steps, schedule=hp.lr_schedule
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _image_encoder(hp: NetworkHyperparameters, feature_dim: int) -> ResNetEncoder:
    settings = hp.image_encoder
    return ResNetEncoder(settings.depth, settings.width, stem_stride=settings.stem_stride, feature_dim=feature_dim)


def build_denoiser(
    hp: DiffusionHyperparameters, super_resolution: bool, feature_dim: int = 0, length: int | None = None
) -> ConditionalDenoiser:
    """Image encoder and U-Net of a CDM; ``length`` (pixels of the spectrum) sizes the regression head, if any."""
    encoder = _image_encoder(hp, feature_dim)
    unet = UNet1D(
        in_channels=2 if super_resolution else 1,
        base=hp.unet.base,
        multipliers=hp.unet.multipliers,
        attention_levels=hp.unet.attention_levels,
        context_dim=encoder.out_dim,
        heads=hp.unet.heads,
        res_blocks=hp.unet.res_blocks,
        dropout=hp.unet.dropout,
    )
    head = None
    if hp.regression is not None:
        if length is None:
            raise ValueError("a CDM with a regression head needs the spectrum length")
        head = RegressionHead(encoder.out_dim, hp.regression.hidden, length)
    redshift_head = RegressionHead(encoder.out_dim, hp.redshift.hidden, 1) if hp.redshift is not None else None
    return ConditionalDenoiser(encoder, unet, head, redshift_head)


def build_contrastive(hp: ContrastiveHyperparameters, feature_dim: int = 0) -> ContrastiveModel:
    return ContrastiveModel(
        _image_encoder(hp, feature_dim),
        SpectrumEncoder(hp.spectrum_encoder.width, hp.spectrum_encoder.blocks),
        hp.latent,
        hp.temperature,
        hp.learn_temperature,
    )


class _ValidationSums:
    """Numerators and denominators of ratio metrics, summed over batches and processes.

    A metric is then the ratio of its sums over the whole validation split, whatever its division
    into batches and processes (Lightning's mean of batch means depends on both).
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, numerator: torch.Tensor, denominator: torch.Tensor | float) -> None:
        pair = torch.stack([numerator.detach().double(), torch.as_tensor(denominator, dtype=torch.float64)])
        self.sums[name] = self.sums.get(name, 0) + pair

    def ratios(self, over_ranks_of: pl.LightningModule | None = None) -> dict[str, torch.Tensor]:
        """name → numerator / denominator, summed over the processes training ``over_ranks_of`` when
        given (then every process must call it, with the same names)."""
        names = sorted(self.sums)
        if not names:
            return {}
        totals = torch.stack([self.sums[name] for name in names])
        if over_ranks_of is not None:
            totals = sum_over_ranks(over_ranks_of, totals)
        return {name: (total[0] / total[1].clamp_min(1e-300)).float() for name, total in zip(names, totals)}


#: Key of a checkpoint's own entry: the network, its hyperparameters and statistics (:func:`load_task`).
CHECKPOINT_KEY = "img2spec"
#: Version of that entry; :func:`load_task` refuses others.
CHECKPOINT_FORMAT = 1


class _CheckpointMixin:
    """Save what rebuilds the task (:func:`load_task`) and the Python, numpy and torch RNG states with the checkpoint."""

    network: str
    hp: NetworkHyperparameters
    statistics: NetworkStatistics
    seed: int

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "network": self.network,
            "hyperparameters": self.hp.to_config(),
            "statistics": self.statistics.to_dict(),
            "seed": self.seed,
        }
        numpy_state = np.random.get_state(legacy=False)
        numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()  # plain types load with weights_only
        checkpoint["rng_states"] = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            numpy_state = dict(states["numpy"])
            numpy_state["state"] = dict(
                numpy_state["state"], key=np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
            )
            np.random.set_state(numpy_state)
            torch.set_rng_state(states["torch"])


def _check_finite(loss: torch.Tensor, network: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{network}: training loss is {loss.item()} at step {step}; stopping (lower the learning rate or check the data)"
        )


class DiffusionTask(_CheckpointMixin, pl.LightningModule):
    """Conditional diffusion model (CDM_lr or CDM_sr) with EMA weights.

    Validation logs, over the whole validation split, ``val_loss`` (the training loss of the EMA model
    at fixed t and noise, mean of batch losses), ``val_mse``: the MSE, in natural-log flux over
    unmasked pixels, of one DDIM sample of the EMA model per validation galaxy (its noise seeded by the
    galaxy) against its observed spectrum (no best-of-k selection), and for a network
    with a regression head ``val_regression_mse``, the same for its conditional mean.  CDM_sr also logs
    ``val_mean_mse`` (of its conditional mean, :meth:`NoiseSchedule.conditional_mean`),
    ``val_reference_mse`` (of its condition linearly interpolated: no fine structure) and, modelling a
    residual, ``val_upsampled_mse`` (of the upsampled condition alone).
    """

    hp: DiffusionHyperparameters
    residual_scale: torch.Tensor

    def __init__(
        self, network: str, hp: DiffusionHyperparameters, statistics: NetworkStatistics, seed: int = 0
    ) -> None:
        super().__init__()
        if hp.redshift is not None and statistics.redshift is None:
            raise ValueError(f"{network}: a redshift head needs the training redshifts' centre and scale")
        self.network, self.hp, self.statistics, self.seed = network, hp, statistics, seed
        self.frame = hp.frame
        self.super_resolution = registry.network(network).conditioned_on_lowres
        self.residual = target_key(network, hp) == "residual"
        self.image_stats, self.stats, self.lowres_stats = statistics.images, statistics.spectrum, statistics.lowres
        self.net = build_denoiser(hp, self.super_resolution, self.image_stats.n_features, self.stats.mean.size)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.schedule = NoiseSchedule.named(hp.schedule, hp.timesteps, hp.prediction)
        # per-pixel RMS of the residual on the regression mean, in standardised units (1: the population's
        # spread); saved with the weights, so sampling undoes the scaling the training used
        self.register_buffer("residual_scale", torch.ones(self.stats.mean.size))

    @staticmethod
    def _bind(net: ConditionalDenoiser, batch: dict) -> BoundDenoiser:
        return net.conditioned(batch["images"], batch.get("lowres"), batch.get("features"))

    def _loss(
        self,
        net: ConditionalDenoiser,
        bound: BoundDenoiser,
        batch: dict,
        generator: torch.Generator | list[torch.Generator],
    ) -> torch.Tensor:
        """Diffusion loss of the target (of its residual on the regression mean), plus the mean's weighted
        MSE and the redshift head's MSE in standardised redshift, each with its ``loss_weight``.

        Training with several processes, each computes its share of the global batch's loss (noise
        and normalisation of the global batch, :meth:`NoiseSchedule.training_loss`), so that the mean
        over processes is the loss one process would compute on the global batch.
        """
        x0, weight = batch["spectrum"], batch["weight"]
        training = self.training and net is self.net
        rank, world = shard_of(self) if training else (0, 1)
        weight_total = sum_over_ranks(self, weight.sum()) / world if world > 1 else weight.sum()
        if bound.mean is None:
            loss = self.schedule.training_loss(bound, x0, weight, generator, (rank, world), weight_total)
        else:
            residual = x0 - bound.mean.detach()
            if self.hp.residual_standardisation == "running" and training:
                with torch.no_grad():
                    sums = sum_over_ranks(self, torch.stack([(residual**2 * weight).sum(0), weight.sum(0)]))
                    square = sums[0] / sums[1].clamp_min(1.0)
                    updated = self.residual_scale.lerp(square.sqrt(), 1 - RESIDUAL_SCALE_DECAY)
                    self.residual_scale.copy_(torch.where(sums[1] > 0, updated, self.residual_scale).clamp_min(1e-3))
            scaled = residual / self.residual_scale
            loss = self.schedule.training_loss(bound, scaled, weight, generator, (rank, world), weight_total)
            regression = ((bound.mean - x0) ** 2 * weight).sum() / weight_total.clamp_min(1.0)
            assert self.hp.regression is not None  # a bound mean comes from the regression head
            loss = loss + self.hp.regression.loss_weight * regression
        if net.redshift is not None:
            assert self.hp.redshift is not None and self.statistics.redshift is not None  # checked on construction
            error = net.redshift(bound.pooled)[:, 0] - self.statistics.redshift.standardise(batch["redshift"])
            loss = loss + self.hp.redshift.loss_weight * (error**2).mean()
        return loss

    @torch.no_grad()
    def redshift(self, bound: BoundDenoiser) -> torch.Tensor:
        """Redshift (B,) of the images ``bound`` was conditioned on (by the EMA network), from its redshift head."""
        if self.ema.redshift is None or self.statistics.redshift is None:
            raise ValueError(f"{self.network} has no redshift head (hyperparameter 'redshift')")
        return self.statistics.redshift.restore(self.ema.redshift(bound.pooled)[:, 0])

    def training_step(self, batch, batch_idx):
        # t and ε depend on (seed, step) only, so a resumed run draws exactly what the uninterrupted
        # one would, whatever validation and data loading consumed meanwhile, and W processes what one does
        seed = self.seed * 1_000_003 * 1_000_003 + self.global_step
        generator = torch.Generator(device=batch["spectrum"].device).manual_seed(seed)
        loss = self._loss(self.net, self._bind(self.net, batch), batch, generator)
        _check_finite(loss, self.network, self.global_step)
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            sync_dist=True,
            batch_size=batch["spectrum"].shape[0],
        )
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # the EMA follows each optimizer step here, before any on_train_batch_end checkpoint is written,
        # so a resumed run's EMA is the uninterrupted one's; the warm-up keeps short runs from being
        # dominated by the random start (step counts the optimizer steps done, this one included)
        step = self.global_step + 1
        decay = min(self.hp.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.net.parameters()):
                ema.lerp_(live, 1 - decay)
            for ema_buffer, live_buffer in zip(self.ema.buffers(), self.net.buffers()):
                ema_buffer.copy_(live_buffer)

    @torch.no_grad()
    def sample(
        self,
        images: torch.Tensor,
        features: torch.Tensor | None = None,
        lowres: torch.Tensor | None = None,
        sampler: str = "ddim",
        steps: int = 10,
        generator=None,
        spacing: str | None = None,
        repeats: int = 1,
    ) -> torch.Tensor:
        """Standardised spectra (B·repeats, L) drawn by the EMA network for standardised ``images`` (B, 5, 64, 64).

        ``features`` are the photometric features; each image is encoded once and gets ``repeats``
        draws (rows ordered image by image).  ``lowres`` (B·repeats, L) is CDM_sr's standardised
        low-resolution condition at full resolution, one per draw; ``generator`` one torch generator
        or one per draw.
        """
        bound = self.ema.conditioned(images, None, features).repeated(repeats, lowres)
        return self.draw(bound, sampler, steps, generator, spacing)

    def draw(
        self, bound: BoundDenoiser, sampler: str = "ddim", steps: int = 10, generator=None, spacing: str | None = None
    ) -> torch.Tensor:
        """Standardised spectra from a denoiser bound to its conditioning; x0 estimates are bounded by the
        training range (:meth:`SpectrumStats.standardised_range`), of the whole spectrum when the
        network draws a residual on its regression mean."""
        shape = (bound.tokens.shape[0], self.stats.mean.size)
        low, high = self.stats.standardised_range
        device = bound.tokens.device
        if bound.mean is None:
            return self.schedule.sample(sampler, bound, shape, steps, generator, device, (low, high), spacing)
        scale = self.residual_scale
        residual = self.schedule.sample(
            sampler,
            bound,
            shape,
            steps,
            generator,
            device,
            ((low - bound.mean) / scale, (high - bound.mean) / scale),
            spacing,
        )
        return bound.mean + residual * scale

    @torch.no_grad()
    def regression_mean(self, images: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor | None:
        """Standardised conditional mean (B, L) of the EMA network's regression head, None without one."""
        return self.ema.conditioned(images, None, features).mean

    def on_validation_epoch_start(self) -> None:
        self._validation = _ValidationSums()

    def validation_step(self, batch, batch_idx):
        x0, weight = batch["spectrum"], batch["weight"]
        # one generator per galaxy: its noise, and so each metric, is independent of batches and processes
        generator = [torch.Generator(device=x0.device).manual_seed(1000 + int(i)) for i in batch["index"]]
        bound = self._bind(self.ema, batch)
        loss = self._loss(self.ema, bound, batch, generator)
        sample = self.draw(bound, "ddim", self.hp.val_sampler_steps, generator)
        n = x0.shape[0]

        def add_mse(name: str, standardised: torch.Tensor) -> None:
            error = (self.stats.restore(standardised) - self.stats.restore(x0)) ** 2
            self._validation.add(name, (error * weight).sum(), weight.sum())

        self._validation.add("val_loss", loss * n, n)
        add_mse("val_mse", sample)
        if bound.mean is not None:
            add_mse("val_regression_mse", bound.mean)
        if self.super_resolution:
            # signal against noise: the conditional mean has no sample noise of its own, so its MSE and
            # the references' carry the same observational noise and differ by the fine structure learned
            add_mse("val_mean_mse", self.schedule.conditional_mean(bound, x0.shape, generator, x0.device))
            add_mse("val_reference_mse", self.stats.standardise(batch["reference"]))
            if self.residual:
                add_mse("val_upsampled_mse", self.stats.standardise(torch.zeros_like(x0)))
        if self.ema.redshift is not None:
            z_true, z = batch["redshift"], self.redshift(bound)
            self._validation.add("val_redshift_rms", (((z - z_true) / (1 + z_true)) ** 2).sum(), n)

    def on_validation_epoch_end(self) -> None:
        """Log each metric over the whole validation split: mean squared errors per unmasked pixel."""
        for name, value in self._validation.ratios(over_ranks_of=self).items():
            value = value.sqrt() if name == "val_redshift_rms" else value
            self.log(name, torch.nan_to_num(value, nan=float("inf")), prog_bar=name == "val_mse", sync_dist=True)

    def configure_optimizers(self):
        return _optimizer_with_schedule(self.net.parameters(), self.hp, torch.optim.Adam)


class ContrastiveTask(_CheckpointMixin, pl.LightningModule):
    """Image–spectrum contrastive network; validation logs InfoNCE loss and top-1 retrieval accuracy."""

    hp: ContrastiveHyperparameters

    def __init__(
        self, network: str, hp: ContrastiveHyperparameters, statistics: NetworkStatistics, seed: int = 0
    ) -> None:
        super().__init__()
        self.network, self.hp, self.statistics, self.seed = network, hp, statistics, seed
        self.frame = hp.frame
        self.image_stats, self.stats = statistics.images, statistics.spectrum
        self.model = build_contrastive(hp, self.image_stats.n_features)

    def training_step(self, batch, batch_idx):
        # with several processes the negatives are the whole global batch, as with one process
        images = gather_with_gradient(self, self.model.embed_images(batch["images"], batch.get("features")))
        spectra = gather_with_gradient(self, self.model.embed_spectra(batch["spectrum"]))
        loss = info_nce(self.model.similarity(images, spectra))
        _check_finite(loss, self.network, self.global_step)
        self.log(
            "train_loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=False,
            sync_dist=True,
            batch_size=batch["spectrum"].shape[0],
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._validation_embeddings: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx):
        images = self.model.embed_images(batch["images"], batch.get("features"))
        spectra = self.model.embed_spectra(batch["spectrum"])
        index = batch["index"].to(images.dtype)[:, None]
        self._validation_embeddings.append(torch.cat([index, images, spectra], dim=1))

    def on_validation_epoch_end(self) -> None:
        """InfoNCE loss and top-1 retrieval accuracy in batches of ``batch_size`` consecutive validation
        galaxies (the batches of one process), averaged over galaxies, whatever the number of processes."""
        rows = torch.cat(self._validation_embeddings)
        if shard_of(self)[1] > 1:
            rows = gather_rows(rows)
        rows = rows[torch.argsort(rows[:, 0])]
        images, spectra = rows[:, 1:].chunk(2, dim=1)
        sums = _ValidationSums()
        for start in range(0, rows.shape[0], self.hp.batch_size):
            chosen = slice(start, start + self.hp.batch_size)
            logits = self.model.similarity(images[chosen], spectra[chosen])
            n = logits.shape[0]
            hits = (logits.argmax(dim=1) == torch.arange(n, device=logits.device)).sum()
            sums.add("val_loss", torch.nan_to_num(info_nce(logits), nan=float("inf")) * n, n)
            sums.add("val_top1", hits, n)
        for name, value in sums.ratios().items():  # every process holds every galaxy already
            self.log(name, value, prog_bar=name == "val_loss", sync_dist=True)

    def configure_optimizers(self):
        return _optimizer_with_schedule(self.model.parameters(), self.hp, torch.optim.AdamW)


class EpochPosition(Callback):
    """Tell a :class:`img2spec.data.ResumableLoader` how many batches of the epoch are done, for its state."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.batches_done = batch_idx + 1


class CheckpointOnSigterm(Callback):
    """Write ``path`` after the training batch during which a SIGTERM (e.g. SLURM pre-emption) arrived, then stop.

    The callback replaces Lightning's SIGTERM handler while the training runs: Lightning's does
    collective operations inside the signal handler, which with several processes pair with whatever
    collective another process is in and hang the job.  Here the handler only notes the signal; after
    each batch the processes agree (one all-reduce) whether any of them received one, all take part in
    writing the checkpoint (rank 0 writes it), and all raise ``SIGTERMException``, which
    :func:`train_network` turns into :class:`TrainingInterrupted`.  A signal during the last step lets
    the training finish.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.saved_at: int | None = None
        self.received = False
        self._previous_handler: Any = None

    def _note(self, signum: int, frame: Any) -> None:
        self.received = True

    def on_train_start(self, trainer, pl_module) -> None:
        self.received = False
        self._previous_handler = signal.signal(signal.SIGTERM, self._note)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        received = self.received
        if trainer.world_size > 1:
            received = trainer.strategy.reduce_boolean_decision(received, all=False)
        if not received or self.saved_at is not None or trainer.global_step >= trainer.max_steps:
            return
        trainer.save_checkpoint(self.path)
        self.saved_at = trainer.global_step
        raise SIGTERMException

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None


def make_task(
    network: str, hp: NetworkHyperparameters, statistics: NetworkStatistics, seed: int = 0
) -> DiffusionTask | ContrastiveTask:
    """The untrained task of the network ``network``: a diffusion or a contrastive one, as the registry says."""
    expected = registry.network(network).hyperparameters
    if not isinstance(hp, expected):
        raise TypeError(f"{network}: hyperparameters of type {type(hp).__name__}; it takes {expected.__name__}")
    if isinstance(hp, DiffusionHyperparameters):
        return DiffusionTask(network, hp, statistics, seed)
    return ContrastiveTask(network, hp, statistics, seed)


def load_task(path: str | Path, map_location: str | torch.device = "cpu") -> DiffusionTask | ContrastiveTask:
    """A trained task from its checkpoint: rebuilt from the checkpoint's own entry (:data:`CHECKPOINT_KEY`), weights loaded.

    Raises
    ------
    ValueError
        Naming the file, when it has no such entry or one of another format.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        # a truncated or empty file: torch names neither the file nor what is wrong with it
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); train the network again"
        ) from err
    saved = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if saved is None or saved.get("format") != CHECKPOINT_FORMAT:
        found = "none" if saved is None else f"format {saved.get('format')}"
        raise ValueError(
            f"{path}: not an img2spec checkpoint of format {CHECKPOINT_FORMAT} (its {CHECKPOINT_KEY!r} entry: {found}); "
            "train the network again"
        )
    name = saved["network"]
    task = make_task(
        name,
        hyperparameters(name, saved["hyperparameters"]),
        NetworkStatistics.from_dict(saved["statistics"]),
        saved["seed"],
    )
    task.load_state_dict(checkpoint["state_dict"])
    return task.to(map_location)


def network_statistics(dataset_path: str, network: str, hp: NetworkHyperparameters) -> NetworkStatistics:
    """Standardisation of the network's target, its images, (CDM_sr) its conditioning spectrum and (a redshift head) redshifts."""
    per_pixel = hp.target_standardisation == "per_pixel"
    lowres = (
        spectrum_stats(dataset_path, "flux_lowres", per_pixel, frame=hp.frame)
        if registry.network(network).conditioned_on_lowres
        else None
    )
    target = target_key(network, hp)
    upsampling = None
    if target == "residual":
        assert isinstance(hp, DiffusionHyperparameters)  # only a CDM models a residual
        upsampling = _upsampling(dataset_path, hp)
    return NetworkStatistics(
        spectrum_stats(dataset_path, target, per_pixel, frame=hp.frame, upsampling=upsampling),
        image_stats(dataset_path, hp.image_transform, hp.photometric_features),
        lowres,
        redshift_stats(dataset_path) if isinstance(hp, DiffusionHyperparameters) and hp.redshift is not None else None,
        upsampling,
    )


def _upsampling(dataset_path: str, hp: DiffusionHyperparameters) -> Upsampling:
    """The map a residual CDM_sr's target is taken on: linear interpolation or the training split's least-squares fit."""
    if hp.upsampling == "fitted":
        return fit_upsampling(dataset_path, hp.frame, hp.upsampling_half_width)
    with DatasetFile(dataset_path) as data:
        return linear_upsampling(data.wave_of(hp.frame, lowres=True), data.wave_of(hp.frame))


#: Precisions a training can run at (the schema's ``training.precision`` besides ``auto``).
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
PRECISIONS: tuple[Precision, ...] = ("32-true", "bf16-mixed", "16-mixed")


def resolve_precision(precision: str, accelerator: str) -> Precision:
    """'auto' → bf16 mixed precision on GPU, full fp32 on CPU."""
    for known in PRECISIONS:
        if precision == known:
            return known
    if precision != "auto":
        raise ValueError(f"training.precision {precision!r}: one of auto, {', '.join(PRECISIONS)}")
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


def build_trainer(out_dir: str | Path, hp: NetworkHyperparameters, run: dict, progress: bool = True) -> pl.Trainer:
    """Lightning trainer for one network, checkpointing and logging into ``out_dir``.

    ``hp``: the network's hyperparameters (training length, validation and checkpoint intervals);
    ``run``: ``accelerator``, ``devices``, ``num_nodes``, ``precision``.
    """
    out_dir = Path(out_dir)
    written = CheckpointFiles.in_folder(out_dir)  # Lightning's CSV logger always writes metrics.csv
    monitor = "val_mse" if isinstance(hp, DiffusionHyperparameters) else "val_loss"
    checkpoints = ModelCheckpoint(
        dirpath=out_dir,
        filename=written.best.stem,
        monitor=monitor,
        mode="min",
        save_last=True,
        every_n_train_steps=hp.checkpoint_every_steps,
        save_on_train_epoch_end=False,
    )
    checkpoints.CHECKPOINT_NAME_LAST = written.last.stem
    parallel = run["devices"] != 1 or run["num_nodes"] > 1
    # on one node the processes are this one and the copies Lightning starts of it, also inside a
    # SLURM job of one task (the SLURM profile); several nodes need SLURM's srun, one task per device
    environment = LightningEnvironment() if run["num_nodes"] == 1 else None  # None: Lightning detects SLURM
    return pl.Trainer(
        default_root_dir=out_dir,
        accelerator=run["accelerator"],
        devices=run["devices"],
        num_nodes=run["num_nodes"],
        strategy=DDPStrategy(cluster_environment=environment) if parallel else "auto",
        plugins=[GlobalBatchNorm()] if parallel else [environment] if environment is not None else None,
        precision=resolve_precision(run["precision"], run["accelerator"]),
        max_steps=hp.max_steps,
        val_check_interval=min(hp.val_every_steps, hp.max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=CSVLogger(out_dir, name="", version=""),
        callbacks=[EpochPosition(), checkpoints, CheckpointOnSigterm(written.last)]
        + ([TQDMProgressBar(refresh_rate=10)] if progress else []),
        enable_progress_bar=progress,
        use_distributed_sampler=False,
        log_every_n_steps=max(1, min(10, hp.val_every_steps)),
        deterministic=not torch.cuda.is_available(),
    )


def training_fingerprint(dataset_path: str | Path, network: str, hp: NetworkHyperparameters, run: dict) -> str:
    """What a saved training state belongs to: the network, its hyperparameters, the seed and the dataset file."""
    stat = Path(dataset_path).stat()
    identity = {
        "network": network,
        "hp": hp.to_config(),
        "seed": run["seed"],
        "dataset": [str(Path(dataset_path).resolve()), stat.st_size, stat.st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _resume_state(resume_dir: Path, fingerprint: str, log) -> Path | None:
    """The checkpoint to resume from, or None (no state, or state of another training, which is removed)."""
    saved = resume_dir / "fingerprint.json"
    if not saved.exists():
        if resume_dir.exists():
            shutil.rmtree(resume_dir)
        return None
    if json.loads(saved.read_text()).get("fingerprint") != fingerprint:
        log(f"{resume_dir}: saved state belongs to other hyperparameters or another dataset; starting afresh")
        shutil.rmtree(resume_dir)
        return None
    last = CheckpointFiles.in_folder(resume_dir).last
    if not last.exists():
        return None
    try:  # a kill while the checkpoint was being written leaves it truncated
        torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - whatever makes it unreadable, the training starts afresh
        log(f"{last}: unreadable ({type(err).__name__}); starting afresh")
        shutil.rmtree(resume_dir)
        return None
    return last


def training_parts(
    dataset_path: str, network: str, hp: NetworkHyperparameters, seed: int = 0, num_workers: int = 0
) -> tuple[SpectraDataModule, DiffusionTask | ContrastiveTask]:
    """The data module and the untrained task of one network, with their statistics from ``dataset_path``."""
    statistics = network_statistics(dataset_path, network, hp)
    data = SpectraDataModule(
        dataset_path,
        target_key(network, hp),
        hp.batch_size,
        statistics.spectrum,
        statistics.images,
        statistics.lowres,
        num_workers=num_workers,
        seed=seed,
        crop_pad=hp.crop_pad,
        frame=hp.frame,
        upsampling=statistics.upsampling,
    )
    return data, make_task(network, hp, statistics, seed)


def train_network(
    dataset_path: str,
    network: str,
    hp: NetworkHyperparameters,
    run: dict,
    files: CheckpointFiles,
    progress: bool = True,
    log=print,
) -> pl.LightningModule:
    """Train one network on ``dataset_path``; a finished training writes ``files``.

    Resumes from the folder :data:`RESUME_DIR` beside ``files.last`` when an earlier run of the
    same training left its state there (module docstring).

    Raises
    ------
    TrainingInterrupted
        When a SIGTERM stopped the training before ``max_steps``; the state is in the resume folder.
    """
    files = CheckpointFiles(*map(Path, files))
    resume_dir = files.last.parent / RESUME_DIR
    fingerprint = training_fingerprint(dataset_path, network, hp, run)
    resume = _resume_state(resume_dir, fingerprint, log)
    if local_rank() == 0:  # the copies Lightning starts of this process find the state it left
        resume_dir.mkdir(parents=True, exist_ok=True)
        (resume_dir / "fingerprint.json").write_text(json.dumps({"fingerprint": fingerprint, "network": network}))
    pl.seed_everything(run["seed"], workers=True, verbose=False)
    data, task = training_parts(dataset_path, network, hp, run["seed"], run["num_workers"])
    trainer = build_trainer(resume_dir, hp, run, progress)
    metrics = CheckpointFiles.in_folder(resume_dir).metrics
    # Lightning's CSV logger starts metrics.csv afresh; a resumed run keeps the rows before it
    previous = pd.read_csv(metrics) if resume is not None and metrics.exists() else None
    if resume is None:
        trainer.validate(task, datamodule=data, verbose=False)  # the untrained model's metrics, at step 0
    else:
        log(f"resuming {network} from {resume}")
    try:
        trainer.fit(task, datamodule=data, ckpt_path=str(resume) if resume else None)
        stopped = None
    except SIGTERMException as err:
        stopped = err
    if trainer.is_global_zero and previous is not None and metrics.exists():
        current = pd.read_csv(metrics)
        pd.concat([previous[previous["step"] < current["step"].min()], current]).to_csv(metrics, index=False)
    if stopped is not None or trainer.global_step < hp.max_steps:
        raise TrainingInterrupted(
            f"{network}: stopped at step {trainer.global_step} of {hp.max_steps}; "
            f"the next run resumes from {CheckpointFiles.in_folder(resume_dir).last}"
        ) from stopped
    if not trainer.is_global_zero:  # rank 0 writes the files
        return task
    # the resume folder holds Lightning's own names (build_trainer); the declared files get copies
    for written, declared in zip(CheckpointFiles.in_folder(resume_dir), files):
        shutil.copy2(written, declared)
    shutil.rmtree(resume_dir)
    return task
