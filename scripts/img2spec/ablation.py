"""Image ablation (the paper's Table 3): how much of the spectrum comes from resolution and colour.

Each variant keeps the 64 × 64 × 5 input shape, so every network and the whole pipeline run
unchanged, and removes information instead:

- resolution r: each band is averaged over (64/r)² blocks and the block mean repeated, i.e. r × r
  pixels over the same field of view (r = 1 keeps only the total flux per band);
- bands ``ugriz`` (all), ``gri`` (u and z set to their training mean), ``mean`` (every band the mean
  of the five) or ``g`` (only g).

A band set to a constant has zero spread; its standardisation σ is set to 1 so it enters the
networks as zeros.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import metrics, plots
from .cubes import CUBE_SIZE
from .dag import BAND_SETS, parse_variant
from .dataset import SPLITS, DatasetFile
from .io import BANDS, atomic_output, write_json
from .predictions import PredictionFile

#: Rest-frame range of the paper's Table 3 MSE [Å].
TABLE3_REST_RANGE = (4000.0, 7000.0)


def transform_images(images: np.ndarray, resolution: int, bands: str, band_mean: np.ndarray) -> np.ndarray:
    """Ablated copies of image cubes (n, 5, 64, 64) [nanomaggies per pixel].

    Parameters
    ----------
    resolution : int
        Pixels per side kept over the same field of view (divides 64).
    bands : str
        ``ugriz``, ``gri``, ``mean`` or ``g``.
    band_mean : ndarray, (5,)
        Training-split mean pixel value per band, given to removed bands.
    """
    n = images.shape[0]
    factor = CUBE_SIZE // resolution
    blocks = images.reshape(n, len(BANDS), resolution, factor, resolution, factor).mean(axis=(3, 5))
    out = np.repeat(np.repeat(blocks, factor, axis=2), factor, axis=3).astype(np.float32)
    if bands == "mean":
        out[:] = out.mean(axis=1, keepdims=True)
    else:
        for b, band in enumerate(BANDS):
            if band not in BAND_SETS[bands]:
                out[:, b] = band_mean[b]
    return out


def variant_dataset(source: str | Path, target: str | Path, variant: str, block: int = 256) -> dict:
    """Copy of ``dataset.h5`` with ablated images and their own training-split statistics."""
    resolution, bands = parse_variant(variant)
    with atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as h5:
            images = h5["images"]
            train = h5["split"][()] == SPLITS["train"]
            band_mean = images.attrs["train_mean"]
            total, squares, count = np.zeros(len(BANDS)), np.zeros(len(BANDS)), 0
            for start in range(0, images.shape[0], block):
                ablated = transform_images(images[start : start + block], resolution, bands, band_mean)
                images[start : start + block] = ablated
                chosen = ablated[train[start : start + block]].astype(np.float64)
                total += chosen.sum(axis=(0, 2, 3))
                squares += (chosen**2).sum(axis=(0, 2, 3))
                count += chosen.shape[0] * CUBE_SIZE * CUBE_SIZE
            mean = total / count
            std = np.sqrt(np.clip(squares / count - mean**2, 0.0, None))
            std[std < 1e-6 * np.maximum(np.abs(mean), 1e-12)] = 1.0
            images.attrs["train_mean"] = mean
            images.attrs["train_std"] = std
            images.attrs["ablation"] = variant
    return {
        "variant": variant,
        "resolution": resolution,
        "bands": bands,
        "train_mean": mean.tolist(),
        "train_std": std.tolist(),
    }


def rest_frame_mse(
    predictions_h5: str | Path, dataset_h5: str | Path, rest_range: tuple[float, float] = TABLE3_REST_RANGE
) -> pd.DataFrame:
    """MSE of ln flux per test galaxy over rest-frame ``rest_range`` [Å] (the paper's Table 3 metric)."""
    with PredictionFile(predictions_h5) as pred:
        ids, predicted = pred.specobjid(), pred.flux()
    with DatasetFile(dataset_h5) as data:
        rows = data.rows_of(ids, f"galaxies of {predictions_h5}")
        observed, mask = data.read("flux", rows), data.read("mask", rows)
        rest = data.wave[None, :] / (1 + data.read("z_spec", rows)[:, None])
    outside = (rest < rest_range[0]) | (rest > rest_range[1])
    return pd.DataFrame({"specObjID": ids, "mse": metrics.mse(predicted, observed, mask | outside)})


def collect(
    scores: dict[str, str | Path], *, summary: str | Path, table: str | Path, figure: str | Path
) -> pd.DataFrame:
    """One table (CSV ``table``, JSON ``summary``) and ``figure`` of all variants' MSE on the same test galaxies."""
    rows = []
    reference = None
    for name, path in scores.items():
        scored = pd.read_csv(path)
        ids = set(scored["specObjID"])
        if reference is None:
            reference = ids
        elif ids != reference:
            raise ValueError(f"{path}: variant {name} was scored on other test galaxies than the first variant")
        resolution, bands = parse_variant(name)
        rows.append(
            {
                "variant": name,
                "resolution": resolution,
                "bands": bands,
                "n": len(scored),
                "mean_mse": float(scored["mse"].mean()),
                "median_mse": float(scored["mse"].median()),
                "sem_mse": float(scored["mse"].std(ddof=1) / np.sqrt(len(scored))) if len(scored) > 1 else np.nan,
            }
        )
    result = pd.DataFrame(rows)
    with atomic_output(table) as tmp:
        result.to_csv(tmp, index=False)
    write_json({"rest_range": list(TABLE3_REST_RANGE), "variants": rows}, summary)
    plots.ablation(result, figure)
    return result
