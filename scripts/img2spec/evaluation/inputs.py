"""What every target reads: the predictors' and observed test spectra, their redshifts, the mock's truth; and how targets write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..dataset import DatasetFile, rows_of_ids
from ..io import atomic_output, read_h5_rows
from ..predictions import PredictionFile

#: Every predictor a report compares with the observed spectra, in column order: the networks'
#: selected candidate (``inference.typicality_sr``), the candidate contrastive_sr alone scores best (the
#: paper's selection), the per-pixel median of the networks' pooled candidates
#: (:func:`img2spec.inference.pooled_candidates`), and the baselines of :mod:`img2spec.baselines`.
PREDICTORS = ("predicted", "contrastive_best", "median", "mean", "knn", "knn_rest", "truth")
PREDICTOR_LABELS = {
    "predicted": "img2spec (selected candidate)",
    "contrastive_best": "img2spec (the paper's selection: contrastive_sr's best)",
    "median": "img2spec (median of candidates)",
    "mean": "mean training spectrum",
    "knn": "k nearest neighbours in image photometry",
    "knn_rest": "k nearest neighbours, rest-frame average at their median z",
    "truth": "noiseless truth (mock)",
}
#: The observed spectrum and the networks' prediction, always present.
KINDS = ("observed", "predicted")
#: Predictors fitted without bootstrap errors (their errors appear in no report; this keeps the fits cheap).
UNBOOTSTRAPPED = ("contrastive_best", "median", "mean", "knn", "knn_rest", "truth")


@dataclass
class TestSpectra:
    """Observed test spectra and every predictor's spectra of the same galaxies, linear normalised flux.

    ``predictors`` maps a name of :data:`PREDICTORS` to its (N, L) spectra, in that order;
    ``ivar`` is the observed inverse variance, 0 where the observed pixel is masked.
    """

    ids: np.ndarray
    wave: np.ndarray
    observed: np.ndarray
    predictors: dict[str, np.ndarray]
    ivar: np.ndarray
    z: np.ndarray
    galaxy_zoo: np.ndarray
    catalog: pd.DataFrame

    def __len__(self) -> int:
        return self.ids.size

    @property
    def predicted(self) -> np.ndarray:
        return self.predictors["predicted"]

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("observed", *self.predictors)

    def spectra(self, kind: str) -> np.ndarray:
        return self.observed if kind == "observed" else self.predictors[kind]


def read_predictors(
    predictions_h5: str | Path, baselines_h5: str | Path | None = None, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """specObjIDs ``start:stop`` of the predictions and every predictor's natural-log spectra of them.

    ``contrastive_best`` and ``median`` are present when the predictions hold them; the
    baselines when ``baselines_h5`` is given.
    """
    with PredictionFile(predictions_h5) as pred:
        ids = pred.specobjid(start, stop)
        out = {"predicted": pred.flux(start, stop)}
        for name, values in (
            ("contrastive_best", pred.contrastive_best(start, stop)),
            ("median", pred.median(start, stop)),
        ):
            if values is not None:
                out[name] = values
    if baselines_h5 is not None:
        with h5py.File(baselines_h5, "r") as base:
            rows = rows_of_ids(base["specobjid"][()], ids, str(baselines_h5))
            for name in base.attrs["baselines"]:
                out[str(name)] = read_h5_rows(base[str(name)], rows)
    return ids, {name: out[name] for name in PREDICTORS if name in out}


def load_test_spectra(
    predictions_h5: str | Path,
    dataset_h5: str | Path,
    start: int = 0,
    stop: int | None = None,
    baselines_h5: str | Path | None = None,
) -> TestSpectra:
    """The predicted galaxies ``start:stop`` (in the predictions' order) joined to their observations and baselines."""
    ids, predictors = read_predictors(predictions_h5, baselines_h5, start, stop)
    predictors = {name: np.exp(values.astype(np.float64)) for name, values in predictors.items()}
    with DatasetFile(dataset_h5) as data:
        rows = data.rows_of(ids, f"galaxies of {predictions_h5}")
        observed = np.exp(data.read("flux", rows).astype(np.float64))
        ivar = np.where(data.read("mask", rows), 0.0, data.read("ivar", rows))
        return TestSpectra(
            ids,
            data.wave,
            observed,
            predictors,
            ivar,
            data.read("z_spec", rows),
            data.morphology(rows),
            data.catalog(rows),
        )


def redshifts_of_kinds(
    redshift_csv: str | Path | None, ids: np.ndarray, z_spec: np.ndarray, kinds: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The redshift each kind of spectrum of galaxies ``ids`` is analysed at.

    The observed spectra are at the catalog redshift ``z_spec``; every other kind at the redshift
    :func:`redshift` measured on it (column ``<kind>_z`` of ``redshift_csv``, NaN where that fit
    failed).  Without ``redshift_csv`` every kind is at ``z_spec`` (the pre-alignment behaviour,
    kept for spectra whose redshift is known).

    Raises
    ------
    ValueError
        Naming the file, if it lacks a galaxy or a kind.
    """
    if redshift_csv is None:
        return {kind: np.asarray(z_spec, dtype=np.float64) for kind in kinds}
    table = pd.read_csv(redshift_csv).set_index("specObjID")
    missing = [int(s) for s in ids if int(s) not in table.index]
    if missing:
        raise ValueError(f"{redshift_csv}: no redshift of {len(missing)} galaxies (e.g. specObjID {missing[:3]})")
    out = {"observed": np.asarray(z_spec, dtype=np.float64)}
    for kind in kinds:
        if kind == "observed":
            continue
        if f"{kind}_z" not in table:
            raise ValueError(f"{redshift_csv}: no column {kind}_z (redshifts of the {kind} spectra)")
        out[kind] = table.loc[ids, f"{kind}_z"].to_numpy(np.float64)
    return {kind: out[kind] for kind in kinds}


def truth_table(truth_parquet: str | Path | None, ids: np.ndarray) -> pd.DataFrame | None:
    if truth_parquet is None:
        return None
    return pd.read_parquet(truth_parquet).set_index("specObjID").loc[ids]


def write_table(table: pd.DataFrame, path: str | Path, index: bool = False) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=index)
