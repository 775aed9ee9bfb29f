"""Emission lines and BPT classes of observed and predicted spectra (the paper's Sect. 4.6, Figure 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, plots
from ..fitresults import line_column
from ..io import write_json
from ..spectral import BPT_CLASSES, BPT_LINES
from ..toolbox.lines import LINES, bpt_class, lines_measured
from .fitting import fit_failures, kinds_in
from .inputs import KINDS, truth_table, write_table
from .settings import EvaluationSettings


def _line_inputs(fits: pd.DataFrame, kind: str, continuum: str, ids: np.ndarray) -> dict:
    sub = fits[fits["kind"] == kind].set_index("specObjID").reindex(ids)
    return {
        "fluxes": {name: sub[line_column(continuum, f"flux_{name}")].to_numpy(float) for name in LINES},
        "errors": {name: sub[line_column(continuum, f"flux_err_{name}")].to_numpy(float) for name in LINES},
        "ew": sub[line_column(continuum, "ew_Halpha")].to_numpy(float),
    }


def lines(
    fits: pd.DataFrame,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    failures: str | Path,
    figure: str | Path,
) -> dict:
    """Emission-line fluxes and EW(Hα) of observed and predicted spectra after subtracting the stellar model.

    Writes ``table`` (CSV: fluxes, errors and EW(Hα) per galaxy and kind), ``failures`` (CSV),
    ``summary`` (JSON: measured fractions and flux ratios per line) and ``figure``.
    """
    continuum = settings.lines.continuum
    ids = fits["specObjID"].unique()
    fluxes = pd.DataFrame({"specObjID": ids})
    measured: dict = {"continuum": continuum, **fit_failures(fits, failures)}
    kinds = kinds_in(fits)
    inputs = {kind: _line_inputs(fits, kind, continuum, ids) for kind in kinds}
    for kind in kinds:
        for name in LINES:
            fluxes[f"{kind}_flux_{name}"] = inputs[kind]["fluxes"][name]
            fluxes[f"{kind}_flux_err_{name}"] = inputs[kind]["errors"][name]
        fluxes[f"{kind}_ew_Halpha"] = inputs[kind]["ew"]
    for name in LINES:
        obs, pred = (inputs[k]["fluxes"][name] for k in KINDS)
        snr = {k: inputs[k]["fluxes"][name] / inputs[k]["errors"][name] for k in KINDS}
        both = (
            (snr["observed"] >= settings.lines.min_snr)
            & (snr["predicted"] >= settings.lines.min_snr)
            & (obs > 0)
            & (pred > 0)
        )
        measured[name] = {f"fraction_measured_{k}": float(np.mean(snr[k] >= settings.lines.min_snr)) for k in KINDS}
        measured[name].update(
            {
                f"fraction_measured_{k}": float(
                    np.mean(inputs[k]["fluxes"][name] / inputs[k]["errors"][name] >= settings.lines.min_snr)
                )
                for k in kinds[2:]
            }
        )
        measured[name]["n_both"] = int(both.sum())
        measured[name]["log_ratio_median"] = (
            float(np.median(np.log10(pred[both] / obs[both]))) if both.any() else np.nan
        )
        measured[name]["log_ratio_scatter_mad"] = (
            metrics.sigma_mad(np.log10(pred[both] / obs[both])) if both.any() else np.nan
        )
    ew = {k: inputs[k]["ew"] for k in kinds}
    measured["ew_Halpha"] = {
        "median_observed": float(np.nanmedian(ew["observed"])),
        "median_predicted": float(np.nanmedian(ew["predicted"])),
        "median_difference": float(np.nanmedian(ew["predicted"] - ew["observed"])),
    }
    measured["predictors"] = {
        k: {
            "ew_Halpha_median_difference": float(np.nanmedian(ew[k] - ew["observed"])),
            "ew_Halpha_scatter_mad": metrics.sigma_mad(ew[k] - ew["observed"]),
        }
        for k in kinds[1:]
    }
    emitting = ew["observed"] > metrics.EMITTING_EW
    measured["plausibility"] = {
        kind: {
            **metrics.emission_plausibility(ew["observed"], ew[kind], settings.lines.min_ew),
            "line_flux_bias": {
                name: metrics.line_flux_bias(
                    inputs[kind]["fluxes"][name][emitting],
                    inputs["observed"]["fluxes"][name][emitting],
                    seed=settings.seed,
                )
                for name in BPT_LINES
            },
        }
        for kind in kinds[1:]
    }
    write_table(fluxes, table)
    write_json(measured, summary)
    plots.line_comparison(fluxes, tuple(LINES), figure)
    return measured


def bpt(
    fits: pd.DataFrame,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    confusion: str | Path,
    confusion_figure: str | Path,
    diagram: str | Path,
    truth_parquet: str | Path | None = None,
) -> dict:
    """Passive / star-forming / AGN classes of observed and predicted spectra (the paper's Sect. 4.6, Figure 12).

    Writes ``table`` (CSV: each kind's class per galaxy), ``confusion`` (CSV: the 3×3 matrix,
    actual: observed spectra; predicted: predicted spectra) and its ``confusion_figure``, the BPT
    ``diagram`` of both kinds, and ``summary`` (JSON: AGN accuracy, precision and recall with their
    Monte-Carlo spread under the paper's line-flux and EW errors, and on the mock every kind scored
    against the true class).
    """
    options = settings.lines
    ids = fits["specObjID"].unique()
    kinds = kinds_in(fits)
    inputs = {kind: _line_inputs(fits, kind, options.continuum, ids) for kind in kinds}
    measured = {
        kind: lines_measured(inputs[kind]["fluxes"], inputs[kind]["errors"], options.min_snr, options.detection)
        for kind in kinds
    }
    classes = {
        kind: bpt_class(inputs[kind]["fluxes"], inputs[kind]["ew"], measured[kind], options.min_ew) for kind in kinds
    }
    classified = pd.DataFrame({"specObjID": ids, **{f"{kind}_class": classes[kind] for kind in kinds}})
    matrix = metrics.confusion_matrix(classes["observed"], classes["predicted"], BPT_CLASSES)
    confusion_table = pd.DataFrame(
        matrix, index=[f"observed {c}" for c in BPT_CLASSES], columns=[f"predicted {c}" for c in BPT_CLASSES]
    )
    write_table(confusion_table, confusion, index=True)

    def classifier(kind):
        # draws move fluxes and EW; whether a line counts as measured stays as found
        return lambda fluxes, ew: bpt_class(fluxes, ew, measured[kind], options.min_ew)

    monte_carlo = metrics.monte_carlo_scores(
        classifier("observed"),
        classifier("predicted"),
        inputs["observed"],
        inputs["predicted"],
        options.relative_errors,
        options.ew_error,
        options.draws,
        settings.seed,
    )
    scores = {
        "n": len(ids),
        "counts": {kind: {c: int(np.sum(classes[kind] == c)) for c in BPT_CLASSES} for kind in kinds},
        "confusion_matrix": {
            "rows_observed": list(BPT_CLASSES),
            "columns_predicted": list(BPT_CLASSES),
            "counts": matrix.tolist(),
        },
        "scores": metrics.classification_scores(classes["observed"], classes["predicted"]),
        "predictors": {
            kind: {
                **metrics.classification_scores(classes["observed"], classes[kind]),
                "confusion_counts": metrics.confusion_matrix(classes["observed"], classes[kind], BPT_CLASSES).tolist(),
            }
            for kind in kinds[1:]
        },
        "monte_carlo": {
            "draws": options.draws,
            "relative_errors": options.relative_errors,
            "ew_error": options.ew_error,
            "scores": monte_carlo,
        },
    }
    truth = truth_table(truth_parquet, ids)
    if truth is not None:
        classified["true_class"] = truth["bpt_class"].to_numpy()
        scores["versus_truth"] = {
            kind: metrics.classification_scores(classified["true_class"].to_numpy(), classes[kind]) for kind in kinds
        }
    write_table(classified, table)
    write_json(scores, summary)
    plots.confusion(matrix, BPT_CLASSES, confusion_figure)
    plots.bpt_pair({k: inputs[k]["fluxes"] for k in KINDS}, classes, diagram)
    return scores
