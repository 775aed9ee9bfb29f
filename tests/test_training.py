"""The training engine: exact resume, NaN guard, SIGTERM checkpoint, metrics (issue 5)."""

from __future__ import annotations

import copy
import signal
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from img2spec.config import resolve_networks, validate_config
from img2spec.data import ImageStats
from img2spec.train import CheckpointOnSigterm, DiffusionTask, train_network

TINY = resolve_networks(validate_config({})["training"])
RUN = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "auto", "num_workers": 0, "seed": 3}


def _hp(network, **changes):
    hp = copy.deepcopy(TINY[network])
    hp.update(batch_size=8, val_every_steps=5, checkpoint_every_steps=5)
    if network.startswith("cdm"):
        hp["val_sampler_steps"] = 2
    hp.update(changes)
    return hp


@pytest.mark.parametrize("network", ["cdm_lr", "contrastive_lr"])
def test_resume_reproduces_the_next_steps_bit_for_bit(network, tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    hp = _hp(network, max_steps=10)
    straight = train_network(str(tiny_dataset), network, hp, RUN, tmp_path / "a", progress=False)
    train_network(str(tiny_dataset), network, _hp(network, max_steps=5), RUN, tmp_path / "b", progress=False)
    resumed = train_network(str(tiny_dataset), network, hp, RUN, tmp_path / "b", resume=tmp_path / "b" / "last.ckpt", progress=False)
    assert resumed.global_step == straight.global_step == 10
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert {"train_loss", "val_loss"} <= set(metrics.columns)
    assert (tmp_path / "a" / "best.ckpt").exists() and (tmp_path / "a" / "last.ckpt").exists()


def test_non_finite_loss_stops_with_a_clear_error(tiny_dataset):
    hp = _hp("cdm_lr", max_steps=2)
    flat = {"mean": [0.0] * 563, "std": [1.0] * 563, "low": -3.0, "high": 3.0}
    task = DiffusionTask("cdm_lr", hp, flat, ImageStats(None, np.zeros(5), np.ones(5)).to_dict())
    task.schedule.training_loss = lambda *args, **kwargs: torch.tensor(float("nan"))
    batch = {"spectrum": torch.zeros(2, 563), "images": torch.zeros(2, 5, 64, 64), "weight": torch.ones(2, 563)}
    with pytest.raises(FloatingPointError, match="cdm_lr: training loss is nan at step 0"):
        task.training_step(batch, 0)


def test_sigterm_writes_a_checkpoint_and_stops(tmp_path):
    callback = CheckpointOnSigterm(tmp_path / "last.ckpt")
    saved = []
    trainer = SimpleNamespace(is_global_zero=True, world_size=1, should_stop=False, save_checkpoint=saved.append)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        callback.on_fit_start(trainer, None)
        signal.raise_signal(signal.SIGTERM)
        callback.on_train_batch_end(trainer, None, None, None, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert saved == [tmp_path / "last.ckpt"] and trainer.should_stop


def test_nan_validation_metric_is_never_best():
    hp = _hp("cdm_lr", max_steps=5)
    flat = {"mean": [0.0] * 563, "std": [1.0] * 563, "low": -3.0, "high": 3.0}
    task = DiffusionTask("cdm_lr", hp, flat, ImageStats(None, np.zeros(5), np.ones(5)).to_dict())
    with torch.no_grad():
        next(task.ema.unet.out.parameters()).fill_(float("nan"))
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    batch = {"spectrum": torch.zeros(2, 563), "images": torch.zeros(2, 5, 64, 64), "weight": torch.ones(2, 563)}
    task.validation_step(batch, 0)
    assert torch.isinf(logged["val_mse"])  # NaN would stay "best" under mode=min; inf never does


def test_resume_keeps_the_metrics_history(tiny_dataset, tmp_path):
    train_network(str(tiny_dataset), "contrastive_lr", _hp("contrastive_lr", max_steps=5), RUN, tmp_path, progress=False)
    train_network(str(tiny_dataset), "contrastive_lr", _hp("contrastive_lr", max_steps=10), RUN, tmp_path,
                  resume=tmp_path / "last.ckpt", progress=False)
    steps = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["val_loss"])["step"].tolist()
    assert steps == [0, 4, 9]
