"""Train one tiny network with 1 or more CPU processes (DDP, gloo), as the data-parallel tests run it.

Run as ``python -m tests.ddp_worker DATASET NETWORK OUT DEVICES MAX_STEPS [BATCH]``; Lightning starts
the copies of the other ranks with the same command.  Besides the training's own files in ``OUT``,
every rank writes ``rank{r}.json``: a checksum of its EMA (diffusion) or model (contrastive) weights,
the epoch and dataset rows of each of its batches, its seconds per step, the checkpoint files it
wrote and its exit status.
``DDP_WORKER_THREADS`` sets the torch threads of each process (1).  The exit status is 3 when the training was interrupted (SIGTERM), its state saved for a rerun.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch
from img2spec.config import network_hyperparameters, validate_config
from img2spec.networks import NETWORKS
from img2spec.train import CheckpointFiles, TrainingInterrupted, train_network
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins.io import TorchCheckpointIO

TINY = network_hyperparameters(validate_config({})["training"])


def tiny_hyperparameters(network: str, max_steps: int, batch_size: int = 8):
    """The tiny preset, shortened; the global batch is ``batch_size`` whatever the number of processes."""
    validation = {"val_sampler_steps": 2} if NETWORKS[network].is_diffusion else {}
    return dataclasses.replace(
        TINY[network],
        batch_size=batch_size,
        max_steps=max_steps,
        val_every_steps=4,
        checkpoint_every_steps=4,
        **validation,
    )


class _Record(Callback):
    """The dataset rows of each of this rank's training batches (by epoch) and the seconds per step."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[int]]] = []
        self.step_seconds: list[float] = []
        self._started = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append((trainer.current_epoch, [int(i) for i in batch["index"]]))
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_seconds.append(time.perf_counter() - self._started)


def main(dataset: str, network: str, out: str, devices: int, max_steps: int, batch_size: int = 8) -> int:
    torch.set_num_threads(int(os.environ.get("DDP_WORKER_THREADS", "1")))
    out_dir = Path(out)
    run = {
        "accelerator": "cpu",
        "devices": devices,
        "num_nodes": 1,
        "precision": "32-true",
        "num_workers": 0,
        "seed": 5,
    }
    writes: list[str] = []
    save = TorchCheckpointIO.save_checkpoint

    def recording_save(io, checkpoint, path, storage_options=None):
        writes.append(Path(path).name)
        return save(io, checkpoint, path, storage_options)

    TorchCheckpointIO.save_checkpoint = recording_save  # type: ignore[method-assign]
    record = _Record()
    import img2spec.train as train_module

    build = train_module.build_trainer

    def build_recording(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.insert(0, record)
        return trainer

    train_module.build_trainer = build_recording  # type: ignore[assignment]
    status, task = 0, None
    try:
        task = train_network(
            dataset,
            network,
            tiny_hyperparameters(network, max_steps, batch_size),
            run,
            CheckpointFiles.in_folder(out_dir),
            progress=False,
        )
    except TrainingInterrupted:
        status = 3
    rank = int(torch.distributed.get_rank()) if torch.distributed.is_initialized() else 0
    weights = None
    if task is not None:
        module = task.ema if hasattr(task, "ema") else task.model
        weights = float(sum(p.double().sum() * (i + 1) for i, p in enumerate(module.state_dict().values())))
    report = {
        "weights": weights,
        "batches": record.batches,
        "step_seconds": record.step_seconds,
        "writes": writes,
        "status": status,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    return status


if __name__ == "__main__":
    dataset, network, out, devices, max_steps, *batch = sys.argv[1:]
    sys.exit(main(dataset, network, out, int(devices), int(max_steps), *map(int, batch)))
