"""Where the wrong lines of the predicted spectra come from (issue 25): one row per hypothesis, same networks.

Run after the default DAG:

    OMP_NUM_THREADS=2 python tests/benchmarks/line_hypotheses.py

Every product is scored on the test galaxies with cheap shape measures that need no stellar fit, at
the observed redshift against the observed spectrum:

- false emission: the Hα window EW (``metrics.window_ew``, ±10 Å rest over the continuum 30–60 Å
  away) exceeds the observed spectrum's by more than 3 Å, among the galaxies whose observed EW(Hα),
  as the lines target measured it, is below 1 Å;
- Hα excess: median difference of the window EWs among galaxies with observed EW(Hα) > 5 Å (the
  sign of a line-strength bias);
- side-lobes: :func:`img2spec.metrics.side_lobe_depth` below 0.7 beside Hβ or Hα;
- fine structure: median high-pass power over the observed spectrum's;
- [O III] 5007 excess: median log10 of the ±8 Å window EW over the observed one among galaxies with
  observed EW(Hα) > 5 Å (EWs below 0.1 Å counted as 0.1 Å).

``--steps N`` redraws the candidates with N sampler steps instead of the delivered run's (do more
steps give draws of one class, or blends?).

Products: the delivered selected candidate and median of candidates; the selected low-resolution
draw interpolated to 1 Å (the low-resolution stage alone); one unselected draw per stage (k = 1: the
contrastive selection left out); among the same 15 full-resolution candidates, the paper's choice
(contrastive_sr's best, ``typicality_sr`` 0) and the least atypical one
(:func:`img2spec.inference.atypicality`), with their per-pixel median and linear-flux mean; the
selected candidate moved from its rest frame with linear
instead of cubic-spline interpolation (interpolation ringing); the observed spectra degraded to
8 Å and back (what the low-resolution representation itself does to lines); the noiseless truth.

A second table measures what contrastive_sr's selection prefers among the 15 full-resolution
candidates of each galaxy with observed EW(Hα) > 5 Å: the median over galaxies of the rank
correlation between its score and each candidate's line EW (±8 Å window, rest frame), and the median
log10 of the delivered candidate's line EW (chosen with ``typicality_sr``) over that of the
candidates' per-pixel median.  An InfoNCE
critic learns p(spectrum | image) / p(spectrum) (van den Oord et al. 2018), so ranking by it favours
what is likely for the image *and rare among all spectra*: strong lines.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from img2spec import metrics
from img2spec.dataset import DatasetFile, rows_of_ids
from img2spec.inference import InferenceSettings, TrainedModels, network_input, predict_spectra
from img2spec.networks import NETWORK_NAMES
from img2spec.predictions import PredictionFile
from img2spec.preprocessing import lowres_bin_means
from img2spec.spectral import EMISSION_LINES_VACUUM
from img2spec.upsampling import linear_upsampling, lowres_to_fullres
from report import emit
from scipy.stats import spearmanr


def score(wave, flux_ln, z, observed_ln, z_observed, mask, ew_measured) -> dict[str, float]:
    """The benchmark's shape measures of one product at its redshifts ``z`` (see the module docstring)."""
    halpha = EMISSION_LINES_VACUUM["Halpha"]
    ew_pred = metrics.window_ew(wave, flux_ln, mask, z, halpha)
    ew_obs = metrics.window_ew(wave, observed_ln, mask, z_observed, halpha)
    passive, emitting = ew_measured < 1.0, ew_measured > 5.0
    depth = np.fmin(
        *(metrics.side_lobe_depth(wave, flux_ln, mask, z, EMISSION_LINES_VACUUM[n]) for n in ("Hbeta", "Halpha"))
    )
    power = metrics.fine_structure_power(flux_ln, mask) / metrics.fine_structure_power(observed_ln, mask)
    oiii = [
        metrics.window_ew(wave, f, mask, zz, EMISSION_LINES_VACUUM["OIII_5007"], 8.0)
        for f, zz in ((flux_ln, z), (observed_ln, z_observed))
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        oiii_excess = np.log10(np.clip(oiii[0], 0.1, None) / np.clip(oiii[1], 0.1, None))[emitting]
    return {
        "false emission": float(np.mean((ew_pred - ew_obs)[passive] > 3.0)),
        "Hα window EW excess [Å]": float(np.nanmedian((ew_pred - ew_obs)[emitting])),
        "side-lobes": float(np.mean(depth[np.isfinite(depth)] < metrics.SIDE_LOBE_DEPTH)),
        "fine structure / observed": float(np.median(power)),
        "[O III] 5007 excess [dex]": float(np.nanmedian(oiii_excess)),
    }


def linear_move(wave_from, flux_ln, wave_to, z) -> np.ndarray:
    """Rest-frame spectra moved to redshifts ``z`` by linear interpolation (no renormalisation needed for shapes)."""
    return np.stack([np.interp(wave_to / (1 + zi), wave_from, row) for row, zi in zip(flux_ln, z)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--steps", type=int, help="sampler steps of the redrawn products (default: the delivered run's)"
    )
    args = parser.parse_args()
    results = args.results
    with PredictionFile(results / "predictions" / "test.h5") as predictions:
        h5 = predictions.h5
        ids = predictions.specobjid()
        delivered = {
            "flux": predictions.flux(),
            "flux_p50": predictions.median(),
            "flux_lowres": predictions.lowres(),
            "flux_drawn": predictions.drawn(),
            "z": predictions.redshift(),
            "wave_drawn": predictions.wave_drawn,
        }
        settings = InferenceSettings.defaults(
            **{k: h5.attrs[k].item() for k in ("k_lr", "keep_lr", "k_sr", "steps", "seed")},
            sampler=str(h5.attrs["sampler"]),
            spacing=str(h5.attrs["spacing"]),
        )
    if args.steps:
        settings = dataclasses.replace(settings, steps=args.steps)
    with DatasetFile(results / "dataset" / "dataset.h5") as data:
        rows = data.rows_of(ids)
        observed, mask = data.read("flux", rows), data.read("mask", rows)
        images, z = data.read("images", rows), data.read("z_spec", rows)
        wave, wave_lowres = data.wave, data.wave_lowres
    lines = pd.read_csv(results / "evaluation" / "lines" / "galaxies.csv").set_index("specObjID")
    ew_measured = lines.loc[ids, "observed_ew_Halpha"].to_numpy(float)
    with h5py.File(results / "baselines" / "test.h5") as h5:
        truth = h5["truth"][()][rows_of_ids(h5["specobjid"][()], ids, "baselines")] if "truth" in h5 else None

    interp = lowres_to_fullres(wave_lowres, wave)
    products = {
        "selected candidate (delivered)": delivered["flux"],
        "median of candidates (delivered)": delivered["flux_p50"],
        "selected low-resolution draw, interpolated to 1 Å": delivered["flux_lowres"] @ interp,
        "observed spectra at 8 Å, interpolated back": np.log(lowres_bin_means(np.exp(observed), 8)) @ interp,
        "selected candidate moved with linear interpolation": linear_move(
            delivered["wave_drawn"], delivered["flux_drawn"], wave, delivered["z"]
        ),
    }
    torch.set_num_threads(2)
    models = TrainedModels.from_dataset(
        {name: results / "models" / name / "last.ckpt" for name in NETWORK_NAMES}, results / "dataset" / "dataset.h5"
    )
    single = predict_spectra(models, images, ids, dataclasses.replace(settings, k_lr=1, keep_lr=1, k_sr=1))
    products["one unselected draw per stage (k = 1)"] = single["flux"]
    products["its low-resolution draw, interpolated to 1 Å"] = single["flux_lowres"] @ interp
    # the full-resolution candidates the selection chose from (same seeds: the delivered run's draws)
    with_candidates = predict_spectra(models, images, ids, settings, keep_candidates=True)
    drawn = with_candidates["candidates"].astype(np.float64)
    per_pixel_median = np.median(drawn, axis=1, keepdims=True)
    galaxies = np.arange(len(ids))
    least_atypical = drawn[galaxies, with_candidates["atypicality_sr"].argmin(axis=1)]
    papers_choice = drawn[galaxies, with_candidates["score_sr"].argmax(axis=1)]
    for label, rest in (
        ("the paper's choice: contrastive_sr's best (typicality_sr 0)", papers_choice),
        ("the least atypical full-resolution candidate", least_atypical),
        ("median of the full-resolution candidates, ln flux", per_pixel_median[:, 0]),
        ("mean of the full-resolution candidates, linear flux", np.log(np.mean(np.exp(drawn), axis=1))),
    ):
        products[label] = linear_move(delivered["wave_drawn"], rest, wave, delivered["z"])
    # the networks' conditional centre: CDM_lr's regression head, upsampled by CDM_sr's map (no draw, no selection)
    pixels, features = network_input(models.cdm_lr, images, models.device)
    with torch.no_grad():
        mean_lowres = models.cdm_lr.stats.restore(models.cdm_lr.regression_centre(pixels, features)).numpy()
    upsampling = models.cdm_sr.statistics.upsampling or linear_upsampling(
        models.grids.network_wave_lowres, models.grids.network_wave
    )
    products["CDM_lr's regression centre, upsampled"] = linear_move(
        delivered["wave_drawn"], upsampling.apply(mean_lowres), wave, delivered["z"]
    )
    if truth is not None:
        products["noiseless truth"] = truth
    products["observed spectra (noise included)"] = observed
    # predictions are at their own measured redshift; the shape measures place them at the observed one
    scored = []
    for name, flux in products.items():
        at_z = (
            z
            if "observed" in name or name == "noiseless truth"
            else single["z"]
            if "unselected" in name or "its low" in name
            else delivered["z"]
        )
        scored.append({"product": name, **score(wave, flux, at_z, observed, z, mask, ew_measured)})
    columns = list(scored[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join([row["product"]] + [f"{row[c]:.3f}" for c in columns[1:]]) + " |" for row in scored]
    preference = selection_preference(
        delivered["wave_drawn"], drawn, with_candidates["score_sr"], with_candidates["best_sr"], ew_measured > 5.0
    )
    lines += [
        "",
        "| line | rank correlation of contrastive_sr's score with the line EW | selected / median of candidates [dex] |",
    ]
    lines += ["|---|---|---|"] + [
        f"| {name} | {rho:+.2f} | {excess:+.3f} |" for name, (rho, excess) in preference.items()
    ]
    emit("\n".join(lines), args.out)


def selection_preference(
    wave_rest: np.ndarray, candidates: np.ndarray, score: np.ndarray, best: np.ndarray, emitting: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Per BPT line: median over ``emitting`` galaxies of the Spearman correlation between the selection
    ``score`` (B, K) and the K rest-frame ``candidates``' (B, K, L) window EWs, and the median log10 of
    the selected (``best``) candidate's EW over that of the candidates' per-pixel median."""
    out = {}
    rows = np.flatnonzero(emitting)
    no_mask, at_rest = np.zeros((len(rows), wave_rest.size), bool), np.zeros(len(rows))
    median = np.median(candidates[rows], axis=1)
    for name in ("Hbeta", "OIII_5007", "Halpha", "NII_6584"):
        line = EMISSION_LINES_VACUUM[name]
        ew = np.stack(
            [
                metrics.window_ew(wave_rest, candidates[rows, k], no_mask, at_rest, line, 8.0)
                for k in range(score.shape[1])
            ],
            axis=1,
        )
        rho = [spearmanr(s, e, nan_policy="omit").statistic for s, e in zip(score[rows], ew)]
        of_median = metrics.window_ew(wave_rest, median, no_mask, at_rest, line, 8.0)
        selected = ew[np.arange(len(rows)), best[rows]]
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = np.log10(np.clip(selected, 0.1, None) / np.clip(of_median, 0.1, None))
        out[name] = (float(np.nanmedian(rho)), float(np.nanmedian(excess)))
    return out


if __name__ == "__main__":
    main()
