"""Prediction quality against training compute, with the baselines as lines (issue 12, item 3).

Each argument is a finished run's results folder (``results/`` of a run with one preset), given as
``LABEL=PATH``. Training compute is the sum over the four networks of the ``train`` rules' CPU time
(``cpu_time`` of ``benchmarks/train_<network>.tsv``, user + system seconds of all threads), which
other work on the machine does not inflate as it does wall-clock time. Every run's baselines are
drawn; runs on the same test galaxies draw the same lines.

    python tests/benchmarks/scaling.py tiny=results small=runs/small/results --out scaling.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from img2spec.networks import NETWORK_NAMES

BASELINE_STYLE = {"mean": ":", "knn": "--", "truth": "-."}


def run_point(results: Path) -> dict:
    seconds = sum(
        float(pd.read_csv(results / "benchmarks" / f"train_{n}.tsv", sep="\t")["cpu_time"].iloc[0])
        for n in NETWORK_NAMES
    )
    quality = json.loads((results / "evaluation" / "quality" / "summary.json").read_text())["predictors"]
    return {"core_hours": seconds / 3600, "quality": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=PATH to a results folder")
    parser.add_argument("--out", default="scaling.png")
    args = parser.parse_args()
    points = {label: run_point(Path(path)) for label, path in (run.split("=", 1) for run in args.runs)}
    metrics = (("median_mean_relative_deviation", "median Δ̄"), ("median_mse", "median MSE of ln flux"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, label) in zip(axes, metrics):
        for predictor, marker in (("predicted", "o"), ("median", "s")):
            xs = [p["core_hours"] for p in points.values() if predictor in p["quality"]]
            ys = [p["quality"][predictor]["all"][key] for p in points.values() if predictor in p["quality"]]
            ax.plot(
                xs,
                ys,
                marker=marker,
                label={"predicted": "selected candidate", "median": "median of candidates"}[predictor],
            )
        for name, style in BASELINE_STYLE.items():
            levels = sorted({round(p["quality"][name]["all"][key], 6) for p in points.values() if name in p["quality"]})
            for i, level in enumerate(levels):  # one line unless the runs were scored on different test galaxies
                ax.axhline(level, ls=style, color="grey", label=f"{name} baseline" if i == 0 else None)
        for run, p in points.items():
            ax.annotate(
                run, (p["core_hours"], p["quality"]["predicted"]["all"][key]), textcoords="offset points", xytext=(4, 4)
            )
        ax.set(xscale="log", xlabel="training compute [CPU core-hours]", ylabel=label)
        ax.xaxis.set_minor_formatter(NullFormatter())  # the few decades spanned leave only crowded minor labels
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(
        json.dumps(
            {
                k: {
                    "core_hours": v["core_hours"],
                    **{
                        f"{predictor} {m}": v["quality"][predictor]["all"][m]
                        for predictor in v["quality"]
                        for m, _ in metrics
                    },
                }
                for k, v in points.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
