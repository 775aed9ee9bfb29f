"""The tiny mock DAG that the workflow tests run: its configuration and how it is started.

One run of it is shared by the tests that need a finished DAG (fixture ``tiny_run`` in
``tests/conftest.py``): the end-to-end test checks its products and the SLURM test compares a
cluster run with it, so CI pays for one local run, not two.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from img2spec.networks import NETWORK_NAMES

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_CACHE = REPO / "resources" / "downloads"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
FEW_STEPS = {"max_steps": 4, "batch_size": 8, "val_every_steps": 4, "checkpoint_every_steps": 4}
#: The network the SLURM test pre-empts: it trains long enough to be caught mid-run.
PRE_EMPTED = "contrastive_lr"
TINY = {
    "templates": {"download_dir": str(TEMPLATE_CACHE)},
    "mock": {"n_galaxies": 40, "batch_size": 40},
    "dataset": {"n_val": 4, "n_test": 6},
    "training": {
        "networks": {name: dict(FEW_STEPS) for name in NETWORK_NAMES}
        | {PRE_EMPTED: {"max_steps": 400, "batch_size": 8, "val_every_steps": 100, "checkpoint_every_steps": 20}}
    },
    "inference": {"k_lr": 2, "keep_lr": 1, "k_sr": 2, "steps": 2},
    "predict_images": {"mockcubes": "resources/mock/cubes.npz"},
    "evaluation": {
        "chunk_size": 4,
        "ppxf": {"bootstrap": 1},
        "firefly": {"bootstrap": 1, "beam": 2, "max_components": 3},
        "lines": {"draws": 50},
    },
    "ablation": {"resolutions": [64, 4], "band_variants": ["1px_mean"], "inference": {"k_lr": 1, "k_sr": 1}},
}


def make_workdir(folder: Path, config: dict) -> Path:
    """``folder`` set up to run the workflow: the shipped ``config/`` and ``config`` as ``tiny.yaml``."""
    shutil.copytree(REPO / "config", folder / "config")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(config))
    return folder


def run_snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the repository's workflow in ``folder`` (output captured, 15 minutes at most)."""
    command = SNAKEMAKE + ["--snakefile", str(REPO / "workflow" / "Snakefile")]
    return subprocess.run(command + list(args), cwd=folder, capture_output=True, text=True, timeout=900, check=False)


@dataclass(frozen=True)
class TinyRun:
    """A finished run of the tiny DAG: its folder, Snakemake's output and its wall time [s]."""

    folder: Path
    result: subprocess.CompletedProcess
    seconds: float


def run_tiny_dag(folder: Path) -> TinyRun:
    """The default targets of :data:`TINY` on 2 cores in ``folder``."""
    make_workdir(folder, TINY)
    started = time.monotonic()
    result = run_snakemake(folder, "--cores", "2", "--configfile", "tiny.yaml")
    return TinyRun(folder, result, time.monotonic() - started)
