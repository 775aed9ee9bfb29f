"""The four networks as Lightning modules: their losses, EMA weights, validation metrics and checkpoints.

:class:`DiffusionTask` (CDM_lr, CDM_sr) and :class:`ContrastiveTask` (the two rankers) are built by
:func:`make_task` from a network's name, hyperparameters (:mod:`img2spec.networks`) and the
standardisation of its data (:func:`network_statistics`), and rebuilt from a checkpoint alone by
:func:`load_task`.  What is ours beyond Lightning: exponential moving average (EMA) weights, a
finite-loss guard, RNG state in checkpoints (exact resume), validation metrics over the whole split
(never NaN-best, independent of batches and processes), and W processes training as one
(:mod:`img2spec.distributed`).  :mod:`img2spec.train` runs them.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from . import networks as registry
from .config import saved_hyperparameters
from .dataset import DatasetFile
from .diffusion import NoiseSchedule
from .distributed import (
    gather_rows,
    gather_with_gradient,
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
from .networks import ContrastiveHyperparameters, DiffusionHyperparameters, NetworkHyperparameters
from .statistics import NetworkStatistics, fit_upsampling, image_stats, redshift_stats, spectrum_stats
from .upsampling import Upsampling, linear_upsampling

#: Noises the validation's conditional mean of CDM_sr is averaged over.  An x0 estimate from one noise
#: carried 0.015 rms of ln flux of noise-dependent error on the default run's test galaxies (more than
#: the 0.008 rms of fine structure the noiseless spectra have beyond the fitted upsampling); 8 noises
#: bring it to 0.005 (``tests/benchmarks/sr_headroom.py``).
VALIDATION_MEAN_DRAWS = 8
#: Per-step decay of the running residual scale (``residual_standardisation: running``): about the
#: last 100 batches, short against any training and long against one batch's noise.
RESIDUAL_SCALE_DECAY = 0.99


def target_key(network: str, hp: NetworkHyperparameters) -> str:
    """What the network models (a key of :func:`img2spec.statistics.spectrum_stats`).

    CDM_sr with ``residual: true`` models the full-resolution log flux minus its conditioning
    low-resolution spectrum upsampled (``upsampling``: interpolated, or by the fitted map of
    :class:`img2spec.upsampling.Upsampling`), as CorrDiff (Mardani et al. 2024) models a residual
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


def _logged_training_loss(task: DiffusionTask | ContrastiveTask, loss: torch.Tensor, batch: dict) -> torch.Tensor:
    """``loss``, checked finite and logged as ``train_loss`` (its mean over the training processes)."""
    _check_finite(loss, task.network, task.global_step)
    batch_size = batch["spectrum"].shape[0]
    task.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True, batch_size=batch_size)
    return loss


class DiffusionTask(_CheckpointMixin, pl.LightningModule):
    """Conditional diffusion model (CDM_lr or CDM_sr) with EMA weights.

    Validation logs, over the whole validation split, ``val_loss`` (the training loss of the EMA model
    at fixed t and noise, mean of batch losses), ``val_mse``: the MSE, in natural-log flux over
    unmasked pixels, of one DDIM sample of the EMA model per validation galaxy (its noise seeded by the
    galaxy) against its observed spectrum (no best-of-k selection), and for a network
    with a regression head ``val_regression_mse``, the same for its centre (conditional mean or median).  CDM_sr also logs
    ``val_mean_mse`` (of its conditional mean, :meth:`NoiseSchedule.conditional_mean` averaged over
    :data:`VALIDATION_MEAN_DRAWS` noises),
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
        # per-pixel RMS of the residual on the regression centre, in standardised units (1: the population's
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
        """Diffusion loss of the target (of its residual on the regression centre), plus the centre's weighted
        squared or absolute error and the redshift head's MSE in standardised redshift, each with its ``loss_weight``.

        Training with several processes, each computes its share of the global batch's loss (noise
        and normalisation of the global batch, :meth:`NoiseSchedule.training_loss`), so that the mean
        over processes is the loss one process would compute on the global batch.
        """
        x0, weight = batch["spectrum"], batch["weight"]
        training = self.training and net is self.net
        rank, world = shard_of(self) if training else (0, 1)
        weight_total = sum_over_ranks(self, weight.sum()) / world if world > 1 else weight.sum()
        if bound.centre is None:
            loss = self.schedule.training_loss(bound, x0, weight, generator, (rank, world), weight_total)
        else:
            residual = x0 - bound.centre.detach()
            if self.hp.residual_standardisation == "running" and training:
                with torch.no_grad():
                    sums = sum_over_ranks(self, torch.stack([(residual**2 * weight).sum(0), weight.sum(0)]))
                    square = sums[0] / sums[1].clamp_min(1.0)
                    updated = self.residual_scale.lerp(square.sqrt(), 1 - RESIDUAL_SCALE_DECAY)
                    self.residual_scale.copy_(torch.where(sums[1] > 0, updated, self.residual_scale).clamp_min(1e-3))
            scaled = residual / self.residual_scale
            loss = self.schedule.training_loss(bound, scaled, weight, generator, (rank, world), weight_total)
            assert self.hp.regression is not None  # a bound mean comes from the regression head
            error = bound.centre - x0
            penalty = error**2 if self.hp.regression.statistic == "mean" else error.abs()
            regression = (penalty * weight).sum() / weight_total.clamp_min(1.0)
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
        return _logged_training_loss(self, loss, batch)

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
        final_noise: float = 0.0,
    ) -> torch.Tensor:
        """Standardised spectra (B·repeats, L) drawn by the EMA network for standardised ``images`` (B, 5, 64, 64).

        ``features`` are the photometric features; each image is encoded once and gets ``repeats``
        draws (rows ordered image by image).  ``lowres`` (B·repeats, L) is CDM_sr's standardised
        low-resolution condition at full resolution, one per draw; ``generator`` one torch generator
        or one per draw; ``final_noise`` as in :meth:`draw`.
        """
        bound = self.ema.conditioned(images, None, features).repeated(repeats, lowres)
        return self.draw(bound, sampler, steps, generator, spacing, final_noise)

    def draw(
        self,
        bound: BoundDenoiser,
        sampler: str = "ddim",
        steps: int = 10,
        generator=None,
        spacing: str | None = None,
        final_noise: float = 0.0,
    ) -> torch.Tensor:
        """Standardised spectra from a denoiser bound to its conditioning; x0 estimates are bounded by the
        training range (:meth:`SpectrumStats.standardised_range`), of the whole spectrum when the
        network draws a residual on its regression centre.  ``final_noise`` > 0 ends the sampling at
        that noise variance, in the units the network draws in (:meth:`NoiseSchedule.final_step`)."""
        shape = (bound.tokens.shape[0], self.stats.mean.size)
        low, high = self.stats.standardised_range
        device = bound.tokens.device
        if bound.centre is None:
            return self.schedule.sample(
                sampler, bound, shape, steps, generator, device, (low, high), spacing, final_noise
            )
        scale = self.residual_scale
        residual = self.schedule.sample(
            sampler,
            bound,
            shape,
            steps,
            generator,
            device,
            ((low - bound.centre) / scale, (high - bound.centre) / scale),
            spacing,
            final_noise,
        )
        return bound.centre + residual * scale

    @torch.no_grad()
    def regression_centre(self, images: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor | None:
        """Standardised conditional mean or median (B, L) of the EMA network's regression head, None without one."""
        return self.ema.conditioned(images, None, features).centre

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
        if bound.centre is not None:
            add_mse("val_regression_mse", bound.centre)
        if self.super_resolution:
            # signal against noise: the conditional mean has no sample noise of its own, so its MSE and
            # the references' carry the same observational noise and differ by the fine structure learned
            mean = self.schedule.conditional_mean(bound, x0.shape, generator, x0.device, VALIDATION_MEAN_DRAWS)
            add_mse("val_mean_mse", mean)
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
        return _logged_training_loss(self, loss, batch)

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
        saved_hyperparameters(name, saved["hyperparameters"], path),
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
