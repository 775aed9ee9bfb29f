"""Stellar populations of observed and predicted spectra (Sect. 4.4, Figures 8–11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .. import plots
from ..dataset import DatasetFile
from ..fitresults import FIT_COLUMNS, FIT_ID_COLUMNS, fit_column
from ..io import write_json
from .fitting import agreement, fit_failures, kinds_in, paired
from .inputs import truth_table, write_table


def _versus_truth(fits: pd.DataFrame, code: str, truth: pd.DataFrame | None) -> dict:
    """On the mock: how well each kind's fit recovers the true light-weighted properties."""
    if truth is None:
        return {}
    out = {}
    for kind in kinds_in(fits):
        sub = fits[fits["kind"] == kind].set_index("specObjID")
        true = truth.reindex(sub.index)
        out[kind] = {
            "log_age": agreement(true["age_lw"], sub[fit_column(code, "log_age")]),
            "metallicity": agreement(true["metallicity_lw"], sub[fit_column(code, "metallicity")]),
            "ebv": agreement(true["ebv"], sub[fit_column(code, "ebv")]),
        }
        if code == "ppxf":
            out[kind]["sigma_star_relative"] = agreement(
                true["sigma_star"], sub[fit_column("ppxf", "sigma_star")], relative=True
            )
    return {"fit_minus_truth": out}


def stellar_populations(
    fits: pd.DataFrame,
    code: str,
    *,
    summary: str | Path,
    table: str | Path,
    failures: str | Path,
    figure: str | Path,
    truth_parquet: str | Path | None = None,
) -> dict:
    """Observed-versus-predicted agreement of one fitter's properties (Sect. 4.4, Figure 8).

    Writes ``table`` (CSV: the fitter's columns per galaxy and kind), ``failures`` (CSV: failed
    fits), ``summary`` (JSON) and ``figure`` (the differences' histograms).
    """
    columns = [c for c in FIT_COLUMNS if c.startswith(fit_column(code, ""))]
    write_table(fits[[*FIT_ID_COLUMNS, *columns]], table)
    properties = ["log_age", "metallicity", "ebv"] + (["sigma_star"] if code == "ppxf" else [])
    agreements = fit_failures(fits, failures)
    for prop in properties:
        pairs = paired(fits, fit_column(code, prop))
        relative = prop == "sigma_star"
        agreements[prop] = {"all": agreement(pairs["observed"], pairs["predicted"], relative)}
        for group in sorted(pairs["galaxy_zoo"].unique()):
            sel = pairs["galaxy_zoo"] == group
            agreements[prop][group] = agreement(pairs["observed"][sel], pairs["predicted"][sel], relative)
    agreements["predictors"] = {}
    for name in kinds_in(fits)[1:]:
        agreements["predictors"][name] = {}
        for prop in properties:
            pairs = paired(fits, fit_column(code, prop))
            agreements["predictors"][name][prop] = agreement(pairs["observed"], pairs[name], prop == "sigma_star")
    agreements["seconds_per_fit"] = float(fits[fit_column(code, "seconds")].median())
    agreements.update(_versus_truth(fits, code, truth_table(truth_parquet, fits["specObjID"].unique())))
    write_json(agreements, summary)
    plots.property_histograms(fits, code, properties, figure)
    return agreements


#: The catalog's photometric stellar mass of the mass–metallicity figure: Maraston et al. (2009), as the paper's Figure 9.
STELLAR_MASS = "logMass_Maraston09"


def comparisons(
    fits: pd.DataFrame,
    dataset_h5: str | Path,
    *,
    summary: str | Path,
    table: str | Path,
    mass_metallicity: str | Path,
    degeneracy: str | Path,
    bimodality: str | Path,
) -> dict:
    """Mass–metallicity (Figure 9), the age–metallicity–dust degeneracy (Figure 10) and bimodality (Figure 11).

    Writes ``table`` (CSV: stellar mass, u − r and every kind's properties side by side),
    ``summary`` (JSON: agreement of each fitter's properties) and the three figures.
    """
    ids = fits["specObjID"].unique()
    with DatasetFile(dataset_h5) as data:
        catalog = data.catalog(
            data.rows_of(ids, "fitted galaxies"), (STELLAR_MASS, "modelMag_u", "modelMag_r")
        ).set_index(ids)
    catalog = catalog.rename(columns={STELLAR_MASS: "logMass"})
    catalog["u_minus_r"] = catalog["modelMag_u"] - catalog["modelMag_r"]
    side_by_side = catalog[["logMass", "u_minus_r"]].rename_axis("specObjID")
    for column in (
        *(fit_column("ppxf", k) for k in ("log_age", "metallicity", "ebv", "sigma_star")),
        *(fit_column("firefly", k) for k in ("log_age", "metallicity", "ebv")),
        "Dn4000",
    ):
        pairs = paired(fits, column)
        for kind in kinds_in(fits):
            side_by_side[f"{kind}_{column}"] = pairs[kind].reindex(side_by_side.index)
    write_table(side_by_side, table, index=True)
    agreements: dict[str, Any] = {}
    for code in ("ppxf", "firefly"):
        agreements[code] = {}
        for prop in ("metallicity", "log_age", "ebv"):
            pairs = paired(fits, fit_column(code, prop))
            agreements[code][prop] = agreement(pairs["observed"], pairs["predicted"])
    sigma = paired(fits, fit_column("ppxf", "sigma_star"))
    agreements["ppxf"]["sigma_star_relative"] = agreement(sigma["observed"], sigma["predicted"], relative=True)
    write_json(agreements, summary)
    plots.mass_metallicity(fits, catalog, mass_metallicity)
    plots.degeneracy(fits, degeneracy)
    plots.bimodality(fits, catalog, bimodality)
    return agreements
