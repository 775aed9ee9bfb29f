"""Training runs: the Lightning trainer, its callbacks, and resume state that survives the workflow.

Lightning gives CPU, one GPU, DDP over several processes, bf16 mixed precision, checkpointing and
resume; the networks are Lightning modules of :mod:`img2spec.tasks`.  What is ours here: a SIGTERM
checkpoint that several processes agree on, the epoch position in checkpoints, and a training that
survives the workflow.

Snakemake deletes a job's declared outputs before it runs the job again, so everything a resumed
training needs lives in ``<out_dir>/resume/`` (:data:`RESUME_DIR`), which no rule declares: the
periodic and SIGTERM checkpoints, the metrics so far and a fingerprint of what is trained.  Only a
finished training writes the declared ``last.ckpt``, ``best.ckpt`` and ``metrics.csv`` and removes
the resume state; an interrupted one raises :class:`TrainingInterrupted` (a non-zero exit, so the
workflow reruns it), and the rerun continues from the saved step when the fingerprint still matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.exceptions import SIGTERMException

from .data import (
    ResumableLoader,
    SpectraDataModule,
)
from .distributed import (
    GlobalBatchNorm,
    local_rank,
)
from .networks import DiffusionHyperparameters, NetworkHyperparameters
from .tasks import ContrastiveTask, DiffusionTask, make_task, network_statistics, target_key

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
