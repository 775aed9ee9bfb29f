"""One against two data-parallel CPU processes (DDP, gloo) on the same global batch: loss agreement and time per step.

Run:  python tests/benchmarks/data_parallel.py results/dataset/dataset.h5 [--steps 60] [--batch 32]
Trains each network of ``--networks`` with the tiny preset for ``--steps`` steps with one process and
with two (one torch thread each), through ``tests/ddp_worker.py``, and prints the largest relative
difference of the logged training and validation losses and of the weights' checksum, and the median
seconds per optimizer step (steps after the first five; validation and checkpoints excluded).
For scale, the same differences between one process with one thread and one with two: the same
arithmetic in another order, which training amplifies from float rounding to percents over tens of
steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def train(
    dataset: str, network: str, out: Path, devices: int, steps: int, batch: int, threads: int = 1
) -> tuple[pd.DataFrame, list]:
    """Metrics and per-rank reports of one training by ``tests/ddp_worker.py``."""
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "tests.ddp_worker", dataset, network, str(out), str(devices), str(steps)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "DDP_WORKER_THREADS": str(threads)}
    subprocess.run([*command, str(batch)], cwd=REPO, env=environment, check=True, capture_output=True)
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(devices)]
    return pd.read_csv(out / "metrics.csv"), ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--networks", nargs="+", default=["cdm_lr", "contrastive_sr"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"global batch {args.batch}, {args.steps} steps")
    header = ("network", "2 proc: loss", "val_loss", "weights", "2 threads: loss", "val_loss", "weights")
    print(f"{header[0]:<16}" + "".join(f"{h:>16}" for h in header[1:]) + f"{'s/step 1 proc':>15}{'2 proc':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        for network in args.networks:
            folder = Path(scratch) / network
            one, (single,) = train(args.dataset, network, folder / "one", 1, args.steps, args.batch)
            two, (first, second) = train(args.dataset, network, folder / "two", 2, args.steps, args.batch)
            threaded, (reference,) = train(args.dataset, network, folder / "threads", 1, args.steps, args.batch, 2)
            assert first["weights"] == second["weights"], "the ranks' weights differ"
            differences = []
            for metrics, rank in ((two, first), (threaded, reference)):
                for column in ("train_loss", "val_loss"):
                    differences.append(np.nanmax(np.abs(metrics[column] / one[column] - 1)))
                differences.append(abs(rank["weights"] / single["weights"] - 1))
            seconds = [np.median(rank["step_seconds"][5:]) for rank in (single, first)]
            print(
                f"{network:<16}"
                + "".join(f"{d:>16.1e}" for d in differences)
                + f"{seconds[0]:>15.3f}{seconds[1]:>8.3f}"
            )


if __name__ == "__main__":
    main()
