"""Sampler comparison on the same trained models and test galaxies, in one run.

Run:  python tests/benchmarks/samplers.py results/dataset/dataset.h5 results/models --galaxies 8
Prints network evaluations per galaxy, galaxies/s and quality (median Δ̄ and MSE against the
observed spectra) for ancestral-250, DPM-Solver++(2M) and DDIM at several step counts.  Rest-frame
networks place their spectra at their predicted redshift, the same for every sampler; their
quality is scored after the move to the observed redshift (as the evaluation does), so that the
redshift error, which no sampler changes, does not hide the samplers' differences.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from img2spec.dataset import SPLITS
from img2spec.inference import InferenceSettings, TrainedModels, network_evaluations, predict_spectra
from img2spec.metrics import band_coverage, mean_relative_deviation, mse
from img2spec.networks import NETWORK_NAMES
from img2spec.preprocessing import shift_to_redshift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("models", help="folder with <network>/last.ckpt")
    parser.add_argument("--galaxies", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--configs", default="ancestral:250,dpmpp_2m:10,dpmpp_2m:20,dpmpp_2m:50,ddim:10,ddim:20,ddim:50"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with h5py.File(args.dataset, "r") as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])[: args.galaxies]
        images, observed, mask = h5["images"][rows], h5["flux"][rows], h5["mask"][rows]
        ids, z_spec = h5["specobjid"][()][rows], h5["z_spec"][()][rows]
    models = TrainedModels.from_dataset(
        {n: Path(args.models) / n / "last.ckpt" for n in NETWORK_NAMES}, args.dataset, args.device
    )
    print(f"device {args.device}, {ids.size} galaxies, 15 → 3 → 5 candidates")
    print(
        f"{'sampler':<16}{'NFE/galaxy':>11}{'galaxies/s':>12}{'median Δ̄':>10}{'median MSE':>12}"
        f"{'median of candidates: Δ̄':>26}{'MSE':>8}{'16-84% coverage':>17}"
    )
    for config in args.configs.split(","):
        name, steps = config.split(":")
        settings = dataclasses.replace(
            InferenceSettings.defaults(), sampler=name, steps=int(steps), batch_galaxies=ids.size
        )
        start = time.perf_counter()
        result = predict_spectra(models, images, ids, settings)
        seconds = time.perf_counter() - start
        coverage = band_coverage(result["flux_p16"], result["flux_p84"], observed, mask)
        scored = mask
        if models.grids.frame == "rest":
            grids = models.grids
            for key in ("flux", "flux_p50"):
                moved, uncovered = shift_to_redshift(
                    grids.wave, result[key], result["z"], z_spec, grids.window, grids.window_frame
                )
                result[key], scored = np.nan_to_num(moved), scored | uncovered
        deviation = np.median(mean_relative_deviation(result["flux"], observed, scored))
        error = np.median(mse(result["flux"], observed, scored))
        median_deviation = np.median(mean_relative_deviation(result["flux_p50"], observed, scored))
        median_error = np.median(mse(result["flux_p50"], observed, scored))
        label = f"{name}-{steps}"
        print(
            f"{label:<16}{network_evaluations(settings, models.cdm_lr.schedule, models.cdm_sr.schedule):>11}{ids.size / seconds:>12.3f}{100 * deviation:>9.1f}%{error:>12.4f}"
            f"{100 * median_deviation:>25.1f}%{median_error:>8.4f}"
            f"{coverage:>17.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
