"""Prediction quality against training compute, with the baselines as lines (issue 12, item 3).

Each argument is a finished run's results folder (``results/`` of a run with one preset), given as
``LABEL=PATH``. Training compute is the sum over the four networks of the ``train`` rules'
wall-clock seconds (``benchmarks/train_<network>.tsv``) times the threads they ran on.

    python tests/benchmarks/scaling.py tiny=results small=runs/small/results --threads 2 --out scaling.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

NETWORKS = ("cdm_lr", "contrastive_lr", "cdm_sr", "contrastive_sr")
BASELINE_STYLE = {"mean": ":", "knn": "--", "truth": "-."}


def run_point(results: Path, threads: int) -> dict:
    seconds = sum(float(pd.read_csv(results / "benchmarks" / f"train_{n}.tsv", sep="\t")["s"].iloc[0]) for n in NETWORKS)
    quality = json.loads((results / "evaluation" / "quality" / "summary.json").read_text())["predictors"]
    return {"core_hours": seconds * threads / 3600, "quality": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=PATH to a results folder")
    parser.add_argument("--threads", type=int, default=2, help="threads the training rules ran on")
    parser.add_argument("--out", default="scaling.png")
    args = parser.parse_args()
    points = {label: run_point(Path(path), args.threads) for label, path in (run.split("=", 1) for run in args.runs)}
    metrics = (("median_mean_relative_deviation", "median Δ̄"), ("median_mse", "median MSE of ln flux"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    first = next(iter(points.values()))["quality"]
    for ax, (key, label) in zip(axes, metrics):
        for predictor, marker in (("predicted", "o"), ("median", "s")):
            xs = [p["core_hours"] for p in points.values() if predictor in p["quality"]]
            ys = [p["quality"][predictor]["all"][key] for p in points.values() if predictor in p["quality"]]
            ax.plot(xs, ys, marker=marker, label={"predicted": "selected candidate", "median": "median of candidates"}[predictor])
        for name, style in BASELINE_STYLE.items():
            if name in first:
                ax.axhline(first[name]["all"][key], ls=style, color="grey", label=f"{name} baseline")
        for run, p in points.items():
            ax.annotate(run, (p["core_hours"], p["quality"]["predicted"]["all"][key]), textcoords="offset points", xytext=(4, 4))
        ax.set(xscale="log", xlabel="training compute [CPU core-hours]", ylabel=label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(json.dumps({k: {"core_hours": v["core_hours"], **{m: v["quality"]["predicted"]["all"][m] for m, _ in metrics}}
                      for k, v in points.items()}, indent=2))


if __name__ == "__main__":
    main()
