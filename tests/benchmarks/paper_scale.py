"""Paper-scale memory benchmark (issue 14): peak memory and time of each data stage at two survey sizes.

A fast synthetic writer replicates a small real mock survey (its spec-lite FITS files, catalog rows
and image cubes, under new plate/fibre numbers and specObjIDs) to N objects in the pipeline's own
file formats; then each stage runs in a fresh process whose peak memory it records (:class:`PeakMemory`):

- ``preprocess``: spec-lite FITS → ``spectra.h5`` (:func:`preprocess_catalog_spectra`);
- ``dataset``: spectra + cubes + catalog → ``dataset.h5`` (:func:`build_dataset`);
- ``baselines``: the ``mean`` and ``knn`` baselines of the test split;
- ``training_start``: every network's statistics over the training split and two training steps;
- ``epoch``: one full epoch of CDM_sr's training data loading (images, spectra, low-resolution
  condition, augmentation), no network;
- ``predict``: the test split predicted by the four (two-step) networks with few, cheap draws.

Peak memory must not grow with N; time is extrapolated linearly to the paper's 270,621 objects.

Run:  OMP_NUM_THREADS=1 python tests/benchmarks/paper_scale.py --sizes 15000 30000 --out results/benchmarks/paper_scale.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from report import emit  # tests/benchmarks/report.py

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

PAPER_OBJECTS = 270_621
SEED_GALAXIES = 256
N_VAL, N_TEST = 128, 256
STAGES = ("preprocess", "dataset", "baselines", "training_start", "epoch", "predict")


def write_synthetic_survey(out: Path, n_objects: int, seed_dir: Path) -> None:
    """Replicate the mock survey in ``seed_dir`` to ``n_objects`` objects below ``out`` (catalog.csv, spectra/, cubes.npz)."""
    from astropy.io import fits
    from img2spec.catalog import read_catalog
    from img2spec.cubes import open_cube_file, write_cube_archive
    from img2spec.io import SpecLiteWriter, encode_specobjid, spectrum_path

    catalog = read_catalog(seed_dir / "catalog.csv")
    seeds = []
    for row in catalog.itertuples(index=False):
        with fits.open(spectrum_path(seed_dir / "spectra", row.plate, row.mjd, row.fiberID)) as hdul:
            coadd, specobj = hdul[1].data, hdul[2].data
            seeds.append(
                (
                    {name: np.array(coadd[name]) for name in coadd.names},
                    {
                        name: specobj[name][0].item() if hasattr(specobj[name][0], "item") else specobj[name][0]
                        for name in specobj.names
                    },
                )
            )
    index = np.arange(n_objects) % len(catalog)
    plate, fiber, mjd = 3000 + np.arange(n_objects) // 1000, 1 + np.arange(n_objects) % 1000, np.full(n_objects, 55000)
    ids = np.array([encode_specobjid(p, f, m) for p, f, m in zip(plate, fiber, mjd)], dtype=np.int64)
    big = catalog.iloc[index].reset_index(drop=True)
    big["specObjID"], big["plate"], big["fiberID"], big["mjd"] = ids, plate, fiber, mjd
    big.to_csv(out / "catalog.csv", index=False)

    writer = SpecLiteWriter()
    for i in range(n_objects):
        coadd, specobj = seeds[index[i]]
        specobj = specobj | {
            "SPECOBJID": int(ids[i]),
            "PLATE": int(plate[i]),
            "FIBERID": int(fiber[i]),
            "MJD": int(mjd[i]),
        }
        specobj = {k: v.decode() if isinstance(v, bytes) else v for k, v in specobj.items()}
        writer.write(
            spectrum_path(out / "spectra", plate[i], mjd[i], fiber[i]),
            coadd["loglam"],
            coadd["flux"],
            coadd["ivar"],
            coadd["and_mask"],
            specobj,
            sky=coadd["sky"],
            model=coadd["model"],
            wdisp=coadd["wdisp"],
        )

    with open_cube_file(seed_dir / "cubes.npz") as seed_cubes:
        pixels = seed_cubes.read(np.arange(len(seed_cubes.specobjid)))
        order = {int(s): i for i, s in enumerate(seed_cubes.specobjid)}
        labels_dtype = seed_cubes.labels.dtype
    cube_rows = np.array([order[int(s)] for s in catalog["specObjID"]])
    cube_npy = out / "cube.npy"
    cubes = np.lib.format.open_memmap(cube_npy, mode="w+", dtype=np.float32, shape=(n_objects, 64, 64, 5))
    for start in range(0, n_objects, 1024):
        stop = min(start + 1024, n_objects)
        cubes[start:stop] = np.moveaxis(pixels[cube_rows[index[start:stop]]], 1, -1)
    cubes.flush()
    del cubes
    labels = np.zeros(n_objects, labels_dtype)
    labels["specObjID"], labels["z"], labels["ra"], labels["dec"] = ids, big["z"], big["ra"], big["dec"]
    write_cube_archive(out / "cubes.npz", cube_npy, labels)
    cube_npy.unlink()


def run_stage(stage: str, work: Path) -> dict:
    """Run one stage in this process; return what it measured besides time and memory."""
    import torch

    torch.set_num_threads(1)
    from img2spec.catalog import preprocess_catalog_spectra, read_catalog
    from img2spec.dataset import DatasetSettings, build_dataset
    from img2spec.preprocessing import PreprocessingSettings

    quiet = lambda _: None
    dataset = work / "dataset.h5"
    if stage == "preprocess":
        rejects = preprocess_catalog_spectra(
            read_catalog(work / "catalog.csv"),
            work / "spectra",
            PreprocessingSettings.defaults(),
            work / "spectra.h5",
            log=quiet,
        )
        rejects.to_csv(work / "spectra_rejects.csv", index=False)
        return {"rejected": len(rejects)}
    if stage == "dataset":
        import pandas as pd
        from img2spec.cubes import open_cube_file

        with open_cube_file(work / "cubes.npz") as cubes:
            summary, _ = build_dataset(
                read_catalog(work / "catalog.csv"),
                work / "spectra.h5",
                cubes,
                DatasetSettings.defaults(n_val=N_VAL, n_test=N_TEST),
                dataset,
                prior_rejects=pd.read_csv(work / "spectra_rejects.csv"),
                log=quiet,
            )
        return {"objects": summary["n_objects"]}
    if stage == "baselines":
        from img2spec.baselines import BaselineSettings, photometric_baselines

        return {"test_galaxies": len(photometric_baselines(dataset, BaselineSettings.defaults())["specobjid"])}
    if stage == "training_start":
        from img2spec.train import CheckpointFiles, train_network

        from tests.smoke_networks import two_step_networks

        run = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "auto", "num_workers": 0, "seed": 0}
        for name, hp in two_step_networks().items():
            train_network(
                str(dataset), name, hp, run, CheckpointFiles.in_folder(work / "models" / name), progress=False
            )
        return {}
    if stage == "epoch":
        from img2spec.train import training_parts

        from tests.smoke_networks import two_step_networks

        hp = dataclasses.replace(two_step_networks()["cdm_sr"], batch_size=64)
        loader = training_parts(str(dataset), "cdm_sr", hp)[0].train_dataloader()
        started, n_items = time.perf_counter(), 0
        for batch in loader:
            n_items += batch["images"].shape[0]
        return {"items": n_items, "items_per_second": round(n_items / (time.perf_counter() - started), 1)}
    if stage == "predict":
        from img2spec.inference import InferenceSettings, predict_dataset
        from img2spec.networks import NETWORK_NAMES

        checkpoints = {name: work / "models" / name / "last.ckpt" for name in NETWORK_NAMES}
        settings = InferenceSettings.defaults(
            k_lr=2, keep_lr=1, k_sr=2, sampler="ddim", steps=2, batch_galaxies=16, calibration_galaxies=0
        )
        summary = predict_dataset(
            dataset,
            checkpoints,
            settings,
            work / "predictions.h5",
            work / "fits",
            work / "predictions.json",
            work / "predictions.png",
        )
        return {"galaxies_per_second": summary["galaxies_per_second"]}
    raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak resident memory [MB] of this process while it runs a stage, two ways.

    ``anonymous``: the largest RssAnon seen by a thread sampling every 50 ms, the memory the stage
    needs (arrays, caches).  ``resident``: VmHWM, which also counts pages of memory-mapped input
    files (the cube file), which the kernel drops under pressure.  Not ``getrusage``'s
    ``ru_maxrss``: Linux carries that over fork and exec, so a stage would report the benchmark
    driver's peak whenever it is higher than its own.
    """

    def __init__(self) -> None:
        self.anonymous_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.anonymous_kb = max(self.anonymous_kb, _status_kb("RssAnon"))

    def result(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.anonymous_kb = max(self.anonymous_kb, _status_kb("RssAnon"))
        return {"peak_anon_mb": round(self.anonymous_kb / 1024, 1), "peak_mb": round(_status_kb("VmHWM") / 1024, 1)}


def measure(stage: str, work: Path) -> dict:
    """Run ``stage`` in a fresh interpreter; its wall time [s] and peak resident memory [MB]."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--work", str(work)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[15000, 30000])
    parser.add_argument("--out", type=Path, help="markdown table to write")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        memory = PeakMemory()
        measured = run_stage(args.stage, args.work)
        print(json.dumps(measured | memory.result()))
        return

    from img2spec.io import SurveyFiles
    from img2spec.mock.products import generate
    from img2spec.mock.survey import MockSettings, MockSurvey
    from img2spec.templates import fetch_wheel, library_from_wheel
    from throughput import MANGADAP

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seed_dir = Path(tmp) / "seed"
        library = library_from_wheel(fetch_wheel(*MANGADAP, REPO / "resources" / "downloads"), "miuscat")
        generate(
            MockSurvey.from_library(library, MockSettings.defaults(n_galaxies=SEED_GALAXIES, batch_size=SEED_GALAXIES)),
            SurveyFiles.in_folder(seed_dir),
        )
        for n in args.sizes:
            work = Path(tmp) / f"n{n}"
            (work / "spectra").mkdir(parents=True)
            started = time.perf_counter()
            write_synthetic_survey(work, n, seed_dir)
            print(f"N = {n}: synthetic survey written in {time.perf_counter() - started:.0f} s", flush=True)
            for stage in STAGES:
                result = measure(stage, work)
                rows.append({"objects": n, "stage": stage} | result)
                print(json.dumps(rows[-1]), flush=True)
            for path in (work / "spectra",):
                subprocess.run(["rm", "-rf", str(path)], check=True)
            (work / "spectra.h5").unlink()
            dataset_bytes = (work / "dataset.h5").stat().st_size
            rows.append(
                {
                    "objects": n,
                    "stage": "dataset.h5 size",
                    "peak_mb": None,
                    "seconds": None,
                    "mb": round(dataset_bytes / 2**20),
                }
            )
            subprocess.run(["rm", "-rf", str(work)], check=True)
    lines = [
        "| stage | "
        + " | ".join(f"N = {n}: peak anonymous MB / peak resident MB, s" for n in args.sizes)
        + f" | s at N = {PAPER_OBJECTS:,} (linear) |",
        "|---|" + "---|" * (len(args.sizes) + 1),
    ]
    for stage in STAGES:
        cells = [next(r for r in rows if r["objects"] == n and r["stage"] == stage) for n in args.sizes]
        largest = cells[-1]
        scaled = (
            largest["seconds"] * PAPER_OBJECTS / args.sizes[-1] if stage not in ("predict",) else largest["seconds"]
        )
        lines.append(
            f"| {stage} | "
            + " | ".join(f"{c['peak_anon_mb']:.0f} / {c['peak_mb']:.0f}, {c['seconds']:.0f}" for c in cells)
            + f" | {scaled:,.0f} |"
        )
    sizes = [next(r for r in rows if r["objects"] == n and r["stage"] == "dataset.h5 size")["mb"] for n in args.sizes]
    lines.append(
        "| dataset.h5 [MB] | "
        + " | ".join(str(s) for s in sizes)
        + f" | {sizes[-1] * PAPER_OBJECTS / args.sizes[-1]:,.0f} |"
    )
    lines += [
        "",
        (
            f"Test split {N_TEST} galaxies at every size (prediction time does not scale with N); one torch thread; "
            "peak anonymous = largest RssAnon sampled every 50 ms (what the stage needs); peak resident = VmHWM, "
            "which adds pages of memory-mapped inputs that the kernel can drop."
        ),
        "",
        "Raw rows:",
        "",
        *(f"    {json.dumps(r)}" for r in rows),
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
