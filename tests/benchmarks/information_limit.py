"""How well can any regressor on the cube's photometry predict the low-resolution spectrum? (issue 12)

Fits classical regressors of the ln low-resolution spectrum on the photometric features the ``knn``
baseline and the networks use (aperture colours, magnitude, concentration; measured on the cubes),
on the training galaxies, and scores them on the validation galaxies (MSE of ln flux over unmasked
pixels, the networks' ``val_mse`` / ``val_regression_mse``), at several training-set sizes.  If
the best of them sits where CDM_lr's regression head sits, the networks are at the information
limit of the photometry for this many training galaxies, and only more galaxies can move it.

Hyperparameters (k, ridge α, kernel width and α) are chosen on a held-out fifth of the training
set, never on the validation galaxies.  ``--frame rest`` regresses the rest-frame spectra (what
the rest-frame networks model, given the redshift), ``observed`` the spectra as observed.

    python tests/benchmarks/information_limit.py results/dataset/dataset.h5 --models results/models --out results/benchmarks/information_limit.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from img2spec.baselines import knn_spectra, nearest_neighbours
from img2spec.dataset import FRAMES, DatasetFile, spectrum_key
from img2spec.metrics import mse
from img2spec.photometry import photometric_features, robust_centre_scale
from report import emit


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    centre, scale = robust_centre_scale(train)
    return [(x - centre) / scale for x in (train, *others)]


def knn(x_train, y_train, m_train, x_query, k: int) -> np.ndarray:
    return knn_spectra(nearest_neighbours(x_train, x_query, k), y_train, m_train, np.arange(len(y_train)))


def ridge(x_train, y_train, x_query, alpha: float) -> np.ndarray:
    a, b = np.c_[x_train, np.ones(len(x_train))], np.c_[x_query, np.ones(len(x_query))]
    mean = y_train.mean(0)
    weights = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_train - mean))
    return b @ weights + mean


def kernel_ridge(x_train, y_train, x_query, gamma: float, alpha: float) -> np.ndarray:
    def kernel(p, q):
        return np.exp(-gamma * np.maximum((p**2).sum(1)[:, None] - 2 * p @ q.T + (q**2).sum(1)[None, :], 0))

    mean = y_train.mean(0)
    coefficients = np.linalg.solve(kernel(x_train, x_train) + alpha * np.eye(len(x_train)), y_train - mean)
    return kernel(x_query, x_train) @ coefficients + mean


GRIDS = {
    "kNN (linear-flux mean)": ("k", [10, 20, 40, 80]),
    "ridge (linear in the features)": ("alpha", [0.1, 1.0, 10.0, 100.0]),
    "kernel ridge (RBF)": ("gamma_alpha", [(g, a) for g in (0.01, 0.03, 0.1) for a in (0.3, 3.0)]),
}


def predict(method: str, parameter, x_train, y_train, m_train, x_query) -> np.ndarray:
    if method.startswith("kNN"):
        return knn(x_train, y_train, m_train, x_query, min(parameter, len(x_train)))
    if method.startswith("ridge"):
        return ridge(x_train, y_train, x_query, parameter)
    return kernel_ridge(x_train, y_train, x_query, *parameter)


def network_figures(models: Path | None) -> dict[str, float]:
    if models is None or not (models / "cdm_lr" / "metrics.csv").exists():
        return {}
    metrics = pd.read_csv(models / "cdm_lr" / "metrics.csv")
    last = metrics.dropna(subset=["val_mse"]).iloc[-1]
    out = {"CDM_lr, one sample (val_mse)": float(last["val_mse"])}
    if "val_regression_mse" in last and np.isfinite(last["val_regression_mse"]):
        out["CDM_lr regression head (val_regression_mse)"] = float(last["val_regression_mse"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--models", type=Path, help="results/models of a trained run, for the networks' validation MSE")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--frame", choices=FRAMES, default="observed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with DatasetFile(args.dataset) as dataset:
        data = {}
        for split in ("train", "val"):
            rows = dataset.rows(split)
            data[split] = (
                photometric_features(dataset.read("images", rows)),
                dataset.read(spectrum_key("flux_lowres", args.frame), rows),
                dataset.read(spectrum_key("mask_lowres", args.frame), rows),
            )
    (f_train, y_train, m_train), (f_val, y_val, m_val) = data["train"], data["val"]
    order = np.random.default_rng(0).permutation(len(f_train))
    table = {}
    for fraction in args.fractions:
        subset = order[: round(fraction * len(order))]
        fit, hold = subset[: int(0.8 * subset.size)], subset[int(0.8 * subset.size) :]
        column = f"{subset.size} training galaxies"
        x_fit, x_hold = standardise(f_train[fit], f_train[hold])
        x_all, x_val = standardise(f_train[subset], f_val)
        mean = np.log(np.exp(y_train[subset].astype(np.float64)).mean(0))
        table.setdefault("mean training spectrum", {})[column] = mse(np.broadcast_to(mean, y_val.shape), y_val, m_val)
        for method, (_, grid) in GRIDS.items():
            held_out = [
                np.mean(
                    mse(predict(method, p, x_fit, y_train[fit], m_train[fit], x_hold), y_train[hold], m_train[hold])
                )
                for p in grid
            ]
            best = grid[int(np.argmin(held_out))]
            scores = mse(predict(method, best, x_all, y_train[subset], m_train[subset], x_val), y_val, m_val)
            table.setdefault(method, {})[column] = scores
            table.setdefault(f"{method}: chosen parameter", {})[column] = best
        print(f"{column} done", flush=True)
    columns = [f"{round(f * len(order))} training galaxies" for f in args.fractions]
    lines = [
        f"Validation MSE of ln low-resolution flux ({args.frame} frame), {len(f_val)} galaxies: mean (median)",
        "",
        "| regressor on the cube photometry | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method, cells in table.items():
        if method.endswith("chosen parameter"):
            continue
        lines.append(
            f"| {method} | " + " | ".join(f"{cells[c].mean():.4f} ({np.median(cells[c]):.4f})" for c in columns) + " |"
        )
    for method in GRIDS:
        lines.append(
            f"| {method}: chosen parameter | "
            + " | ".join(str(table[f"{method}: chosen parameter"][c]) for c in columns)
            + " |"
        )
    for name, value in network_figures(args.models).items():
        lines.append(
            f"| {name}, all training galaxies | " + " | ".join(["–"] * (len(columns) - 1)) + f" | {value:.4f} (mean) |"
        )
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
