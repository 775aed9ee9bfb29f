"""A changed recipe of one network against the delivered one, on the line measures of issue 25 (same other networks).

Run after the default DAG, e.g. with CDM_lr's regression head learning the conditional mean instead of
the median:

    OMP_NUM_THREADS=2 python tests/benchmarks/network_variant.py --network cdm_lr \\
        --change '{"regression": {"hidden": 256, "loss_weight": 1.0, "statistic": "mean"}}' \\
        --folder results/benchmarks/cdm_lr_variant

The variant is trained on the default dataset into ``--folder`` (reused when its ``last.ckpt``
exists); the delivered and the changed network are each chained with the other three delivered
networks as the inference delivers, and scored with :func:`line_hypotheses.score` (false emission,
Hα excess, side-lobes, fine structure, [O III] excess) on the selected candidate, the first
full-resolution draw (from the low-resolution candidate contrastive_lr ranks best), the median of
the 15 full-resolution candidates and the delivered median (the pool of all low-resolution
draws), each at its predicted redshift against the observed spectra.  The last validation metrics
of both trainings are listed below the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from img2spec.config import network_hyperparameters
from img2spec.dataset import DatasetFile
from img2spec.inference import InferenceSettings, TrainedModels, predict_spectra
from img2spec.networks import NETWORK_NAMES
from img2spec.predictions import PredictionFile
from img2spec.train import CheckpointFiles, train_network
from line_hypotheses import linear_move, score
from report import emit

RUN = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32-true", "num_workers": 0, "seed": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--network", choices=NETWORK_NAMES, required=True)
    parser.add_argument(
        "--change", required=True, help="JSON of the network's hyperparameters merged into the tiny preset"
    )
    parser.add_argument("--folder", type=Path, required=True, help="where the variant is trained (or found)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = args.results
    torch.set_num_threads(2)
    files = CheckpointFiles.in_folder(args.folder)
    if not files.last.exists():
        changed = {"preset": "tiny", "networks": {args.network: json.loads(args.change)}}
        hp = network_hyperparameters(changed)[args.network]
        train_network(str(results / "dataset" / "dataset.h5"), args.network, hp, RUN, files, progress=False)
    with PredictionFile(results / "predictions" / "test.h5") as predictions:
        ids, wave_drawn = predictions.specobjid(), predictions.wave_drawn
    with DatasetFile(results / "dataset" / "dataset.h5") as data:
        rows = data.rows_of(ids)
        observed, mask = data.read("flux", rows), data.read("mask", rows)
        images, z = data.read("images", rows), data.read("z_spec", rows)
        wave = data.wave
    lines = pd.read_csv(results / "evaluation" / "lines" / "galaxies.csv").set_index("specObjID")
    ew_measured = lines.loc[ids, "observed_ew_Halpha"].to_numpy(float)
    delivered = {name: results / "models" / name / "last.ckpt" for name in NETWORK_NAMES}
    scored = []
    variants = {f"delivered {args.network}": delivered[args.network], f"{args.network} with {args.change}": files.last}
    for label, checkpoint in variants.items():
        models = TrainedModels.from_dataset({**delivered, args.network: checkpoint}, results / "dataset" / "dataset.h5")
        drawn = predict_spectra(models, images, ids, InferenceSettings.defaults(), keep_candidates=True)
        candidates = drawn["candidates"].astype(np.float64)
        products = {
            "selected candidate": drawn["flux_drawn"],
            "first full-resolution draw": candidates[:, 0],
            "median of the 15 full-resolution candidates": np.median(candidates, axis=1),
        }
        moved = {name: linear_move(wave_drawn, rest, wave, drawn["z"]) for name, rest in products.items()}
        # the delivered median: the pool of all low-resolution draws (already at the predicted redshift)
        moved["median of candidates (delivered pool)"] = drawn["flux_p50"]
        for name, flux in moved.items():
            scored.append(
                {"network": label, "product": name, **score(wave, flux, drawn["z"], observed, z, mask, ew_measured)}
            )
    columns = list(scored[0])
    text = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    text += [
        "| " + " | ".join([row["network"], row["product"]] + [f"{row[c]:.3f}" for c in columns[2:]]) + " |"
        for row in scored
    ]
    for label, checkpoint in variants.items():
        validation = pd.read_csv(Path(checkpoint).parent / "metrics.csv").filter(regex="^val_").dropna(how="all")
        last = ", ".join(f"{name} {value:.5g}" for name, value in validation.ffill().iloc[-1].items())
        text.append(f"\n{label}, last validation: {last}")
    emit("\n".join(text), args.out)


if __name__ == "__main__":
    main()
