"""Wall time of the default prediction against ``inference.batch_galaxies`` and torch threads.

Run after the default DAG (it needs ``results/dataset/dataset.h5`` and ``results/models``):

    python tests/benchmarks/predict_batching.py --galaxies 16 --batches 1 2 4 16 --threads 1 2

Each row predicts the same validation galaxies with the default settings but one batch size and
thread count, in this process; the predictions do not depend on either
(``tests/test_inference.py``), only the time does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from img2spec.dataset import DatasetFile
from img2spec.inference import InferenceSettings, TrainedModels, predict_spectra
from img2spec.networks import NETWORK_NAMES
from report import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("results/dataset/dataset.h5"))
    parser.add_argument("--models", type=Path, default=Path("results/models"))
    parser.add_argument("--galaxies", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    models = TrainedModels.from_dataset(
        {name: args.models / name / "last.ckpt" for name in NETWORK_NAMES}, args.dataset
    )
    with DatasetFile(args.dataset) as data:
        rows = data.rows("val")[: args.galaxies]
        ids, images = data.specobjid[rows], data.read("images", rows)
    lines = ["| threads | batch_galaxies | wall [s] | s per galaxy |", "|---|---|---|---|"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            start = time.perf_counter()
            predict_spectra(models, images, ids, InferenceSettings.defaults(batch_galaxies=batch))
            seconds = time.perf_counter() - start
            lines.append(f"| {threads} | {batch} | {seconds:.1f} | {seconds / ids.size:.2f} |")
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
