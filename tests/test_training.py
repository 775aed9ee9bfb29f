"""The training engine: exact resume, NaN guard, SIGTERM checkpoint, metrics (issue 5)."""

from __future__ import annotations

import dataclasses
import signal
from types import SimpleNamespace

import img2spec.train as train_module
import numpy as np
import pandas as pd
import pytest
import torch
from img2spec.config import network_hyperparameters, validate_config
from img2spec.networks import NETWORKS
from img2spec.statistics import ImageStats, NetworkStatistics, RedshiftStats, SpectrumStats
from img2spec.tasks import DiffusionTask, make_task
from img2spec.train import (
    CheckpointFiles,
    CheckpointOnSigterm,
    TrainingInterrupted,
    build_trainer,
    train_network,
)
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

from tests.workflow_rules import rule_outputs

TINY = network_hyperparameters(validate_config({})["training"])
RUN = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "auto", "num_workers": 0, "seed": 3}


def _hp(network, **changes):
    validation = {"val_sampler_steps": 2} if NETWORKS[network].is_diffusion else {}
    short = {"batch_size": 8, "val_every_steps": 5, "checkpoint_every_steps": 5, **validation, **changes}
    return dataclasses.replace(TINY[network], **short)


class _SigtermAt(Callback):
    """Sends this process a SIGTERM after training step ``step``, as a cluster's pre-emption warning would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.fixture()
def sigterm_at(monkeypatch):
    """Make the next training receive a SIGTERM after the given step."""

    def arm(step: int) -> None:
        def build(*args, **kwargs):
            trainer = build_trainer(*args, **kwargs)
            trainer.callbacks.insert(0, _SigtermAt(step))
            return trainer

        monkeypatch.setattr(train_module, "build_trainer", build)

    previous = signal.getsignal(signal.SIGTERM)
    yield arm
    signal.signal(signal.SIGTERM, previous)
    monkeypatch.undo()


@pytest.mark.parametrize("network", ["cdm_lr", "contrastive_lr"])
def test_resume_reproduces_the_next_steps_bit_for_bit(network, tiny_dataset, tmp_path, sigterm_at, monkeypatch):
    torch.set_num_threads(1)
    hp = _hp(network, max_steps=10)
    straight = train_network(
        str(tiny_dataset), network, hp, RUN, CheckpointFiles.in_folder(tmp_path / "a"), progress=False
    )
    assert not (tmp_path / "a" / "resume").exists()  # a finished training leaves no resume state
    sigterm_at(4)
    with pytest.raises(TrainingInterrupted, match=f"{network}: stopped at step 4 of 10"):
        train_network(str(tiny_dataset), network, hp, RUN, CheckpointFiles.in_folder(tmp_path / "b"), progress=False)
    assert (tmp_path / "b" / "resume" / "last.ckpt").exists() and not (tmp_path / "b" / "last.ckpt").exists()
    monkeypatch.undo()
    resumed = train_network(
        str(tiny_dataset), network, hp, RUN, CheckpointFiles.in_folder(tmp_path / "b"), progress=False
    )
    assert resumed.global_step == straight.global_step == 10
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert {"train_loss", "val_loss"} <= set(metrics.columns)
    assert (tmp_path / "a" / "best.ckpt").exists() and (tmp_path / "a" / "last.ckpt").exists()


def flat_statistics() -> NetworkStatistics:
    """Standardisation that leaves spectra and images as they are."""
    flat = SpectrumStats(np.zeros(563, np.float32), np.ones(563, np.float32), -3.0, 3.0)
    return NetworkStatistics(flat, ImageStats(None, np.zeros(5), np.ones(5)), None, RedshiftStats(0.1, 0.03))


def test_non_finite_loss_stops_with_a_clear_error(tiny_dataset):
    hp = _hp("cdm_lr", max_steps=2)
    task = DiffusionTask("cdm_lr", hp, flat_statistics())
    task.schedule.training_loss = lambda *args, **kwargs: torch.tensor(float("nan"))
    batch = {
        "spectrum": torch.zeros(2, 563),
        "images": torch.zeros(2, 5, 64, 64),
        "weight": torch.ones(2, 563),
        "redshift": torch.full((2,), 0.1),
    }
    with pytest.raises(FloatingPointError, match="cdm_lr: training loss is nan at step 0"):
        task.training_step(batch, 0)


def test_sigterm_writes_a_checkpoint_once_and_stops_unless_training_is_done(tmp_path):
    callback = CheckpointOnSigterm(tmp_path / "last.ckpt")
    saved = []
    trainer = SimpleNamespace(world_size=1, global_step=3, max_steps=10, save_checkpoint=saved.append)
    callback.on_train_batch_end(trainer, None, None, None, 0)
    assert saved == []
    callback._note(signal.SIGTERM, None)
    with pytest.raises(SIGTERMException):
        callback.on_train_batch_end(trainer, None, None, None, 0)
    callback.on_train_batch_end(trainer, None, None, None, 1)
    assert saved == [tmp_path / "last.ckpt"] and callback.saved_at == 3
    finishing = CheckpointOnSigterm(tmp_path / "other.ckpt")
    finishing._note(signal.SIGTERM, None)
    finishing.on_train_batch_end(SimpleNamespace(world_size=1, global_step=10, max_steps=10), None, None, None, 9)
    assert finishing.saved_at is None  # the last step: the training finishes instead


def test_nan_validation_metric_is_never_best():
    hp = _hp("cdm_lr", max_steps=5)
    task = DiffusionTask("cdm_lr", hp, flat_statistics())
    with torch.no_grad():
        next(task.ema.unet.out.parameters()).fill_(float("nan"))
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    batch = {
        "spectrum": torch.zeros(2, 563),
        "images": torch.zeros(2, 5, 64, 64),
        "weight": torch.ones(2, 563),
        "redshift": torch.full((2,), 0.1),
        "index": torch.arange(2),
    }
    task.on_validation_epoch_start()
    task.validation_step(batch, 0)
    task.on_validation_epoch_end()
    assert torch.isinf(logged["val_mse"])  # NaN would stay "best" under mode=min; inf never does


def test_resume_keeps_the_metrics_history_and_other_settings_start_afresh(
    tiny_dataset, tmp_path, sigterm_at, monkeypatch
):
    hp = _hp("contrastive_lr", max_steps=10)
    sigterm_at(6)
    with pytest.raises(TrainingInterrupted):
        train_network(str(tiny_dataset), "contrastive_lr", hp, RUN, CheckpointFiles.in_folder(tmp_path), progress=False)
    monkeypatch.undo()
    train_network(str(tiny_dataset), "contrastive_lr", hp, RUN, CheckpointFiles.in_folder(tmp_path), progress=False)
    steps = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["val_loss"])["step"].tolist()
    assert steps == [0, 4, 9]
    sigterm_at(2)
    with pytest.raises(TrainingInterrupted):
        train_network(str(tiny_dataset), "contrastive_lr", hp, RUN, CheckpointFiles.in_folder(tmp_path), progress=False)
    monkeypatch.undo()
    logged = []
    # the saved state belongs to another learning rate
    train_network(
        str(tiny_dataset),
        "contrastive_lr",
        _hp("contrastive_lr", max_steps=10, learning_rate=5e-4),
        RUN,
        CheckpointFiles.in_folder(tmp_path),
        progress=False,
        log=logged.append,
    )
    assert any("starting afresh" in line for line in logged)
    assert pd.read_csv(tmp_path / "metrics.csv")["step"].min() == 0


def test_checkpoint_files_are_named_as_the_training_rule_declares_them(tmp_path):
    declared = rule_outputs("train", tmp_path, network="cdm_lr")
    assert CheckpointFiles.in_folder(tmp_path)._asdict() == {name: declared[name] for name in CheckpointFiles._fields}


def test_a_network_refuses_the_other_kinds_hyperparameters():
    with pytest.raises(
        TypeError, match="cdm_lr: hyperparameters of type ContrastiveHyperparameters; it takes Diffusion"
    ):
        make_task("cdm_lr", TINY["contrastive_lr"], flat_statistics())
    assert isinstance(make_task("cdm_lr", TINY["cdm_lr"], flat_statistics()), DiffusionTask)


def test_the_residual_is_drawn_in_its_own_units_and_sampled_back_in_the_spectrum_s():
    """``residual_standardisation: running``: the scale follows the per-pixel RMS of the residual on the
    regression centre (here a spread of 0.2 on half the pixels, 0.05 on the rest, masked pixels left alone),
    and a draw is the regression centre plus the sampler's output times that scale."""
    hp = _hp("cdm_lr", max_steps=5, residual_standardisation="running")
    task = DiffusionTask("cdm_lr", hp, flat_statistics())
    generator = torch.Generator().manual_seed(0)
    spread = torch.where(torch.arange(563) < 280, 0.2, 0.05)
    weight = torch.ones(64, 563)
    weight[:, -3:] = 0
    task.train()
    batch = {"images": torch.zeros(64, 5, 64, 64), "weight": weight, "redshift": torch.full((64,), 0.1)}
    with torch.no_grad():
        bound = task._bind(task.net, batch)  # the untrained head's mean is 0
    diffusion_loss = task.schedule.training_loss
    task.schedule.training_loss = lambda *args, **kwargs: torch.tensor(0.0)  # only the scale is at stake
    for _ in range(1000):
        batch["spectrum"] = torch.randn(64, 563, generator=generator) * spread
        task._loss(task.net, bound, batch, generator)
    task.schedule.training_loss = diffusion_loss
    scale = task.residual_scale
    np.testing.assert_allclose(scale[:280].mean().item(), 0.2, rtol=0.03)
    np.testing.assert_allclose(scale[300:-3].mean().item(), 0.05, rtol=0.03)
    assert torch.all(scale[-3:] == 1.0)  # never seen: as initialised

    class Sampler:  # the sampler's output in residual units: 1 everywhere
        @staticmethod
        def sample(sampler, bound, shape, *args):
            return torch.ones(shape)

    task.schedule = Sampler()
    with torch.no_grad():
        bound = task._bind(task.ema, batch)
        np.testing.assert_allclose(task.draw(bound), bound.centre + scale, rtol=1e-6)
    unscaled = DiffusionTask("cdm_lr", _hp("cdm_lr", max_steps=5, residual_standardisation="none"), flat_statistics())
    unscaled.train()
    with torch.no_grad():
        unscaled._loss(unscaled.net, unscaled._bind(unscaled.net, batch), batch, generator)
    assert torch.all(unscaled.residual_scale == 1.0)  # 'none' keeps the population's units


def test_the_regression_head_s_absolute_error_enters_the_loss_times_its_loss_weight():
    """CDM_lr's loss is the diffusion loss plus ``regression.loss_weight`` × the centre's mean absolute error
    over unmasked pixels (``statistic: median``), so that the weight sets how much the shared image encoder
    learns the centre (the tiny preset weighs it 4×, issue 25)."""
    hp = _hp("cdm_lr", max_steps=5)
    assert hp.regression is not None and hp.regression.statistic == "median"
    task = DiffusionTask("cdm_lr", hp, flat_statistics())
    task.schedule.training_loss = lambda *args, **kwargs: torch.tensor(0.0)
    spectrum = torch.linspace(-1.0, 1.0, 563).repeat(4, 1)
    weight = torch.ones(4, 563)
    weight[:, 500:] = 0  # masked pixels do not count
    batch = {
        "images": torch.zeros(4, 5, 64, 64),
        "spectrum": spectrum,
        "weight": weight,
        "redshift": torch.full((4,), 0.1),
    }
    generator = torch.Generator().manual_seed(0)
    losses = {}
    with torch.no_grad():
        for loss_weight in (1.0, 4.0):
            task.hp = dataclasses.replace(hp, regression=dataclasses.replace(hp.regression, loss_weight=loss_weight))
            bound = task._bind(task.net, batch)  # the untrained head's centre is 0
            losses[loss_weight] = task._loss(task.net, bound, batch, generator).item()
    mean_absolute_error = spectrum[:, :500].abs().mean().item()
    np.testing.assert_allclose(losses[4.0] - losses[1.0], 3 * mean_absolute_error, rtol=1e-5)
