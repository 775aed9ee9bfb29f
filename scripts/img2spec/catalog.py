"""The sample catalog and its spectra: the first dataset step, and the rejects of both steps.

:func:`read_catalog` and :func:`screen_catalog` check the catalog, :func:`redshift_problems` the
redshifts, and :func:`preprocess_catalog_spectra` turns the spec-lite files it names into
``spectra.h5`` (:mod:`img2spec.preprocessing`).  Every object that drops out, here or in
:func:`img2spec.dataset.build_dataset`, is a reject row (:data:`REJECT_COLUMNS`) with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pandas as pd

from .io import InputError, atomic_output, read_sdss_spectrum, spectrum_path
from .preprocessing import (
    PreprocessingSettings,
    preprocess_spectra,
)

if TYPE_CHECKING:
    from .dataset import DatasetSettings

#: Columns of every rejects table: the object, the step that dropped it, why, and the file concerned.
REJECT_COLUMNS = ["specObjID", "stage", "reason", "file"]


class TooManyRejects(RuntimeError):
    """More objects were rejected than the configured fraction allows."""


#: How a reject's reason starts when it is a repeated row whose first row is kept.
DUPLICATE = "duplicate specObjID"


def reject(specobjid, stage: str, reason: str, file: str | Path = "") -> dict:
    return {"specObjID": int(specobjid), "stage": stage, "reason": reason, "file": str(file)}


def reason_kind(stage: str, reason: str) -> str:
    """A reject's reason with its object-specific numbers blanked, so that reasons of one kind group together."""
    return f"{stage}: " + re.sub(r"\d+(\.\d+)?", "#", reason)


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read a catalog CSV and check the columns the dataset needs.

    Raises
    ------
    InputError
        If the file is missing or lacks ``specObjID``, ``plate``, ``mjd``, ``fiberID`` or ``z``,
        or if specObjID is not an integer column.
    """
    try:
        catalog = pd.read_csv(path, dtype={"run2d": str})  # a reduction name ("26", "v5_13_2"), never a number
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path}: unreadable catalog ({err})") from err
    missing = [c for c in ("specObjID", "plate", "mjd", "fiberID", "z") if c not in catalog.columns]
    if missing:
        raise InputError(f"{path}: catalog lacks column(s) {missing}")
    if not pd.api.types.is_integer_dtype(catalog["specObjID"]):
        raise InputError(f"{path}: specObjID must be integers, found {catalog['specObjID'].dtype}")
    return catalog


#: Catalog columns that locate a spectrum: positive integers.
LOCATOR_COLUMNS = ("plate", "mjd", "fiberID")


def screen_catalog(catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the first row of each specObjID whose locators and redshift are usable; list the others as rejects.

    ``plate``, ``mjd`` and ``fiberID`` must be positive integers and ``z`` a finite number; a reject
    names the catalog row (from 0, as the CSV's data rows) and the column.  The kept rows have these
    columns as int64 and float64.
    """
    catalog = catalog.reset_index(drop=True)
    rejects = []
    usable = np.ones(len(catalog), bool)
    parsed = {}
    for column in (*LOCATOR_COLUMNS, "z"):
        values = pd.to_numeric(catalog[column], errors="coerce").to_numpy(np.float64)
        if column == "z":
            bad = ~np.isfinite(values)
            what = "not a finite number"
        else:
            bad = ~np.isfinite(values) | (values < 1) | (values != np.round(values))
            what = "not a positive integer"
        for row in np.flatnonzero(bad & usable):
            rejects.append(
                reject(
                    catalog["specObjID"].iloc[row],
                    "catalog",
                    f"row {row}: {column} = {catalog[column].iloc[row]!r} is {what}",
                )
            )
        usable &= ~bad
        parsed[column] = values
    dup = catalog["specObjID"].duplicated(keep="first").to_numpy() & usable
    rejects += [
        reject(sid, "catalog", f"{DUPLICATE} (catalog row {row}; the first row is kept)")
        for row, sid in zip(np.flatnonzero(dup), catalog.loc[dup, "specObjID"])
    ]
    kept = catalog.loc[usable & ~dup].copy()
    for column in LOCATOR_COLUMNS:
        kept[column] = parsed[column][usable & ~dup].astype(np.int64)
    kept["z"] = parsed["z"][usable & ~dup]
    return kept.reset_index(drop=True), rejects


def redshift_problems(
    specobjid: np.ndarray, z_spectrum: np.ndarray, z_catalog: np.ndarray, settings: DatasetSettings
) -> list[dict]:
    """Rejects for spectra whose own redshift (``SPECOBJ`` Z) is unusable.

    A spectrum's Z must be finite, inside ``settings.z_min``–``z_max`` (widened by ``z_tolerance``)
    and within ``z_tolerance`` of the catalog's z; each reject names both values.
    """
    out = []
    tol = settings.z_tolerance
    for sid, zs, zc in zip(specobjid, z_spectrum, z_catalog):
        if not np.isfinite(zs):
            reason = f"spectrum redshift Z = {zs} is not finite (catalog z = {zc:.5f})"
        elif not settings.z_min - tol <= zs <= settings.z_max + tol:
            reason = (
                f"spectrum redshift Z = {zs:.5f} outside {settings.z_min:g}–{settings.z_max:g} "
                f"(dataset.z_min/z_max; catalog z = {zc:.5f})"
            )
        elif abs(zs - zc) > tol:
            reason = f"spectrum redshift Z = {zs:.5f} disagrees with catalog z = {zc:.5f} by more than {tol:g}"
        else:
            continue
        out.append(reject(sid, "redshift", reason))
    return out


def preprocess_catalog_spectra(
    catalog: pd.DataFrame,
    spectra_root: str | Path,
    settings: PreprocessingSettings,
    out_path: str | Path,
    chunk_size: int = 1024,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Read, check and preprocess every catalog object's spectrum; write ``spectra.h5``.

    The file holds ``specobjid``, ``flux`` (log normalised), ``ivar``, ``mask``, ``flux_lowres``,
    ``mask_lowres``, ``norm`` [1e-17 erg/s/cm²/Å], ``z_spec`` (the spectrum's own redshift), and
    the grids ``wave`` and ``wave_lowres`` [Å].

    Returns
    -------
    pandas.DataFrame
        Rejects (specObjID, stage, reason, file).
    """
    catalog, rejects = screen_catalog(catalog)
    n = len(catalog)
    n_pix, n_low = settings.wave.size, settings.wave_lowres.size
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        datasets = {
            "specobjid": h5.create_dataset("specobjid", (0,), np.int64, maxshape=(None,)),
            "flux": h5.create_dataset("flux", (0, n_pix), np.float32, maxshape=(None, n_pix), chunks=(64, n_pix)),
            "ivar": h5.create_dataset("ivar", (0, n_pix), np.float32, maxshape=(None, n_pix), chunks=(64, n_pix)),
            "mask": h5.create_dataset("mask", (0, n_pix), bool, maxshape=(None, n_pix), chunks=(64, n_pix)),
            "flux_lowres": h5.create_dataset("flux_lowres", (0, n_low), np.float32, maxshape=(None, n_low)),
            "mask_lowres": h5.create_dataset("mask_lowres", (0, n_low), bool, maxshape=(None, n_low)),
            "norm": h5.create_dataset("norm", (0,), np.float64, maxshape=(None,)),
            "z_spec": h5.create_dataset("z_spec", (0,), np.float64, maxshape=(None,)),
        }
        h5["wave"] = settings.wave
        h5["wave_lowres"] = settings.wave_lowres
        h5.attrs.update(
            {k: v for k, v in vars(settings).items() if not isinstance(v, tuple)}
            | {"norm_window": settings.norm_window}
        )
        for start in range(0, n, chunk_size):
            rows = catalog.iloc[start : start + chunk_size]
            spectra, ids = [], []
            for row in rows.itertuples(index=False):
                path = spectrum_path(spectra_root, row.plate, row.mjd, row.fiberID)
                try:
                    spectrum = read_sdss_spectrum(path, bad_bits=settings.bad_bits)
                except InputError as err:
                    rejects.append(reject(row.specObjID, "spectrum", str(err).split(": ", 1)[-1], path))
                    continue
                if spectrum.meta["specobjid"] != row.specObjID:
                    reason = f"file holds specObjID {spectrum.meta['specobjid']}, catalog says {row.specObjID}"
                    rejects.append(reject(row.specObjID, "spectrum", reason, path))
                    continue
                spectra.append(spectrum)
                ids.append(row.specObjID)
            result, bad = preprocess_spectra(spectra, settings)
            for position, reason in bad:
                rejects.append(reject(ids[position], "preprocessing", reason))
            m = result.index.size
            size = datasets["specobjid"].shape[0]
            for ds in datasets.values():
                ds.resize(size + m, axis=0)
            datasets["specobjid"][size:] = np.asarray(ids, np.int64)[result.index]
            for name in ("flux", "ivar", "mask", "flux_lowres", "mask_lowres", "norm"):
                datasets[name][size:] = getattr(result, name)
            datasets["z_spec"][size:] = [spectra[i].meta.get("z", np.nan) for i in result.index]
            log(f"spectra {min(start + chunk_size, n)}/{n}: {m} accepted, {len(bad)} rejected in preprocessing")
    return pd.DataFrame(rejects, columns=REJECT_COLUMNS)
