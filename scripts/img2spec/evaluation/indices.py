"""Lick indices and Dn4000 of observed and predicted spectra (the paper's Figure 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import plots
from ..fitresults import FIT_ID_COLUMNS, INDEX_COLUMNS
from ..io import write_json
from .fitting import agreement, fit_failures, kinds_in, paired
from .inputs import write_table


def indices(
    fits: pd.DataFrame, *, summary: str | Path, table: str | Path, failures: str | Path, figure: str | Path
) -> dict:
    """Observed-versus-predicted indices: Pearson ρ with spirals excluded, as the paper (Figure 7).

    Writes ``table`` (CSV: the indices per galaxy and kind), ``failures`` (CSV), ``summary``
    (JSON) and ``figure`` (observed against predicted index).
    """
    write_table(fits[[*FIT_ID_COLUMNS, *INDEX_COLUMNS]], table)
    agreements = fit_failures(fits, failures)

    def index_agreement(pairs: pd.DataFrame, kind: str) -> dict:
        sel = (pairs["galaxy_zoo"] != "spiral") & pairs["observed"].notna() & pairs[kind].notna()
        rho = float(np.corrcoef(pairs["observed"][sel], pairs[kind][sel])[0, 1]) if sel.sum() > 2 else np.nan
        return {
            "pearson_rho_without_spirals": rho,
            "n": int(sel.sum()),
            "median_observed": float(pairs["observed"].median()),
            "median_predicted": float(pairs[kind].median()),
            **{
                k: v
                for k, v in agreement(pairs["observed"][sel], pairs[kind][sel]).items()
                if k in ("median_offset", "scatter_mad")
            },
        }

    agreements["predictors"] = {kind: {} for kind in kinds_in(fits)[1:]}
    for name in INDEX_COLUMNS:
        pairs = paired(fits, name)
        agreements[name] = index_agreement(pairs, "predicted")
        for kind in agreements["predictors"]:
            agreements["predictors"][kind][name] = index_agreement(pairs, kind)
    write_json(agreements, summary)
    plots.index_comparison(fits, INDEX_COLUMNS, agreements, figure)
    return agreements
