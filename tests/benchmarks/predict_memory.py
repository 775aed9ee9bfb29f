"""Peak memory of predicting a cube file (``predict_images``) at several file sizes.

Run after the default DAG (it needs ``results/dataset/dataset.h5`` and ``results/models``):

    OMP_NUM_THREADS=1 python tests/benchmarks/predict_memory.py --sizes 500 2000

Each size is a cube file of the dataset's cubes repeated under new ids, predicted in its own process
with cheap sampling settings (the memory of streaming does not depend on them); the table gives the
file size, wall time and the process's peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from img2spec.cubes import write_cube_file
from img2spec.dataset import DatasetFile
from img2spec.inference import InferenceSettings, predict_cube_file
from img2spec.networks import NETWORK_NAMES
from report import emit

CHEAP = InferenceSettings.defaults(k_lr=2, keep_lr=1, k_sr=2, steps=2, sampler="ddim", batch_galaxies=32)


def status_mb(field: str) -> float:
    """A memory field of this process's /proc status [MB] (e.g. VmHWM, RssAnon)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_file(dataset: Path, n: int, path: Path) -> float:
    """A cube file of ``n`` cubes (the dataset's, repeated, with new ids); its size [MB]."""
    with DatasetFile(dataset) as data:
        rows = data.rows("test")
        cubes = np.moveaxis(data.read("images", rows), 1, -1)
    index = np.arange(n) % len(cubes)
    labels = np.rec.fromarrays([np.arange(1, n + 1, dtype=np.int64)], names="specObjID")
    write_cube_file(path, cubes[index], labels)
    return path.stat().st_size / 1e6


def run(args: tuple) -> tuple[float, float, float, int]:
    cubes, dataset, models, out = args
    peak_anon = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak_anon[0] = max(peak_anon[0], status_mb("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    n = predict_cube_file(
        cubes,
        dataset,
        {name: models / name / "last.ckpt" for name in NETWORK_NAMES},
        CHEAP,
        out / "pred.h5",
        out / "rejects.csv",
        chunk_galaxies=256,
    )
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, peak_anon[0], status_mb("VmHWM"), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("results/dataset/dataset.h5"))
    parser.add_argument("--models", type=Path, default=Path("results/models"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = ["| cubes | file [MB] | wall [s] | peak RssAnon [MB] | VmHWM [MB] |", "|---|---|---|---|---|"]
    context = multiprocessing.get_context("spawn")  # a fresh process per size: VmHWM is per process
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            size_mb = write_file(args.dataset, n, folder / "cubes.npz")
            with context.Pool(1) as pool:
                seconds, anon, hwm, predicted = pool.apply(
                    run, ((folder / "cubes.npz", args.dataset, args.models, folder),)
                )
            lines.append(f"| {predicted} | {size_mb:.0f} | {seconds:.0f} | {anon:.0f} | {hwm:.0f} |")
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
