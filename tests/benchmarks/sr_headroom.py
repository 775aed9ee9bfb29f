"""How much fine structure there is for CDM_sr to learn, and how much of it it learned (issue 25).

Run after the default DAG (the mock survey: it needs the noiseless truth of the baselines):

    OMP_NUM_THREADS=2 python tests/benchmarks/sr_headroom.py

On the test galaxies, in the rest frame and the units of CDM_sr's validation (ln flux, mean squared
error over the unmasked pixels of the observed spectrum, averaged over pixels of all galaxies), it
compares with the observed spectrum:

- the observed low-resolution spectrum through the fitted upsampling alone (CDM_sr's residual 0: what
  a CDM_sr that learned nothing delivers as its mean);
- the same plus the noiseless truth's own residual, its fine structure beyond the fitted upsampling
  (an oracle: the most any CDM_sr can add to the mean);
- the same plus CDM_sr's conditional mean of the residual (its x0 estimate from pure noise at the
  last step, :meth:`img2spec.diffusion.NoiseSchedule.conditional_mean`), from one noise and averaged
  over 2, 4 and 8;
- the noiseless truth itself (the observational noise).

It also gives the rms of each residual and its correlation with the truth's: a CDM_sr that learned
the fine structure correlates with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch
from img2spec.dataset import DatasetFile, rows_of_ids
from img2spec.inference import TrainedModels, network_input
from img2spec.preprocessing import rest_frame_spectra
from img2spec.upsampling import lowres_to_fullres
from report import emit

NOISE_DRAWS = (1, 2, 4, 8)


def weighted_mse(prediction: np.ndarray, observed: np.ndarray, weight: np.ndarray) -> float:
    """Mean squared difference over all weighted pixels of all galaxies (CDM_sr's validation MSE)."""
    return float(((prediction - observed) ** 2 * weight).sum() / weight.sum())


def rms_and_correlation(residual: np.ndarray, truth: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Weighted rms of ``residual`` and its correlation with ``truth``."""
    products = [(a * b * weight).sum() for a, b in ((residual, residual), (truth, truth), (residual, truth))]
    return float(np.sqrt(products[0] / weight.sum())), float(products[2] / np.sqrt(products[0] * products[1]))


def conditional_means(task, images, lowres, wave_lowres, wave, draws: int, batch: int = 16) -> np.ndarray:
    """CDM_sr's conditional mean of the residual [ln flux] (N, L), averaged over ``draws`` noises."""
    interp = torch.from_numpy(lowres_to_fullres(wave_lowres, wave).astype(np.float32))
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels, features = network_input(task, images[start : start + batch], "cpu")
            condition = task.lowres_stats.standardise(torch.from_numpy(lowres[start : start + batch])) @ interp
            bound = task.ema.conditioned(pixels, condition, features)
            generators = [torch.Generator().manual_seed(1000 + start + i) for i in range(len(pixels))]
            mean = task.schedule.conditional_mean(bound, (len(pixels), wave.size), generators, "cpu", draws)
            out.append(task.stats.restore(mean).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = args.results
    torch.set_num_threads(2)
    task = TrainedModels.load_tasks({"cdm_sr": results / "models" / "cdm_sr" / "last.ckpt"})["cdm_sr"]
    if not task.residual or task.statistics.upsampling is None:
        raise SystemExit("cdm_sr does not model a residual on a fitted upsampling; nothing to measure")
    upsampling = task.statistics.upsampling
    with DatasetFile(results / "dataset" / "dataset.h5") as data:
        rows = data.rows("test")
        ids = data.specobjid[rows]
        (observed, rest_mask), (lowres, _) = (
            (flux[rows], mask[rows]) for flux, mask in (data.spectra("rest"), data.spectra("rest", lowres=True))
        )
        images, mask, z = (data.read(key, rows) for key in ("images", "mask", "z_spec"))
        wave, wave_rest, wave_lowres_rest = data.wave, data.wave_of("rest"), data.wave_of("rest", lowres=True)
        window, window_frame = data.normalisation
        lowres_factor, log_floor = (data.h5.attrs[f"preprocessing_{k}"] for k in ("lowres_factor", "log_floor"))
    with h5py.File(results / "baselines" / "test.h5") as h5:
        if "truth" not in h5:
            raise SystemExit("no noiseless truth in the baselines: run on the mock survey")
        truth = h5["truth"][()][rows_of_ids(h5["specobjid"][()], ids, "baselines")]
    truth_rest, _, truth_lowres, _ = rest_frame_spectra(
        wave, truth, mask, z, wave_rest, int(lowres_factor), float(log_floor), window, window_frame
    )
    weight = (~rest_mask).astype(np.float64)
    upsampled = upsampling.apply(torch.from_numpy(lowres)).numpy()
    fine_truth = truth_rest - upsampling.apply(torch.from_numpy(truth_lowres)).numpy()

    rows_out = [
        (
            "fitted upsampling of the observed low-resolution spectrum",
            weighted_mse(upsampled, observed, weight),
            0.0,
            float("nan"),
        )
    ]
    rms, corr = rms_and_correlation(fine_truth, fine_truth, weight)
    rows_out.append(
        (
            "+ the noiseless truth's fine structure (oracle)",
            weighted_mse(upsampled + fine_truth, observed, weight),
            rms,
            corr,
        )
    )
    for draws in NOISE_DRAWS:
        residual = conditional_means(task, images, lowres, wave_lowres_rest, wave_rest, draws)
        rms, corr = rms_and_correlation(residual, fine_truth, weight)
        label = f"+ CDM_sr's conditional mean, {draws} noise{'s' if draws > 1 else ''}"
        rows_out.append((label, weighted_mse(upsampled + residual, observed, weight), rms, corr))
    rows_out.append(("noiseless truth", weighted_mse(truth_rest, observed, weight), float("nan"), float("nan")))
    reference = rows_out[0][1]
    lines = [
        f"# CDM_sr's headroom: {len(ids)} test galaxies, rest frame ({results})",
        "",
        "| prediction | MSE to observed | vs fitted upsampling | residual rms [ln flux] | correlation with the truth's |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {mse:.6f} | {100 * (mse / reference - 1):+.1f}% | {rms:.4f} | {corr:+.3f} |"
            for label, mse, rms, corr in rows_out
        ),
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
