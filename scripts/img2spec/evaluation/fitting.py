"""The fits every spectrum goes through (pPXF, the FIREFLY method, lines, indices), in chunks, and the fit tables' pairing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics
from ..fitresults import (
    FIREFLY_COLUMNS,
    FIT_COLUMNS,
    FIT_ID_COLUMNS,
    INDEX_COLUMNS,
    PPXF_COLUMNS,
    fit_column,
    line_column,
)
from ..io import atomic_output
from ..templates import load_library
from ..toolbox import prepare_templates
from ..toolbox.firefly import fit_rest_firefly
from ..toolbox.indices import indices_of_rest
from ..toolbox.lines import measure_lines
from ..toolbox.spectra import to_rest_frame
from ..toolbox.stellar import fit_rest_ppxf
from .inputs import PREDICTORS, UNBOOTSTRAPPED, load_test_spectra, redshifts_of_kinds, write_table
from .settings import EvaluationSettings


def fit_galaxy(
    wave,
    flux,
    ivar,
    z,
    templates,
    settings: EvaluationSettings,
    seed: int,
    name: str,
    bootstrap: bool = True,
    kinematic_templates=None,
) -> dict:
    """pPXF, then the FIREFLY method at pPXF's σ*, then indices with the pPXF stellar model.

    With ``kinematic_templates``, pPXF runs twice, as the MaNGA DAP does: the stellar velocity and
    σ* (with their bootstrap errors) from those templates, then populations, dust and gas from
    ``templates`` with the kinematics held fixed; a library too broad for the spectrum's resolution
    (BC03, 3 Å) then still gives populations without biasing σ*.  ``bootstrap=False`` skips the
    fitters' bootstrap refits (NaN errors).
    """
    row: dict = {}
    spectrum = to_rest_frame(wave, flux, ivar, z, settings.resolving_power, templates.velscale, name=name)
    refits = settings.ppxf.bootstrap if bootstrap else 0
    started = time.perf_counter()
    kinematics = None
    if kinematic_templates is not None:
        kinematics = fit_rest_ppxf(spectrum, kinematic_templates, 0.0, refits, seed, settings.fit_masks)
    ppxf_fit = fit_rest_ppxf(spectrum, templates, settings.ppxf.regul, refits, seed, settings.fit_masks, kinematics)
    row[fit_column("ppxf", "seconds")] = time.perf_counter() - started
    for key in (*PPXF_COLUMNS, *(f"{k}_err" for k in PPXF_COLUMNS), "chi2_per_pixel", "n_masked", "n_clipped"):
        row[fit_column("ppxf", key)] = ppxf_fit[key]
    started = time.perf_counter()
    ff = fit_rest_firefly(
        spectrum,
        templates,
        ppxf_fit["sigma_star"],
        settings.firefly.hpf_width,
        settings.firefly.beam,
        settings.firefly.max_components,
        settings.firefly.bootstrap if bootstrap else 0,
        seed,
    )
    row[fit_column("firefly", "seconds")] = time.perf_counter() - started
    for key in (*FIREFLY_COLUMNS, *(f"{k}_err" for k in FIREFLY_COLUMNS), "chi2_per_pixel"):
        row[fit_column("firefly", key)] = ff[key]
    continua = {
        "firefly": (ff["wave"], ff["flux"], ff["ivar"], ff["bestfit"]),
        "ppxf": (ppxf_fit["wave"], ppxf_fit["flux"], ppxf_fit["ivar"], ppxf_fit["stellar_model"]),
    }
    for continuum, arrays in continua.items():
        for key, value in measure_lines(*arrays, settings.resolving_power).items():
            row[line_column(continuum, key)] = value
    indices = indices_of_rest(spectrum, ppxf_fit)
    for key in INDEX_COLUMNS:
        row[key] = indices[key]
    return row


def fit_chunk(
    predictions_h5,
    dataset_h5,
    library_npz,
    settings: EvaluationSettings,
    chunk: int,
    out_path,
    baselines_h5=None,
    redshift_csv=None,
    kinematics_npz=None,
) -> pd.DataFrame:
    """Fit the observed spectra and every predictor's spectra of test galaxies ``chunk·chunk_size`` onwards.

    Each spectrum is fitted in the rest frame of its own redshift (:func:`redshifts_of_kinds`,
    recorded in ``z_fit``): the observed one at the catalog's, a predicted one at the redshift
    measured on it, as the paper (Sect. 5.3).  A galaxy whose fit fails, or whose spectrum has
    no measured redshift, keeps its row, with the reason in ``error`` and NaN values; the others
    go on.  Writes a parquet table, one row per galaxy and kind.  The predictors of
    :data:`UNBOOTSTRAPPED` are fitted without bootstrap refits.  With ``kinematics_npz`` the stellar
    kinematics come from that library (:func:`fit_galaxy`).
    """
    start = chunk * settings.chunk_size
    spectra = load_test_spectra(predictions_h5, dataset_h5, start, start + settings.chunk_size, baselines_h5)
    templates = prepare_templates(load_library(library_npz), settings.resolving_power, ages_gyr=settings.ages_gyr)
    kinematic_templates = (
        None
        if kinematics_npz is None
        else prepare_templates(
            load_library(kinematics_npz),
            settings.resolving_power,
            ages_gyr=settings.kinematics_ages_gyr,
        )
    )
    z_of = redshifts_of_kinds(redshift_csv, spectra.ids, spectra.z, spectra.kinds)
    rows = []
    for i in range(len(spectra)):
        for kind in spectra.kinds:
            flux = spectra.spectra(kind)[i]
            name = f"{kind} spectrum of specObjID {spectra.ids[i]}"
            z = float(z_of[kind][i])
            row = {
                "specObjID": int(spectra.ids[i]),
                "kind": kind,
                "galaxy_zoo": spectra.galaxy_zoo[i],
                "error": "",
                "z_fit": z,
            }
            if not np.isfinite(z):
                row["error"] = (
                    f"{name}: no redshift could be measured on it ({redshift_csv}), so it has no rest frame to be fitted in"
                )
                rows.append(row)
                continue
            try:
                row.update(
                    fit_galaxy(
                        spectra.wave,
                        flux,
                        spectra.ivar[i],
                        z,
                        templates,
                        settings,
                        settings.seed + start + i,
                        name,
                        bootstrap=kind not in UNBOOTSTRAPPED,
                        kinematic_templates=kinematic_templates,
                    )
                )
            except Exception as err:  # noqa: BLE001 - any fit failure is recorded for this galaxy; the others go on
                row["error"] = f"{name}: {type(err).__name__}: {err}"
                print(row["error"])
            rows.append(row)
    unknown = sorted({key for row in rows for key in row} - set(FIT_COLUMNS))
    if unknown:
        raise KeyError(f"fit results {unknown} are not in the fit-table schema (img2spec.fitresults.FIT_COLUMNS)")
    table = pd.DataFrame(rows).reindex(columns=list(FIT_COLUMNS))
    for column in FIT_COLUMNS[len(FIT_ID_COLUMNS) :]:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
    with atomic_output(out_path) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def gather_fits(chunk_paths: list[str | Path]) -> pd.DataFrame:
    """All chunk tables in one, in chunk order, each checked against :data:`FIT_COLUMNS`.

    Raises
    ------
    ValueError
        Naming the chunk file and the columns it lacks or has beyond the schema (a chunk written
        by another version of img2spec).
    """
    tables = []
    for path in chunk_paths:
        table = pd.read_parquet(path)
        if tuple(table.columns) != FIT_COLUMNS:
            missing, extra = (
                sorted(set(FIT_COLUMNS) - set(table.columns)),
                sorted(set(table.columns) - set(FIT_COLUMNS)),
            )
            raise ValueError(
                f"{path}: fit table columns differ from img2spec.fitresults.FIT_COLUMNS (missing {missing}, unexpected {extra}); "
                "refit it (snakemake --forcerun fit_chunk)"
            )
        tables.append(table)
    return pd.concat([t for t in tables if len(t)], ignore_index=True)


def kinds_in(fits: pd.DataFrame) -> tuple[str, ...]:
    """The kinds of spectra fitted: observed, then the predictors in :data:`PREDICTORS` order."""
    present = set(fits["kind"])
    return ("observed", *(name for name in PREDICTORS if name in present))


def paired(fits: pd.DataFrame, column: str) -> pd.DataFrame:
    """``column`` of every kind's fit side by side (observed, predicted, …), one row per galaxy."""
    wide = fits.pivot(index="specObjID", columns="kind", values=column)
    morphology = fits.drop_duplicates("specObjID").set_index("specObjID")["galaxy_zoo"]
    return wide.reindex(columns=list(kinds_in(fits))).assign(galaxy_zoo=morphology.loc[wide.index])


def agreement(observed: pd.Series, predicted: pd.Series, relative: bool = False) -> dict:
    """Median offset, robust scatter and fractions within 0.1 and 0.2 of observed − predicted."""
    good = observed.notna() & predicted.notna()
    diff = (observed - predicted)[good]
    if relative:
        diff = diff / observed[good]
    return {
        "n": int(good.sum()),
        "median_offset": float(diff.median()) if good.any() else np.nan,
        "scatter_mad": metrics.sigma_mad(diff),
        "scatter_std": float(diff.std()) if good.sum() > 1 else np.nan,
        "fraction_within_0.1": float((np.abs(diff) <= 0.1).mean()) if good.any() else np.nan,
        "fraction_within_0.2": float((np.abs(diff) <= 0.2).mean()) if good.any() else np.nan,
    }


def fit_failures(fits: pd.DataFrame, path: str | Path) -> dict:
    """Write the failed fits (specObjID, kind, error) to ``path``; their count and the successful fits'."""
    failed = fits[fits["error"] != ""]
    write_table(failed[["specObjID", "kind", "error"]], path)
    return {"failed_fits": len(failed), "fitted": int((fits["error"] == "").sum())}
