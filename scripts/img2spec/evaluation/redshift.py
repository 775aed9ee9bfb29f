"""Redshifts measured on every kind of test spectrum (the paper's Sect. 4.2, Figure 6)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics, plots
from ..io import write_json
from ..templates import load_library
from ..toolbox import build_basis, measure_redshift
from .inputs import load_test_spectra, write_table
from .settings import EvaluationSettings


def _redshift_or_nan(wave, flux, ivar, basis, z_range, name) -> dict:
    try:
        return {**measure_redshift(wave, flux, ivar, basis, z_range, name=name), "error": ""}
    except ValueError as err:
        return {"z": np.nan, "z_err": np.nan, "delta_chi2_per_dof": np.nan, "error": str(err)}


def redshift(
    predictions_h5: str | Path,
    dataset_h5: str | Path,
    library_npz: str | Path,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    figure: str | Path,
    baselines_h5: str | Path | None = None,
) -> dict:
    """Redshifts measured on every predictor's and, as a reference, the observed test spectra; the paper's Sect. 4.2.

    Writes ``table`` (CSV, per galaxy and kind), ``summary`` (JSON: σ_MAD of Δz/(1+z), bias,
    outlier fraction |Δz|/(1+z) > ``outlier`` per kind, as the paper's Figure 6) and ``figure``
    (Figure 6, the networks' prediction).
    """
    spectra = load_test_spectra(predictions_h5, dataset_h5, baselines_h5=baselines_h5)
    options = settings.redshift
    basis = build_basis(
        load_library(library_npz),
        settings.resolving_power,
        n_eigen=options.n_eigen,
        z_max=0.35,
        obs_range=(min(3800.0, spectra.wave[0]), max(9200.0, spectra.wave[-1])),
    )
    redshifts = pd.DataFrame({"specObjID": spectra.ids, "z_spec": spectra.z, "galaxy_zoo": spectra.galaxy_zoo})
    started = time.perf_counter()
    for kind in spectra.kinds:
        results = [
            _redshift_or_nan(
                spectra.wave, f, i, basis, (options.z_min, options.z_max), f"{kind} spectrum of specObjID {s}"
            )
            for f, i, s in zip(spectra.spectra(kind), spectra.ivar, spectra.ids)
        ]
        for key in ("z", "z_err", "delta_chi2_per_dof", "error"):
            redshifts[f"{kind}_{key}"] = [r[key] for r in results]
        redshifts[f"{kind}_dz"] = (redshifts[f"{kind}_z"] - redshifts["z_spec"]) / (1 + redshifts["z_spec"])
    seconds = time.perf_counter() - started
    write_table(redshifts, table)
    statistics: dict[str, Any] = {
        "n": len(redshifts),
        "spectra_per_second": len(spectra.kinds) * len(redshifts) / seconds,
    }
    for kind in spectra.kinds:
        dz = redshifts[f"{kind}_dz"]
        # the paper's |Δz|/(1+z) > 0.05 (Figure 6); a failed fit is an outlier
        outliers = ~(np.abs(dz) <= options.outlier)
        statistics[kind] = {
            "failed": int((redshifts[f"{kind}_error"] != "").sum()),
            "sigma_mad": metrics.sigma_mad(dz),
            "median_dz": float(dz.median()),
            "outlier_fraction": float(outliers.mean()),
            "sigma_mad_without_outliers": metrics.sigma_mad(dz[~outliers]),
        }
    write_json(statistics, summary)
    plots.redshift_density(redshifts["z_spec"], redshifts["predicted_z"], statistics["predicted"], figure)
    return statistics
