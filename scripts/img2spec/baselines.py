"""Reference predictors that every report sets beside the networks' predictions.

- ``mean``: one spectrum for every galaxy, the mean training spectrum (linear normalised flux,
  averaged over unmasked pixels, then logged).
- ``knn``: the average (linear flux, then log) of the ``k`` training galaxies nearest in photometric
  features measured from the image cubes alone: aperture magnitudes and colours in a few radii and a
  concentration.  No catalog column and no redshift is used, so it sees exactly what the networks see.
- ``knn_rest``: the same neighbours' spectra averaged in the rest frame, placed at the neighbours'
  median redshift (a photometric redshift from the same features): what the rest-frame networks
  do, without networks.  Averaging in the rest frame keeps the lines sharp that the observed-frame
  average smears over the neighbours' redshift spread.
- ``truth`` (mock survey only): the mock's noiseless fibre spectrum (the spec-lite ``model``
  column: same LSF, no sky, no noise, no calibration error), preprocessed exactly like the observed
  one.  It is the floor of every metric: what a perfect predictor of the galaxy would score against
  its noisy observation.

A spectrum "from photometry" that the networks cannot beat means the networks have not learned the
image (issue 12 of img2spec's tracker).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from .dataset import DatasetFile
from .io import InputError, read_h5_rows, write_json
from .photometry import photometric_features, robust_centre_scale
from .preprocessing import FLUX_UNIT, move_spectra
from .settings import Settings

#: Predictors a report compares, in the order of its columns.
BASELINES = ("mean", "knn", "knn_rest", "truth")


@dataclass(frozen=True, kw_only=True)
class BaselineSettings(Settings):
    """The workflow's ``baselines`` section.

    Attributes
    ----------
    k : int
        Training galaxies averaged by the ``knn`` baseline.
    radii_pix : tuple of float
        Aperture radii of the photometric features [pixels].
    """

    SECTION: ClassVar[str] = "baselines"

    k: int
    radii_pix: tuple[float, ...]


def _log_mean_of_sums(
    weighted: np.ndarray, weights: np.ndarray, plain: np.ndarray, count: int, floor: float
) -> np.ndarray:
    """log of the weighted mean ``weighted / weights``, the plain mean ``plain / count`` where all weights are 0."""
    mean = np.where(weights > 0, weighted / np.maximum(weights, 1e-12), plain / max(count, 1))
    return np.log(np.maximum(mean, floor)).astype(np.float32)


def _log_mean(linear: np.ndarray, weights: np.ndarray, floor: float) -> np.ndarray:
    """log of the weighted mean over axis −2 (neighbours), falling back to the plain mean where all weights are 0."""
    return _log_mean_of_sums(
        (linear * weights).sum(axis=-2), weights.sum(axis=-2), linear.sum(axis=-2), linear.shape[-2], floor
    )


def mean_spectrum(
    flux: h5py.Dataset | np.ndarray,
    mask: h5py.Dataset | np.ndarray,
    rows: np.ndarray,
    chunk: int = 1024,
    floor: float = 1e-3,
) -> np.ndarray:
    """Mean linear flux of spectra ``rows`` (natural log in ``flux``, (N, L)) over unmasked pixels, as log (L,).

    Read ``chunk`` rows at a time, so memory does not grow with the number of spectra.  A pixel
    masked in every spectrum takes the plain mean.
    """
    n_pix = flux.shape[1]
    weighted, weights, plain = np.zeros(n_pix), np.zeros(n_pix), np.zeros(n_pix)
    for start in range(0, rows.size, chunk):
        block = rows[start : start + chunk]
        linear = np.exp(read_h5_rows(flux, block).astype(np.float64))
        good = ~read_h5_rows(mask, block)
        weighted += np.where(good, linear, 0.0).sum(0)
        weights += good.sum(0)
        plain += linear.sum(0)
    return _log_mean_of_sums(weighted, weights, plain, rows.size, floor)


def nearest_neighbours(train_features: np.ndarray, query_features: np.ndarray, k: int) -> np.ndarray:
    """Indices (N_query, k) of the k nearest training rows in features standardised by the training spread."""
    if not 1 <= k <= len(train_features):
        raise ValueError(f"k = {k} must be between 1 and the {len(train_features)} training galaxies")
    centre, scale = robust_centre_scale(train_features)
    train = (train_features - centre) / scale
    query = (query_features - centre) / scale
    distance = (query**2).sum(1)[:, None] - 2 * query @ train.T + (train**2).sum(1)[None, :]
    return np.argpartition(distance, k - 1, axis=1)[:, :k]


def knn_spectra(
    neighbours: np.ndarray,
    flux: h5py.Dataset | np.ndarray,
    mask: h5py.Dataset | np.ndarray,
    rows: np.ndarray,
    chunk: int = 64,
    floor: float = 1e-3,
) -> np.ndarray:
    """Average linear flux of the neighbours (N, k) of each query, per pixel over unmasked values, as log (N, L).

    ``neighbours`` index ``rows`` (the training rows of ``flux``); only the neighbours of ``chunk``
    queries are read at a time.
    """
    out = np.empty((len(neighbours), flux.shape[1]), np.float32)
    for start in range(0, len(neighbours), chunk):
        block = neighbours[start : start + chunk]
        needed, where = np.unique(block, return_inverse=True)
        linear = np.exp(read_h5_rows(flux, rows[needed]).astype(np.float64))[where.reshape(block.shape)]
        good = ~read_h5_rows(mask, rows[needed])[where.reshape(block.shape)]
        out[start : start + len(block)] = _log_mean(linear, good.astype(np.float64), floor)
    return out


def photometric_baselines(
    dataset_h5: str | Path, settings: BaselineSettings, split: str = "test", chunk: int = 1024
) -> dict[str, np.ndarray]:
    """``mean`` and ``knn`` predictions, full and low resolution, for the galaxies of ``split``.

    Images and spectra are read ``chunk`` rows at a time (the neighbours' spectra per block of
    queries), so memory grows with the size of ``split``, not of the training set.

    Returns a dict with ``specobjid`` (N,), ``mean`` / ``knn`` / ``knn_rest`` (N, 4500) and
    ``mean_lowres`` / ``knn_lowres`` / ``knn_rest_lowres`` (N, 563), natural log of normalised flux,
    and ``knn_rest_z`` (N,), the redshift the rest-frame average is placed at (clipped to the
    range the rest-frame grid covers).
    """
    with DatasetFile(dataset_h5) as data:
        train, query = data.rows("train"), data.rows(split)
        features = {}
        for name, rows in (("train", train), ("query", query)):
            features[name] = (
                np.concatenate(
                    [
                        photometric_features(data.read("images", rows[i : i + chunk]), settings.radii_pix)
                        for i in range(0, rows.size, chunk)
                    ]
                )
                if rows.size
                else np.zeros((0, 1))
            )
        out = {"specobjid": data.specobjid[query]}
        neighbours = nearest_neighbours(features["train"], features["query"], settings.k)
        redshift = np.clip(np.median(data.read("z_spec", train)[neighbours], axis=1), *data.delivery_z_range)
        out["knn_rest_z"] = redshift
        window, window_frame = data.normalisation
        for suffix, lowres in (("", False), ("_lowres", True)):
            flux, mask = data.spectra("observed", lowres)
            out[f"mean{suffix}"] = np.repeat(mean_spectrum(flux, mask, train, chunk)[None, :], query.size, axis=0)
            out[f"knn{suffix}"] = knn_spectra(neighbours, flux, mask, train)
            rest = knn_spectra(neighbours, *data.spectra("rest", lowres), train)
            placed, _ = move_spectra(
                data.wave_of("rest", lowres),
                rest,
                0.0,
                data.wave_of("observed", lowres),
                redshift,
                window,
                window_frame,
            )
            out[f"knn_rest{suffix}"] = placed.astype(np.float32)
    return out


def truth_spectra(
    dataset_h5: str | Path, spectra_root: str | Path, settings, split: str = "test"
) -> dict[str, np.ndarray]:
    """The mock's noiseless spectra of the galaxies of ``split``, preprocessed like the observed ones.

    Reads each galaxy's spec-lite ``model`` column (with the observation's ivar and bad pixels, so
    interpolation and masks match) and runs :func:`img2spec.preprocessing.preprocess_spectra` with
    the same ``settings`` (a :class:`~img2spec.preprocessing.PreprocessingSettings`).

    Returns ``specobjid``, ``truth`` (N, 4500) and ``truth_lowres`` (N, 563), natural log.

    Raises
    ------
    InputError
        Naming the file of a galaxy whose noiseless spectrum cannot be read or preprocessed.
    """
    from .io import read_sdss_spectrum, spectrum_path
    from .preprocessing import preprocess_spectra

    with DatasetFile(dataset_h5) as data:
        rows = data.rows(split)
        ids, locations = data.specobjid[rows], data.catalog(rows, ("plate", "mjd", "fiberID"))
    paths = [
        spectrum_path(spectra_root, p, m, f)
        for p, m, f in zip(locations["plate"], locations["mjd"], locations["fiberID"])
    ]
    spectra = [read_sdss_spectrum(path, bad_bits=settings.bad_bits, flux_column="model") for path in paths]
    result, rejects = preprocess_spectra(spectra, settings)
    if rejects:
        position, reason = rejects[0]
        raise InputError(f"{paths[position]}: noiseless model spectrum of specObjID {ids[position]} rejected: {reason}")
    return {"specobjid": ids, "truth": result.flux, "truth_lowres": result.flux_lowres}


def write_baselines(
    path: str | Path, predictions: dict[str, np.ndarray], wave: np.ndarray, wave_lowres: np.ndarray
) -> None:
    """All baselines of one split in one HDF5 file: ``specobjid``, ``wave``, ``wave_lowres`` and per
    baseline ``<name>`` (N, 4500) and ``<name>_lowres`` (N, 563), natural log of normalised flux."""
    from .io import atomic_output

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["wave"], h5["wave_lowres"] = wave, wave_lowres
        for key, values in predictions.items():
            h5.create_dataset(key, data=values)
        h5.attrs["baselines"] = [name for name in BASELINES if name in predictions]
        h5.attrs["flux_unit"] = FLUX_UNIT


def baseline_summary(
    dataset_h5: str | Path,
    settings: BaselineSettings,
    out_h5: str | Path,
    out_json: str | Path,
    spectra_root: str | Path | None = None,
    preprocessing=None,
    split: str = "test",
) -> dict:
    """Compute every baseline of ``split``, write them (:func:`write_baselines`) and a summary.

    ``spectra_root`` (the mock's spectra folder) adds the ``truth`` baseline.  The summary gives
    the settings, the features, and each baseline's median Δ̄ and MSE against the observed spectra.
    """
    import time

    from . import metrics

    started = time.perf_counter()
    predictions = photometric_baselines(dataset_h5, settings, split)
    if spectra_root is not None:
        truth = truth_spectra(dataset_h5, spectra_root, preprocessing, split)
        predictions.update({k: v for k, v in truth.items() if k != "specobjid"})
    with DatasetFile(dataset_h5) as data:
        rows = data.rows(split)
        observed, mask = data.read("flux", rows), data.read("mask", rows)
        wave, wave_lowres = data.wave, data.wave_lowres
    write_baselines(out_h5, predictions, wave, wave_lowres)
    names = [name for name in BASELINES if name in predictions]
    summary = {
        "split": split,
        "n": int(rows.size),
        "k": settings.k,
        "features": [f"r mag and u-g, g-r, r-i, i-z in r < {r:g} px" for r in settings.radii_pix] + ["concentration"],
        "seconds": round(time.perf_counter() - started, 2),
        "baselines": {
            name: {
                "median_mean_relative_deviation": float(
                    np.median(metrics.mean_relative_deviation(predictions[name], observed, mask))
                ),
                "median_mse": float(np.median(metrics.mse(predictions[name], observed, mask))),
            }
            for name in names
        },
    }
    write_json(summary, out_json)
    return summary
