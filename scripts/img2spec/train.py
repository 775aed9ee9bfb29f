"""Training of the four networks with PyTorch Lightning: modules, callbacks and trainer construction.

Lightning gives CPU, one GPU, DDP over GPUs and nodes (SLURM included), bf16 mixed precision,
checkpointing and resume without code of our own.  What is ours: exponential moving average (EMA)
weights, a finite-loss guard, a SIGTERM checkpoint, RNG state in checkpoints (exact resume), and a
validation metric that is never NaN-best.
"""

from __future__ import annotations

import copy
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from .data import SpectraDataModule, SpectrumStats, spectrum_stats
from .diffusion import NoiseSchedule
from .models import ConditionalDenoiser, ContrastiveModel, ResNetEncoder, SpectrumEncoder, UNet1D, info_nce

NETWORKS = ("cdm_lr", "contrastive_lr", "cdm_sr", "contrastive_sr")


def target_of(network: str) -> str:
    """'lowres' for the *_lr networks, 'full' for the *_sr ones."""
    return "lowres" if network.endswith("_lr") else "full"


def build_denoiser(hp: dict, super_resolution: bool) -> ConditionalDenoiser:
    encoder = ResNetEncoder(**hp["image_encoder"])
    unet = UNet1D(
        in_channels=2 if super_resolution else 1,
        base=hp["unet"]["base"],
        multipliers=tuple(hp["unet"]["multipliers"]),
        attention_levels=tuple(hp["unet"]["attention_levels"]),
        context_dim=encoder.out_dim,
        heads=hp["unet"]["heads"],
        res_blocks=hp["unet"]["res_blocks"],
        dropout=hp["unet"]["dropout"],
    )
    return ConditionalDenoiser(encoder, unet)


def build_contrastive(hp: dict) -> ContrastiveModel:
    return ContrastiveModel(
        ResNetEncoder(**hp["image_encoder"]),
        SpectrumEncoder(hp["spectrum_encoder"]["width"], tuple(hp["spectrum_encoder"]["blocks"])),
        hp["latent"],
        hp["temperature"],
        hp["learn_temperature"],
    )


class _RNGStateMixin:
    """Store and restore Python, numpy and torch RNG states with the checkpoint."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        numpy_state = np.random.get_state(legacy=False)
        numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()  # plain types load with weights_only
        checkpoint["rng_states"] = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            numpy_state = dict(states["numpy"])
            numpy_state["state"] = dict(numpy_state["state"], key=np.asarray(numpy_state["state"]["key"], dtype=np.uint32))
            np.random.set_state(numpy_state)
            torch.set_rng_state(states["torch"])


def _check_finite(loss: torch.Tensor, network: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{network}: training loss is {loss.item()} at step {step}; stopping (lower the learning rate or check the data)")


class DiffusionTask(_RNGStateMixin, pl.LightningModule):
    """Conditional diffusion model (CDM_lr or CDM_sr) with EMA weights.

    Validation logs ``val_loss`` (ε-MSE of the EMA model at fixed t and noise) and ``val_mse``:
    the MSE, in natural-log flux over unmasked pixels, of one DDIM sample of the EMA model per
    validation galaxy against its observed spectrum (no best-of-k selection).
    """

    def __init__(self, network: str, hp: dict, stats: dict, lowres_stats: dict | None = None, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = network
        self.super_resolution = target_of(network) == "full"
        self.net = build_denoiser(hp, self.super_resolution)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.schedule = NoiseSchedule.named(hp["schedule"], hp["timesteps"])
        self.stats = SpectrumStats(**stats)

    def _denoiser(self, net, batch):
        images, lowres = batch["images"], batch.get("lowres")
        return lambda x, t: net(x, t, images, lowres)

    def training_step(self, batch, batch_idx):
        # t and ε depend on (seed, rank, step) only, so a resumed run draws exactly what the
        # uninterrupted one would, whatever validation and data loading consumed meanwhile
        seed = (self.hparams.seed * 1_000_003 + self.global_rank) * 1_000_003 + self.global_step
        generator = torch.Generator(device=batch["spectrum"].device).manual_seed(seed)
        loss = self.schedule.training_loss(self._denoiser(self.net, batch), batch["spectrum"], weight=batch["weight"], generator=generator)
        _check_finite(loss, self.network, self.global_step)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch["spectrum"].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # EMA with the usual warm-up, so short runs are not dominated by the random start
        decay = min(self.hparams.hp["ema_decay"], (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.net.parameters()):
                ema.lerp_(live, 1 - decay)
            for ema, live in zip(self.ema.buffers(), self.net.buffers()):
                ema.copy_(live)

    def validation_step(self, batch, batch_idx):
        x0 = batch["spectrum"]
        generator = torch.Generator(device=x0.device).manual_seed(1000 + batch_idx)
        loss = self.schedule.training_loss(self._denoiser(self.ema, batch), x0, weight=batch["weight"], generator=generator)
        sample = self.schedule.sample_ddim(self._denoiser(self.ema, batch), tuple(x0.shape), self.hparams.hp["val_sampler_steps"],
                                           generator=generator, device=x0.device, x0_range=self.stats.standardised_range)
        error = ((sample - x0) * self.stats.std) ** 2
        mse = (error * batch["weight"]).sum() / batch["weight"].sum().clamp_min(1.0)
        n = x0.shape[0]
        self.log("val_loss", loss, sync_dist=True, batch_size=n)
        self.log("val_mse", torch.nan_to_num(mse, nan=float("inf")), prog_bar=True, sync_dist=True, batch_size=n)

    def configure_optimizers(self):
        hp = self.hparams.hp
        return torch.optim.Adam(self.net.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"])


class ContrastiveTask(_RNGStateMixin, pl.LightningModule):
    """Image–spectrum contrastive network; validation logs InfoNCE loss and top-1 retrieval accuracy."""

    def __init__(self, network: str, hp: dict, stats: dict, lowres_stats: dict | None = None, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = network
        self.model = build_contrastive(hp)

    def training_step(self, batch, batch_idx):
        loss = info_nce(self.model.logits(batch["images"], batch["spectrum"]))
        _check_finite(loss, self.network, self.global_step)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch["spectrum"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self.model.logits(batch["images"], batch["spectrum"])
        n = logits.shape[0]
        accuracy = (logits.argmax(dim=1) == torch.arange(n, device=logits.device)).float().mean()
        self.log("val_loss", torch.nan_to_num(info_nce(logits), nan=float("inf")), prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val_top1", accuracy, sync_dist=True, batch_size=n)

    def configure_optimizers(self):
        hp = self.hparams.hp
        return torch.optim.AdamW(self.model.parameters(), lr=hp["learning_rate"], weight_decay=hp["weight_decay"])


class CheckpointOnSigterm(Callback):
    """On SIGTERM (e.g. SLURM pre-emption) write ``last.ckpt`` after the current batch and stop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.received = False

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero or trainer.world_size > 1:
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.received:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def make_task(network: str, hp: dict, stats: SpectrumStats, lowres_stats: SpectrumStats | None, seed: int = 0) -> pl.LightningModule:
    cls = DiffusionTask if network.startswith("cdm") else ContrastiveTask
    return cls(network, hp, stats.to_dict(), lowres_stats.to_dict() if lowres_stats else None, seed)


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' → bf16 mixed precision on GPU, full fp32 on CPU."""
    if precision != "auto":
        return precision
    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


def build_trainer(out_dir: str | Path, hp: dict, run: dict, progress: bool = True) -> pl.Trainer:
    """Lightning trainer for one network.

    ``hp``: the network's hyperparameters (``max_steps``, ``val_every_steps``, ``checkpoint_every_steps``);
    ``run``: ``accelerator``, ``devices``, ``num_nodes``, ``precision``.
    """
    out_dir = Path(out_dir)
    monitor = "val_mse" if "val_sampler_steps" in hp else "val_loss"
    checkpoints = ModelCheckpoint(dirpath=out_dir, filename="best", monitor=monitor, mode="min", save_last=True,
                                  every_n_train_steps=hp["checkpoint_every_steps"], save_on_train_epoch_end=False)
    checkpoints.CHECKPOINT_NAME_LAST = "last"
    parallel = run["devices"] != 1 or run["num_nodes"] > 1
    return pl.Trainer(
        default_root_dir=out_dir,
        accelerator=run["accelerator"],
        devices=run["devices"],
        num_nodes=run["num_nodes"],
        strategy="ddp" if parallel else "auto",
        precision=resolve_precision(run["precision"], run["accelerator"]),
        max_steps=hp["max_steps"],
        val_check_interval=min(hp["val_every_steps"], hp["max_steps"]),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=CSVLogger(out_dir, name="", version=""),
        callbacks=[checkpoints, CheckpointOnSigterm(out_dir / "last.ckpt")] + ([TQDMProgressBar(refresh_rate=10)] if progress else []),
        enable_progress_bar=progress,
        use_distributed_sampler=False,
        log_every_n_steps=max(1, min(10, hp["val_every_steps"])),
        deterministic=not torch.cuda.is_available(),
    )


def train_network(dataset_path: str, network: str, hp: dict, run: dict, out_dir: str | Path, resume: str | Path | None = None,
                  progress: bool = True) -> pl.LightningModule:
    """Train one network on ``dataset_path``; writes ``last.ckpt``, ``best.ckpt`` and ``metrics.csv`` to ``out_dir``."""
    pl.seed_everything(run["seed"], workers=True, verbose=False)
    target = target_of(network)
    stats = spectrum_stats(dataset_path, "flux" if target == "full" else "flux_lowres")
    lowres_stats = spectrum_stats(dataset_path, "flux_lowres") if network == "cdm_sr" else None
    data = SpectraDataModule(dataset_path, target, hp["batch_size"], stats, lowres_stats, num_workers=run["num_workers"],
                             seed=run["seed"], crop_pad=hp["crop_pad"])
    task = make_task(network, hp, stats, lowres_stats, run["seed"])
    trainer = build_trainer(out_dir, hp, run, progress)
    metrics = Path(out_dir) / "metrics.csv"
    # Lightning's CSV logger starts metrics.csv afresh; a resumed run keeps the rows before it
    previous = pd.read_csv(metrics) if resume is not None and metrics.exists() else None
    if resume is None:
        trainer.validate(task, datamodule=data, verbose=False)  # the untrained model's metrics, at step 0
    trainer.fit(task, datamodule=data, ckpt_path=str(resume) if resume else None)
    if previous is not None and trainer.is_global_zero:
        current = pd.read_csv(metrics)
        pd.concat([previous[previous["step"] < current["step"].min()], current]).to_csv(metrics, index=False)
    return task
