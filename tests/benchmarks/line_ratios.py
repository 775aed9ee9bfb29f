"""Why [O III] 5007 comes out high (issue 25): each predictor's line ratios by the observed galaxy's BPT class.

Run after the default DAG (reads only the lines and BPT targets' tables, no network):

    python tests/benchmarks/line_ratios.py

Among the galaxies whose observed EW(Hα) exceeds 5 Å, per observed class (star-forming, AGN) and in
all: the median log10 [O III]/Hβ and [N II]/Hα of the observed spectra and of each predictor, and the
median log10 of predicted over observed [O III] flux (the plausibility row of ``summary.md``).  An
estimator that cannot tell the classes apart draws both towards the population's middle: star-forming
galaxies (the majority) get too much [O III], AGN too little, and the pooled median comes out high.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from img2spec.evaluation import PREDICTOR_LABELS
from img2spec.metrics import EMITTING_EW
from report import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    evaluation = args.results / "evaluation"
    lines = pd.read_csv(evaluation / "lines" / "galaxies.csv")
    classes = pd.read_csv(evaluation / "bpt" / "galaxies.csv")[["specObjID", "observed_class"]]
    table = lines.merge(classes, on="specObjID")
    emitting = table[table["observed_ew_Halpha"] > EMITTING_EW]
    kinds = ["observed", *(k for k in PREDICTOR_LABELS if f"{k}_flux_OIII_5007" in table)]

    def log_ratio(frame: pd.DataFrame, top: str, bottom: str) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.nanmedian(np.log10(frame[top] / frame[bottom])))

    rows = []
    groups = [("all", emitting), *((c, g) for c, g in emitting.groupby("observed_class") if c != "passive")]
    for group, frame in groups:
        for kind in kinds:
            rows.append(
                {
                    "observed class": f"{group} ({len(frame)})",
                    "spectra": "observed" if kind == "observed" else PREDICTOR_LABELS[kind],
                    "log [O III]/Hβ": log_ratio(frame, f"{kind}_flux_OIII_5007", f"{kind}_flux_Hbeta"),
                    "log [N II]/Hα": log_ratio(frame, f"{kind}_flux_NII_6584", f"{kind}_flux_Halpha"),
                    "log [O III] pred/obs": np.nan
                    if kind == "observed"
                    else log_ratio(frame, f"{kind}_flux_OIII_5007", "observed_flux_OIII_5007"),
                }
            )
    report = pd.DataFrame(rows)
    header = list(report.columns)
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report.itertuples(index=False):
        cells = [("—" if np.isnan(v) else f"{v:+.3f}") if isinstance(v, float) else str(v) for v in row]
        text.append("| " + " | ".join(cells) + " |")
    emit("\n".join(text), args.out)


if __name__ == "__main__":
    main()
