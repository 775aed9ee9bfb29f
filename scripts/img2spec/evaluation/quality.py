"""Spectral agreement of predicted and observed spectra (the paper's Sect. 5.1, Figure 5) and the shapes of their lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, plots
from ..dataset import DatasetFile
from ..io import write_json
from ..predictions import PredictionFile
from ..preprocessing import NORMALISATION_WINDOW, shift_to_redshift
from ..spectral import EMISSION_LINES_VACUUM
from .inputs import PREDICTOR_LABELS, read_predictors, redshifts_of_kinds, write_table

#: Per-galaxy agreement scores of :func:`quality`; ``<score>_as_predicted`` is the same before alignment.
QUALITY_SCORES = ("mean_relative_deviation", "mse", "chi2_per_pixel")


def _scores(predicted: np.ndarray, observed: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "mean_relative_deviation": metrics.mean_relative_deviation(predicted, observed, mask),
        "mse": metrics.mse(predicted, observed, mask),
        "chi2_per_pixel": metrics.chi2_per_pixel(predicted, observed, ivar, mask),
    }


def quality(
    predictions_h5: str | Path,
    dataset_h5: str | Path,
    *,
    summary: str | Path,
    table: str | Path,
    figure: str | Path,
    zoom: str | Path,
    truth_parquet: str | Path | None = None,
    baselines_h5: str | Path | None = None,
    redshift_csv: str | Path | None = None,
    norm_window: tuple[float, float] = NORMALISATION_WINDOW,
    norm_frame: str = "observed",
) -> dict:
    """Spectral agreement of every predictor's test spectra with the observed ones (the paper's Sect. 5.1, Figure 5).

    As the paper does, each predicted spectrum is first moved from the redshift measured on it
    (``redshift_csv``, the redshift target's table) to the observed spectrum's, and renormalised in
    the normalisation window (:func:`img2spec.preprocessing.shift_to_redshift`); pixels it does not
    cover are left out.  The scores are also given as predicted, without the move
    (``*_as_predicted``).  A prediction whose redshift could not be measured has NaN aligned
    scores and is counted in ``n_without_redshift``.

    Writes ``table`` (CSV: Δ̄, MSE, χ²/N of the networks' prediction and, prefixed by the
    predictor's name, of the others, and morphology per galaxy), ``summary`` (JSON: medians overall
    and per morphology group, fraction with Δ̄ < 10%; the networks' under ``all`` and the groups,
    every predictor's under ``predictors``; under ``plausibility`` each kind's side-lobe fraction
    and fine-structure power, :func:`_shape_plausibility`; on the mock ``band_coverage_of_truth``, the
    share of the noiseless truth's pixels inside the moved band), ``figure`` (Δ̄ histograms) and ``zoom``
    (the lines of six example galaxies, :func:`img2spec.plots.line_zoom`).  On the mock survey,
    groups by the true morphology are added.
    """
    ids, predictors = read_predictors(predictions_h5, baselines_h5)
    with DatasetFile(dataset_h5) as data:
        rows = data.rows_of(ids, f"galaxies of {predictions_h5}")
        observed, mask, ivar = (data.read(name, rows) for name in ("flux", "mask", "ivar"))
        wave, z_spec = data.wave, data.read("z_spec", rows)
        scores = pd.DataFrame({"specObjID": ids, "galaxy_zoo": data.morphology(rows)})
    z_of = redshifts_of_kinds(redshift_csv, ids, z_spec, tuple(predictors))
    observed_power = metrics.fine_structure_power(observed, mask)
    plausibility = {"observed": _shape_plausibility(wave, observed, mask, z_spec, observed_power)}
    plausibility["observed"]["noise_over_observed_power_median"] = float(
        np.median(metrics.noise_power(observed, ivar, mask) / observed_power)
    )
    for name, predicted in predictors.items():
        prefix = "" if name == "predicted" else f"{name}_"
        aligned, uncovered = shift_to_redshift(wave, predicted, z_of[name], z_spec, norm_window, norm_frame)
        scores[f"{prefix}z"] = z_of[name]
        for score, values in _scores(predicted, observed, ivar, mask).items():
            scores[f"{prefix}{score}_as_predicted"] = values
        for score, values in _scores(np.nan_to_num(aligned), observed, ivar, mask | uncovered).items():
            scores[f"{prefix}{score}"] = np.where(np.isfinite(z_of[name]), values, np.nan)
        plausibility[name] = _shape_plausibility(wave, np.nan_to_num(aligned), mask | uncovered, z_spec, observed_power)
    groups = {"galaxy_zoo": scores["galaxy_zoo"]}
    if truth_parquet is not None:
        truth = pd.read_parquet(truth_parquet).set_index("specObjID")
        scores["truth_morphology"] = truth.loc[ids, "morphology"].to_numpy()
        groups["truth_morphology"] = scores["truth_morphology"]
    write_table(scores, table)

    def medians(sub: pd.DataFrame, prefix: str, suffix: str) -> dict:
        deviation = sub[f"{prefix}mean_relative_deviation{suffix}"]
        return {
            "median_mean_relative_deviation": float(deviation.median()),
            "fraction_below_10pct": float((deviation < 0.1).sum() / max(len(sub), 1)),
            "median_mse": float(sub[f"{prefix}mse{suffix}"].median()),
            "median_chi2_per_pixel": float(sub[f"{prefix}chi2_per_pixel{suffix}"].median()),
        }

    def headline(selection: pd.Series, prefix: str = "") -> dict:
        sub = scores[selection]
        return {
            "n": len(sub),
            **medians(sub, prefix, ""),
            "n_without_redshift": int(sub[f"{prefix}z"].isna().sum()),
            "as_predicted": medians(sub, prefix, "_as_predicted"),
        }

    everything = scores["specObjID"].notna()
    medians_of: dict = {
        "alignment": "each prediction moved from its measured redshift to the observed spectrum's (paper Sect. 5.1)"
        if redshift_csv is not None
        else "none: every spectrum at the catalog redshift",
        "all": headline(everything),
    }
    for key, labels in groups.items():
        medians_of[key] = {str(label): headline(labels == label) for label in sorted(labels.unique())}
    medians_of["predictors"] = {}
    for name in predictors:
        prefix = "" if name == "predicted" else f"{name}_"
        medians_of["predictors"][name] = {"all": headline(everything, prefix)}
        for key, labels in groups.items():
            medians_of["predictors"][name][key] = {
                str(label): headline(labels == label, prefix) for label in sorted(labels.unique())
            }
    medians_of["plausibility"] = plausibility
    if "truth" in predictors:
        medians_of["band_coverage_of_truth"] = _band_coverage_of_truth(
            predictions_h5, wave, predictors["truth"], mask, z_spec, norm_window, norm_frame
        )
    write_json(medians_of, summary)
    plots.deviation_histograms(scores, "galaxy_zoo", figure)
    _line_zoom_figure(wave, observed, mask, z_spec, predictors, z_of, norm_window, norm_frame, ids, zoom)
    return medians_of


def _band_coverage_of_truth(predictions_h5, wave, truth_ln, mask, z_spec, norm_window, norm_frame) -> float:
    """Share of the noiseless truth's pixels (mock only) inside the widest band, moved to the observed redshift
    from the one it was placed at (``z`` of the predictions; the catalog's for observed-frame networks)."""
    with PredictionFile(predictions_h5) as pred:
        levels = pred.percentiles
        lower, upper = pred.band(levels[0]), pred.band(levels[-1])
        z_from = pred.redshift()
    z_from = np.where(np.isfinite(z_from), z_from, z_spec)
    (lower, missing_low), (upper, missing_high) = (
        shift_to_redshift(wave, band, z_from, z_spec, norm_window, norm_frame) for band in (lower, upper)
    )
    return metrics.band_coverage(
        np.fmin(lower, upper), np.fmax(lower, upper), truth_ln, mask | missing_low | missing_high
    )


def _line_zoom_figure(wave, observed, mask, z_spec, predictors, z_of, norm_window, norm_frame, ids, path) -> None:
    """:func:`img2spec.plots.line_zoom` of six test galaxies: the two weakest, two middling and two strongest in Hα."""
    ew = metrics.window_ew(wave, observed, mask, z_spec, EMISSION_LINES_VACUUM["Halpha"])
    order = [int(i) for i in np.argsort(np.where(np.isfinite(ew), ew, np.inf)) if np.isfinite(ew[i])]
    if not order:
        return
    middle = len(order) // 2
    picks = list(dict.fromkeys(order[:2] + order[middle - 1 : middle + 1] + order[-2:]))
    shown = {}
    for name in ("predicted", "median", "knn_rest", "truth"):
        if name in predictors:
            aligned, _ = shift_to_redshift(
                wave, predictors[name][picks], z_of[name][picks], z_spec[picks], norm_window, norm_frame
            )
            shown[PREDICTOR_LABELS[name]] = aligned
    labels = [f"specObjID {ids[i]}  z = {z_spec[i]:.3f}  EW(Hα) ≈ {ew[i]:.1f} Å (observed)" for i in picks]
    plots.line_zoom(wave, z_spec[picks], observed[picks], shown, labels, path)


def _shape_plausibility(
    wave: np.ndarray, flux_ln: np.ndarray, mask: np.ndarray, z: np.ndarray, observed_power: np.ndarray
) -> dict[str, float]:
    """Side-lobes beside Hβ and Hα, and fine-structure power against the observed spectra's, of one kind of spectrum.

    ``side_lobe_fraction``: galaxies whose deepest pixel 4–25 Å (rest) from Hβ or Hα lies below
    :data:`img2spec.metrics.SIDE_LOBE_DEPTH` of the continuum 30–60 Å away
    (:func:`img2spec.metrics.side_lobe_depth`); ``fine_structure_power_ratio_median``: median of the
    ratio of high-pass power (:func:`img2spec.metrics.fine_structure_power`) to the observed
    spectrum's.  Spectra are at the observed redshift ``z``.
    """
    depth = np.fmin(
        *(metrics.side_lobe_depth(wave, flux_ln, mask, z, EMISSION_LINES_VACUUM[line]) for line in ("Hbeta", "Halpha"))
    )
    measured = np.isfinite(depth)
    return {
        "side_lobe_fraction": float(np.mean(depth[measured] < metrics.SIDE_LOBE_DEPTH)) if measured.any() else np.nan,
        "fine_structure_power_ratio_median": float(
            np.median(metrics.fine_structure_power(flux_ln, mask) / observed_power)
        ),
    }
