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

A second table asks whether CDM_sr's draws follow their condition: every full-resolution candidate
of the test galaxies (the delivered run's settings, drawn again with ``keep_candidates``) against the
upsampled low-resolution candidate it was drawn from, by the window EW (±10 Å, rest frame,
:func:`img2spec.metrics.window_ew`) of Hβ, [O III] 5007 and Hα: how often a line (EW > 3 Å) appears
where the condition has no bump (EW < 1 Å), how often a bump loses its line, and the median and
16–84% range of EW(draw) − EW(condition).  The observed spectra and the noiseless truth against their
own low-resolution spectra through the same upsampling give the reference: what the 8 Å bins
themselves leave out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch
from img2spec import metrics
from img2spec.dataset import DatasetFile, rows_of_ids
from img2spec.inference import InferenceSettings, TrainedModels, network_input, predict_spectra
from img2spec.networks import NETWORK_NAMES
from img2spec.predictions import PredictionFile
from img2spec.preprocessing import rest_frame_spectra
from img2spec.spectral import EMISSION_LINES_VACUUM
from img2spec.upsampling import lowres_to_fullres
from report import emit

NOISE_DRAWS = (1, 2, 4, 8)
#: Lines whose window EW is compared between a draw and its condition.
LINES = ("Hbeta", "OIII_5007", "Halpha")
#: EW [Å] above which a spectrum has the line, and below which its condition has no bump.
HAS_LINE, NO_BUMP = 3.0, 1.0


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


def follows_condition(wave: np.ndarray, full: np.ndarray, condition: np.ndarray, mask: np.ndarray) -> dict[str, str]:
    """Per line of :data:`LINES`, the agreement of the window EWs of ``full`` and ``condition`` (M, L), rest frame."""
    out = {}
    at_rest = np.zeros(len(full))
    for line in LINES:
        rest = EMISSION_LINES_VACUUM[line]
        ew_full, ew_condition = (metrics.window_ew(wave, x, mask, at_rest, rest) for x in (full, condition))
        difference = ew_full - ew_condition
        no_bump, bump = ew_condition < NO_BUMP, ew_condition > HAS_LINE
        low, mid, high = np.nanpercentile(difference, [16, 50, 84])
        out[line] = (
            f"{np.mean(ew_full[no_bump] > HAS_LINE):.3f} of {no_bump.sum()} / "
            f"{np.mean(ew_full[bump] < NO_BUMP):.3f} of {bump.sum()} / {mid:+.2f} ({low:+.2f} to {high:+.2f})"
        )
    return out


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

    with PredictionFile(results / "predictions" / "test.h5") as predictions:
        attrs = predictions.h5.attrs
        settings = InferenceSettings.defaults(
            **{k: attrs[k].item() for k in ("k_lr", "keep_lr", "k_sr", "steps", "seed", "final_noise_lr")},
            **{k: attrs[k].item() for k in ("final_noise_sr", "typicality_sr")},
            sampler=str(attrs["sampler"]),
            spacing=str(attrs["spacing"]),
        )
    models = TrainedModels.from_dataset(
        {name: results / "models" / name / "last.ckpt" for name in NETWORK_NAMES}, results / "dataset" / "dataset.h5"
    )
    drawn = predict_spectra(models, images, ids, settings, keep_candidates=True)
    candidates, parents = drawn["candidates"], drawn["candidate_parents"]
    n_candidates = candidates.shape[1]
    candidate_mask = np.repeat(rest_mask, n_candidates, axis=0)
    rows_follow = {
        f"CDM_sr's {n_candidates} candidates per galaxy on their parents": follows_condition(
            wave_rest,
            candidates.reshape(-1, wave_rest.size),
            parents.reshape(-1, wave_rest.size),
            candidate_mask,
        ),
        "observed spectra on their own low-resolution spectrum": follows_condition(
            wave_rest, observed, upsampled, rest_mask
        ),
        "noiseless truth on its own low-resolution spectrum": follows_condition(
            wave_rest, truth_rest, upsampling.apply(torch.from_numpy(truth_lowres)).numpy(), rest_mask
        ),
    }
    lines += [
        "",
        (
            f"Does a draw follow its condition? Per line: the share of spectra with EW > {HAS_LINE:g} Å among those "
            f"whose condition has EW < {NO_BUMP:g} Å / with EW < {NO_BUMP:g} Å among conditions with EW > "
            f"{HAS_LINE:g} Å / median EW(spectrum) − EW(condition) [Å] (16–84%). Window EWs, ±10 Å, rest frame."
        ),
        "",
        "| spectra | " + " | ".join(LINES) + " |",
        "|---|" + "---|" * len(LINES),
        *(f"| {label} | " + " | ".join(cells[line] for line in LINES) + " |" for label, cells in rows_follow.items()),
    ]
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
