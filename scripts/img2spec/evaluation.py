"""Evaluation targets: each reads predictions and observations and writes a summary, tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import metrics, plots
from .io import read_h5_rows


def _morphology_from_flags(catalog_group: h5py.Group, rows: np.ndarray) -> np.ndarray:
    """Galaxy Zoo class per object: elliptical, spiral or uncertain (from the catalog's flags)."""
    labels = np.full(rows.size, "uncertain", dtype=object)
    if "elliptical" in catalog_group:
        labels[catalog_group["elliptical"][()][rows] == 1] = "elliptical"
        labels[catalog_group["spiral"][()][rows] == 1] = "spiral"
    return labels


def quality(predictions_h5: str | Path, dataset_h5: str | Path, out_dir: str | Path, truth_parquet: str | Path | None = None) -> dict:
    """Spectral agreement of predicted and observed test spectra (the paper's Sect. 4.1, Figure 5).

    Writes ``galaxies.csv`` (Δ̄, MSE, χ²/N and morphology per galaxy), ``summary.json`` (medians
    overall and per morphology group, fraction with Δ̄ < 10%) and ``histograms.png``.  On the mock
    survey, groups by the true morphology are added.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(predictions_h5, "r") as pred:
        ids = pred["specobjid"][()]
        predicted = pred["flux"][()]
    with h5py.File(dataset_h5, "r") as data:
        row_of = {int(s): i for i, s in enumerate(data["specobjid"][()])}
        missing = [int(s) for s in ids if int(s) not in row_of]
        if missing:
            raise ValueError(f"{predictions_h5}: {len(missing)} predicted galaxies are not in {dataset_h5} (e.g. {missing[:3]})")
        rows = np.array([row_of[int(s)] for s in ids])
        observed, mask, ivar = (read_h5_rows(data[name], rows) for name in ("flux", "mask", "ivar"))
        table = pd.DataFrame({
            "specObjID": ids,
            "mean_relative_deviation": metrics.mean_relative_deviation(predicted, observed, mask),
            "mse": metrics.mse(predicted, observed, mask),
            "chi2_per_pixel": metrics.chi2_per_pixel(predicted, observed, ivar, mask),
            "galaxy_zoo": _morphology_from_flags(data["catalog"], rows),
        })
    groups = {"galaxy_zoo": table["galaxy_zoo"]}
    if truth_parquet is not None:
        truth = pd.read_parquet(truth_parquet).set_index("specObjID")
        table["truth_morphology"] = truth.loc[ids, "morphology"].to_numpy()
        groups["truth_morphology"] = table["truth_morphology"]
    table.to_csv(out_dir / "galaxies.csv", index=False)
    deviation = table["mean_relative_deviation"]

    def headline(selection: pd.Series) -> dict:
        sub = table[selection]
        return {
            "n": int(len(sub)),
            "median_mean_relative_deviation": float(sub["mean_relative_deviation"].median()),
            "fraction_below_10pct": float((sub["mean_relative_deviation"] < 0.1).mean()),
            "median_mse": float(sub["mse"].median()),
            "median_chi2_per_pixel": float(sub["chi2_per_pixel"].median()),
        }

    summary = {"all": headline(deviation.notna())}
    for key, labels in groups.items():
        summary[key] = {str(label): headline(labels == label) for label in sorted(labels.unique())}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plots.deviation_histograms(table, "galaxy_zoo", out_dir / "histograms.png")
    return summary
