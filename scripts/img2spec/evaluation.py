"""Evaluation targets: each reads predictions and observations and writes a summary, tables and figures.

Observed and predicted spectra go through the same code; the predicted ones are weighted with the
observed spectrum's inverse variance (the noise a real spectrum of that galaxy would have).  Each
spectrum is analysed at its own redshift, as the paper does (Sect. 5.1 and 5.3): :func:`redshift`
runs first and measures it on every kind of spectrum; the observed spectra stay at the catalog
redshift.  :func:`quality` compares a prediction with the observation after moving it from its
measured redshift to the observed one, and the fits of :func:`fit_chunk` put each spectrum in the
rest frame of its own redshift.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from . import metrics, plots
from .config import settings_from_section
from .dataset import DatasetFile, rows_of_ids
from .fitresults import (
    FIREFLY_COLUMNS,
    FIT_COLUMNS,
    FIT_ID_COLUMNS,
    INDEX_COLUMNS,
    PPXF_COLUMNS,
    fit_column,
    line_column,
)
from .io import atomic_output, read_h5_rows
from .predictions import PredictionFile
from .preprocessing import NORMALISATION_WINDOW, shift_to_redshift
from .spectral import BPT_CLASSES, BPT_LINES, EMISSION_LINES_VACUUM
from .templates import load_library
from .toolbox import build_basis, measure_redshift, prepare_templates
from .toolbox.firefly import fit_rest_firefly
from .toolbox.indices import indices_of_rest
from .toolbox.lines import LINES, bpt_class, lines_measured, measure_lines
from .toolbox.spectra import to_rest_frame
from .toolbox.stellar import FitMasks, fit_rest_ppxf

#: Every predictor a report compares with the observed spectra, in column order: the networks'
#: selected candidate (the paper's prediction), the per-pixel median of the networks' pooled
#: candidates (:func:`img2spec.inference.pooled_candidates`), and the baselines of :mod:`img2spec.baselines`.
PREDICTORS = ("predicted", "median", "mean", "knn", "knn_rest", "truth")
PREDICTOR_LABELS = {
    "predicted": "img2spec (selected candidate)",
    "median": "img2spec (median of candidates)",
    "mean": "mean training spectrum",
    "knn": "k nearest neighbours in image photometry",
    "knn_rest": "k nearest neighbours, rest-frame average at their median z",
    "truth": "noiseless truth (mock)",
}
#: The observed spectrum and the networks' prediction, always present.
KINDS = ("observed", "predicted")
#: Predictors fitted without bootstrap errors (their errors appear in no report; this keeps the fits cheap).
UNBOOTSTRAPPED = ("median", "mean", "knn", "knn_rest", "truth")


@dataclass(frozen=True)
class PpxfSettings:
    """The ``evaluation.ppxf`` section: regularisation, bootstrap refits and the fit's masks (:class:`FitMasks`)."""

    regul: float = 10.0
    bootstrap: int = 50
    clean: bool = True
    sky_half_width: float = 8.0
    interstellar_masks: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(FitMasks().interstellar))
    sky_lines: tuple[float, ...] = FitMasks().sky_lines

    @classmethod
    def from_config(cls, section: dict) -> PpxfSettings:
        masks = {name: (float(lo), float(hi)) for name, (lo, hi) in section["interstellar_masks"].items()}
        return settings_from_section(cls, {**section, "interstellar_masks": masks})


@dataclass(frozen=True)
class FireflySettings:
    """The ``evaluation.firefly`` section."""

    bootstrap: int = 10
    hpf_width: float = 100.0
    beam: int = 8
    max_components: int = 6


@dataclass(frozen=True)
class RedshiftSettings:
    """The ``evaluation.redshift`` section: template library, trial range, eigenspectra, outlier threshold."""

    library: str = "bc03"
    z_min: float = 0.0
    z_max: float = 0.3
    n_eigen: int = 5
    outlier: float = 0.05


@dataclass(frozen=True)
class LinesSettings:
    """The ``evaluation.lines`` section: continuum, detection, and the BPT Monte Carlo's errors."""

    continuum: str = "firefly"
    min_snr: float = 3.0
    detection: str = "positive"
    min_ew: float = 1.0
    draws: int = 5000
    ew_error: float = 1.0
    relative_errors: dict[str, float] = field(
        default_factory=lambda: {"Hbeta": 0.15, "OIII_5007": 0.15, "Halpha": 0.2, "NII_6584": 0.3}
    )


@dataclass(frozen=True)
class EvaluationSettings:
    """The workflow's ``evaluation`` section (see config/README.md), nested as it nests, and the spectra's resolving power."""

    chunk_size: int = 32
    seed: int = 0
    library: str = "bc03"
    kinematics_library: str | None = "m11_miles"
    kinematics_ages_gyr: tuple[float, ...] | None = (0.1, 0.3, 1.0, 3.0, 10.0)
    ages_gyr: tuple[float, ...] | None = None
    ppxf: PpxfSettings = PpxfSettings()
    firefly: FireflySettings = FireflySettings()
    redshift: RedshiftSettings = RedshiftSettings()
    lines: LinesSettings = LinesSettings()
    resolving_power: float = 1500.0

    @property
    def fit_masks(self) -> FitMasks:
        """The pPXF fit's interstellar and sky-line windows and its clipping."""
        return FitMasks(
            dict(self.ppxf.interstellar_masks), self.ppxf.sky_lines, self.ppxf.sky_half_width, self.ppxf.clean
        )

    @classmethod
    def from_config(cls, section: dict, resolving_power: float) -> EvaluationSettings:
        """Settings of the workflow's ``evaluation`` section (``emiles_url`` is the download rule's)."""
        nested = {
            "ppxf": PpxfSettings.from_config(section["ppxf"]),
            "firefly": settings_from_section(FireflySettings, section["firefly"]),
            "redshift": settings_from_section(RedshiftSettings, section["redshift"]),
            "lines": settings_from_section(LinesSettings, section["lines"]),
        }
        plain = {k: v for k, v in section.items() if k not in nested and k != "emiles_url"}
        return settings_from_section(cls, {**plain, **nested, "resolving_power": resolving_power})


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

    ``median`` is present when the predictions hold the candidates' median; the
    baselines when ``baselines_h5`` is given.
    """
    with PredictionFile(predictions_h5) as pred:
        ids = pred.specobjid(start, stop)
        out = {"predicted": pred.flux(start, stop)}
        median = pred.median(start, stop)
        if median is not None:
            out["median"] = median
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


#: Per-galaxy agreement scores of :func:`quality`; ``<score>_as_predicted`` is the same before alignment.
QUALITY_SCORES = ("mean_relative_deviation", "mse", "chi2_per_pixel")


def _scores(predicted: np.ndarray, observed: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "mean_relative_deviation": metrics.mean_relative_deviation(predicted, observed, mask),
        "mse": metrics.mse(predicted, observed, mask),
        "chi2_per_pixel": metrics.chi2_per_pixel(predicted, observed, ivar, mask),
    }


def quality(
    predictions_h5: str | Path,
    dataset_h5: str | Path,
    *,
    summary: str | Path,
    table: str | Path,
    figure: str | Path,
    zoom: str | Path,
    truth_parquet: str | Path | None = None,
    baselines_h5: str | Path | None = None,
    redshift_csv: str | Path | None = None,
    norm_window: tuple[float, float] = NORMALISATION_WINDOW,
    norm_frame: str = "observed",
) -> dict:
    """Spectral agreement of every predictor's test spectra with the observed ones (the paper's Sect. 5.1, Figure 5).

    As the paper does, each predicted spectrum is first moved from the redshift measured on it
    (``redshift_csv``, the redshift target's table) to the observed spectrum's, and renormalised in
    the normalisation window (:func:`img2spec.preprocessing.shift_to_redshift`); pixels it does not
    cover are left out.  The scores are also given as predicted, without the move
    (``*_as_predicted``).  A prediction whose redshift could not be measured has NaN aligned
    scores and is counted in ``n_without_redshift``.

    Writes ``table`` (CSV: Δ̄, MSE, χ²/N of the networks' prediction and, prefixed by the
    predictor's name, of the others, and morphology per galaxy), ``summary`` (JSON: medians overall
    and per morphology group, fraction with Δ̄ < 10%; the networks' under ``all`` and the groups,
    every predictor's under ``predictors``; under ``plausibility`` each kind's side-lobe fraction
    and fine-structure power, :func:`_shape_plausibility`; on the mock ``band_coverage_of_truth``, the
    share of the noiseless truth's pixels inside the moved band), ``figure`` (Δ̄ histograms) and ``zoom``
    (the lines of six example galaxies, :func:`img2spec.plots.line_zoom`).  On the mock survey,
    groups by the true morphology are added.
    """
    ids, predictors = read_predictors(predictions_h5, baselines_h5)
    with DatasetFile(dataset_h5) as data:
        rows = data.rows_of(ids, f"galaxies of {predictions_h5}")
        observed, mask, ivar = (data.read(name, rows) for name in ("flux", "mask", "ivar"))
        wave, z_spec = data.wave, data.read("z_spec", rows)
        scores = pd.DataFrame({"specObjID": ids, "galaxy_zoo": data.morphology(rows)})
    z_of = redshifts_of_kinds(redshift_csv, ids, z_spec, tuple(predictors))
    observed_power = metrics.fine_structure_power(observed, mask)
    plausibility = {"observed": _shape_plausibility(wave, observed, mask, z_spec, observed_power)}
    plausibility["observed"]["noise_over_observed_power_median"] = float(
        np.median(metrics.noise_power(observed, ivar, mask) / observed_power)
    )
    for name, predicted in predictors.items():
        prefix = "" if name == "predicted" else f"{name}_"
        aligned, uncovered = shift_to_redshift(wave, predicted, z_of[name], z_spec, norm_window, norm_frame)
        scores[f"{prefix}z"] = z_of[name]
        for score, values in _scores(predicted, observed, ivar, mask).items():
            scores[f"{prefix}{score}_as_predicted"] = values
        for score, values in _scores(np.nan_to_num(aligned), observed, ivar, mask | uncovered).items():
            scores[f"{prefix}{score}"] = np.where(np.isfinite(z_of[name]), values, np.nan)
        plausibility[name] = _shape_plausibility(wave, np.nan_to_num(aligned), mask | uncovered, z_spec, observed_power)
    groups = {"galaxy_zoo": scores["galaxy_zoo"]}
    if truth_parquet is not None:
        truth = pd.read_parquet(truth_parquet).set_index("specObjID")
        scores["truth_morphology"] = truth.loc[ids, "morphology"].to_numpy()
        groups["truth_morphology"] = scores["truth_morphology"]
    _write_table(scores, table)

    def medians(sub: pd.DataFrame, prefix: str, suffix: str) -> dict:
        deviation = sub[f"{prefix}mean_relative_deviation{suffix}"]
        return {
            "median_mean_relative_deviation": float(deviation.median()),
            "fraction_below_10pct": float((deviation < 0.1).sum() / max(len(sub), 1)),
            "median_mse": float(sub[f"{prefix}mse{suffix}"].median()),
            "median_chi2_per_pixel": float(sub[f"{prefix}chi2_per_pixel{suffix}"].median()),
        }

    def headline(selection: pd.Series, prefix: str = "") -> dict:
        sub = scores[selection]
        return {
            "n": len(sub),
            **medians(sub, prefix, ""),
            "n_without_redshift": int(sub[f"{prefix}z"].isna().sum()),
            "as_predicted": medians(sub, prefix, "_as_predicted"),
        }

    everything = scores["specObjID"].notna()
    medians_of: dict = {
        "alignment": "each prediction moved from its measured redshift to the observed spectrum's (paper Sect. 5.1)"
        if redshift_csv is not None
        else "none: every spectrum at the catalog redshift",
        "all": headline(everything),
    }
    for key, labels in groups.items():
        medians_of[key] = {str(label): headline(labels == label) for label in sorted(labels.unique())}
    medians_of["predictors"] = {}
    for name in predictors:
        prefix = "" if name == "predicted" else f"{name}_"
        medians_of["predictors"][name] = {"all": headline(everything, prefix)}
        for key, labels in groups.items():
            medians_of["predictors"][name][key] = {
                str(label): headline(labels == label, prefix) for label in sorted(labels.unique())
            }
    medians_of["plausibility"] = plausibility
    if "truth" in predictors:
        medians_of["band_coverage_of_truth"] = _band_coverage_of_truth(
            predictions_h5, wave, predictors["truth"], mask, z_spec, norm_window, norm_frame
        )
    _write_summary(medians_of, summary)
    plots.deviation_histograms(scores, "galaxy_zoo", figure)
    _line_zoom_figure(wave, observed, mask, z_spec, predictors, z_of, norm_window, norm_frame, ids, zoom)
    return medians_of


def _band_coverage_of_truth(predictions_h5, wave, truth_ln, mask, z_spec, norm_window, norm_frame) -> float:
    """Share of the noiseless truth's pixels (mock only) inside the widest band, moved to the observed redshift
    from the one it was placed at (``z`` of the predictions; the catalog's for observed-frame networks)."""
    with PredictionFile(predictions_h5) as pred:
        levels = pred.percentiles
        lower, upper = pred.band(levels[0]), pred.band(levels[-1])
        z_from = pred.redshift()
    z_from = np.where(np.isfinite(z_from), z_from, z_spec)
    (lower, missing_low), (upper, missing_high) = (
        shift_to_redshift(wave, band, z_from, z_spec, norm_window, norm_frame) for band in (lower, upper)
    )
    return metrics.band_coverage(
        np.fmin(lower, upper), np.fmax(lower, upper), truth_ln, mask | missing_low | missing_high
    )


def _line_zoom_figure(wave, observed, mask, z_spec, predictors, z_of, norm_window, norm_frame, ids, path) -> None:
    """:func:`img2spec.plots.line_zoom` of six test galaxies: the two weakest, two middling and two strongest in Hα."""
    ew = metrics.window_ew(wave, observed, mask, z_spec, EMISSION_LINES_VACUUM["Halpha"])
    order = [int(i) for i in np.argsort(np.where(np.isfinite(ew), ew, np.inf)) if np.isfinite(ew[i])]
    if not order:
        return
    middle = len(order) // 2
    picks = list(dict.fromkeys(order[:2] + order[middle - 1 : middle + 1] + order[-2:]))
    shown = {}
    for name in ("predicted", "median", "knn_rest", "truth"):
        if name in predictors:
            aligned, _ = shift_to_redshift(
                wave, predictors[name][picks], z_of[name][picks], z_spec[picks], norm_window, norm_frame
            )
            shown[PREDICTOR_LABELS[name]] = aligned
    labels = [f"specObjID {ids[i]}  z = {z_spec[i]:.3f}  EW(Hα) ≈ {ew[i]:.1f} Å (observed)" for i in picks]
    plots.line_zoom(wave, z_spec[picks], observed[picks], shown, labels, path)


def _shape_plausibility(
    wave: np.ndarray, flux_ln: np.ndarray, mask: np.ndarray, z: np.ndarray, observed_power: np.ndarray
) -> dict[str, float]:
    """Side-lobes beside Hβ and Hα, and fine-structure power against the observed spectra's, of one kind of spectrum.

    ``side_lobe_fraction``: galaxies whose deepest pixel 4–25 Å (rest) from Hβ or Hα lies below
    :data:`img2spec.metrics.SIDE_LOBE_DEPTH` of the continuum 30–60 Å away
    (:func:`img2spec.metrics.side_lobe_depth`); ``fine_structure_power_ratio_median``: median of the
    ratio of high-pass power (:func:`img2spec.metrics.fine_structure_power`) to the observed
    spectrum's.  Spectra are at the observed redshift ``z``.
    """
    depth = np.fmin(
        *(metrics.side_lobe_depth(wave, flux_ln, mask, z, EMISSION_LINES_VACUUM[line]) for line in ("Hbeta", "Halpha"))
    )
    measured = np.isfinite(depth)
    return {
        "side_lobe_fraction": float(np.mean(depth[measured] < metrics.SIDE_LOBE_DEPTH)) if measured.any() else np.nan,
        "fine_structure_power_ratio_median": float(
            np.median(metrics.fine_structure_power(flux_ln, mask) / observed_power)
        ),
    }


def _truth_table(truth_parquet: str | Path | None, ids: np.ndarray) -> pd.DataFrame | None:
    if truth_parquet is None:
        return None
    return pd.read_parquet(truth_parquet).set_index("specObjID").loc[ids]


def _write_summary(summary: dict, path: str | Path) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, default=float))


def _write_table(table: pd.DataFrame, path: str | Path, index: bool = False) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=index)


def _redshift_or_nan(wave, flux, ivar, basis, z_range, name) -> dict:
    try:
        return {**measure_redshift(wave, flux, ivar, basis, z_range, name=name), "error": ""}
    except ValueError as err:
        return {"z": np.nan, "z_err": np.nan, "delta_chi2_per_dof": np.nan, "error": str(err)}


def redshift(
    predictions_h5: str | Path,
    dataset_h5: str | Path,
    library_npz: str | Path,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    figure: str | Path,
    baselines_h5: str | Path | None = None,
) -> dict:
    """Redshifts measured on every predictor's and, as a reference, the observed test spectra; the paper's Sect. 4.2.

    Writes ``table`` (CSV, per galaxy and kind), ``summary`` (JSON: σ_MAD of Δz/(1+z), bias,
    outlier fraction |Δz|/(1+z) > ``outlier`` per kind, as the paper's Figure 6) and ``figure``
    (Figure 6, the networks' prediction).
    """
    spectra = load_test_spectra(predictions_h5, dataset_h5, baselines_h5=baselines_h5)
    options = settings.redshift
    basis = build_basis(
        load_library(library_npz),
        settings.resolving_power,
        n_eigen=options.n_eigen,
        z_max=0.35,
        obs_range=(min(3800.0, spectra.wave[0]), max(9200.0, spectra.wave[-1])),
    )
    redshifts = pd.DataFrame({"specObjID": spectra.ids, "z_spec": spectra.z, "galaxy_zoo": spectra.galaxy_zoo})
    started = time.perf_counter()
    for kind in spectra.kinds:
        results = [
            _redshift_or_nan(
                spectra.wave, f, i, basis, (options.z_min, options.z_max), f"{kind} spectrum of specObjID {s}"
            )
            for f, i, s in zip(spectra.spectra(kind), spectra.ivar, spectra.ids)
        ]
        for key in ("z", "z_err", "delta_chi2_per_dof", "error"):
            redshifts[f"{kind}_{key}"] = [r[key] for r in results]
        redshifts[f"{kind}_dz"] = (redshifts[f"{kind}_z"] - redshifts["z_spec"]) / (1 + redshifts["z_spec"])
    seconds = time.perf_counter() - started
    _write_table(redshifts, table)
    statistics: dict[str, Any] = {
        "n": len(redshifts),
        "spectra_per_second": len(spectra.kinds) * len(redshifts) / seconds,
    }
    for kind in spectra.kinds:
        dz = redshifts[f"{kind}_dz"]
        # the paper's |Δz|/(1+z) > 0.05 (Figure 6); a failed fit is an outlier
        outliers = ~(np.abs(dz) <= options.outlier)
        statistics[kind] = {
            "failed": int((redshifts[f"{kind}_error"] != "").sum()),
            "sigma_mad": metrics.sigma_mad(dz),
            "median_dz": float(dz.median()),
            "outlier_fraction": float(outliers.mean()),
            "sigma_mad_without_outliers": metrics.sigma_mad(dz[~outliers]),
        }
    _write_summary(statistics, summary)
    plots.redshift_density(redshifts["z_spec"], redshifts["predicted_z"], statistics["predicted"], figure)
    return statistics


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
        raise KeyError(f"fit results {unknown} are not in the fit-table schema (evaluation.FIT_COLUMNS)")
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
                f"{path}: fit table columns differ from evaluation.FIT_COLUMNS (missing {missing}, unexpected {extra}); "
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


def _fit_failures(fits: pd.DataFrame, path: str | Path) -> dict:
    """Write the failed fits (specObjID, kind, error) to ``path``; their count and the successful fits'."""
    failed = fits[fits["error"] != ""]
    _write_table(failed[["specObjID", "kind", "error"]], path)
    return {"failed_fits": len(failed), "fitted": int((fits["error"] == "").sum())}


def _versus_truth(fits: pd.DataFrame, code: str, truth: pd.DataFrame | None) -> dict:
    """On the mock: how well each kind's fit recovers the true light-weighted properties."""
    if truth is None:
        return {}
    out = {}
    for kind in kinds_in(fits):
        sub = fits[fits["kind"] == kind].set_index("specObjID")
        true = truth.reindex(sub.index)
        out[kind] = {
            "log_age": agreement(true["age_lw"], sub[fit_column(code, "log_age")]),
            "metallicity": agreement(true["metallicity_lw"], sub[fit_column(code, "metallicity")]),
            "ebv": agreement(true["ebv"], sub[fit_column(code, "ebv")]),
        }
        if code == "ppxf":
            out[kind]["sigma_star_relative"] = agreement(
                true["sigma_star"], sub[fit_column("ppxf", "sigma_star")], relative=True
            )
    return {"fit_minus_truth": out}


def stellar_populations(
    fits: pd.DataFrame,
    code: str,
    *,
    summary: str | Path,
    table: str | Path,
    failures: str | Path,
    figure: str | Path,
    truth_parquet: str | Path | None = None,
) -> dict:
    """Observed-versus-predicted agreement of one fitter's properties (Sect. 4.4, Figure 8).

    Writes ``table`` (CSV: the fitter's columns per galaxy and kind), ``failures`` (CSV: failed
    fits), ``summary`` (JSON) and ``figure`` (the differences' histograms).
    """
    columns = [c for c in FIT_COLUMNS if c.startswith(fit_column(code, ""))]
    _write_table(fits[[*FIT_ID_COLUMNS, *columns]], table)
    properties = ["log_age", "metallicity", "ebv"] + (["sigma_star"] if code == "ppxf" else [])
    agreements = _fit_failures(fits, failures)
    for prop in properties:
        pairs = paired(fits, fit_column(code, prop))
        relative = prop == "sigma_star"
        agreements[prop] = {"all": agreement(pairs["observed"], pairs["predicted"], relative)}
        for group in sorted(pairs["galaxy_zoo"].unique()):
            sel = pairs["galaxy_zoo"] == group
            agreements[prop][group] = agreement(pairs["observed"][sel], pairs["predicted"][sel], relative)
    agreements["predictors"] = {}
    for name in kinds_in(fits)[1:]:
        agreements["predictors"][name] = {}
        for prop in properties:
            pairs = paired(fits, fit_column(code, prop))
            agreements["predictors"][name][prop] = agreement(pairs["observed"], pairs[name], prop == "sigma_star")
    agreements["seconds_per_fit"] = float(fits[fit_column(code, "seconds")].median())
    agreements.update(_versus_truth(fits, code, _truth_table(truth_parquet, fits["specObjID"].unique())))
    _write_summary(agreements, summary)
    plots.property_histograms(fits, code, properties, figure)
    return agreements


def indices(
    fits: pd.DataFrame, *, summary: str | Path, table: str | Path, failures: str | Path, figure: str | Path
) -> dict:
    """Observed-versus-predicted indices: Pearson ρ with spirals excluded, as the paper (Figure 7).

    Writes ``table`` (CSV: the indices per galaxy and kind), ``failures`` (CSV), ``summary``
    (JSON) and ``figure`` (observed against predicted index).
    """
    _write_table(fits[[*FIT_ID_COLUMNS, *INDEX_COLUMNS]], table)
    agreements = _fit_failures(fits, failures)

    def index_agreement(pairs: pd.DataFrame, kind: str) -> dict:
        sel = (pairs["galaxy_zoo"] != "spiral") & pairs["observed"].notna() & pairs[kind].notna()
        rho = float(np.corrcoef(pairs["observed"][sel], pairs[kind][sel])[0, 1]) if sel.sum() > 2 else np.nan
        return {
            "pearson_rho_without_spirals": rho,
            "n": int(sel.sum()),
            "median_observed": float(pairs["observed"].median()),
            "median_predicted": float(pairs[kind].median()),
            **{
                k: v
                for k, v in agreement(pairs["observed"][sel], pairs[kind][sel]).items()
                if k in ("median_offset", "scatter_mad")
            },
        }

    agreements["predictors"] = {kind: {} for kind in kinds_in(fits)[1:]}
    for name in INDEX_COLUMNS:
        pairs = paired(fits, name)
        agreements[name] = index_agreement(pairs, "predicted")
        for kind in agreements["predictors"]:
            agreements["predictors"][kind][name] = index_agreement(pairs, kind)
    _write_summary(agreements, summary)
    plots.index_comparison(fits, INDEX_COLUMNS, agreements, figure)
    return agreements


#: The catalog's photometric stellar mass of the mass–metallicity figure: Maraston et al. (2009), as the paper's Figure 9.
STELLAR_MASS = "logMass_Maraston09"


def comparisons(
    fits: pd.DataFrame,
    dataset_h5: str | Path,
    *,
    summary: str | Path,
    table: str | Path,
    mass_metallicity: str | Path,
    degeneracy: str | Path,
    bimodality: str | Path,
) -> dict:
    """Mass–metallicity (Figure 9), the age–metallicity–dust degeneracy (Figure 10) and bimodality (Figure 11).

    Writes ``table`` (CSV: stellar mass, u − r and every kind's properties side by side),
    ``summary`` (JSON: agreement of each fitter's properties) and the three figures.
    """
    ids = fits["specObjID"].unique()
    with DatasetFile(dataset_h5) as data:
        catalog = data.catalog(
            data.rows_of(ids, "fitted galaxies"), (STELLAR_MASS, "modelMag_u", "modelMag_r")
        ).set_index(ids)
    catalog = catalog.rename(columns={STELLAR_MASS: "logMass"})
    catalog["u_minus_r"] = catalog["modelMag_u"] - catalog["modelMag_r"]
    side_by_side = catalog[["logMass", "u_minus_r"]].rename_axis("specObjID")
    for column in (
        *(fit_column("ppxf", k) for k in ("log_age", "metallicity", "ebv", "sigma_star")),
        *(fit_column("firefly", k) for k in ("log_age", "metallicity", "ebv")),
        "Dn4000",
    ):
        pairs = paired(fits, column)
        for kind in kinds_in(fits):
            side_by_side[f"{kind}_{column}"] = pairs[kind].reindex(side_by_side.index)
    _write_table(side_by_side, table, index=True)
    agreements: dict[str, Any] = {}
    for code in ("ppxf", "firefly"):
        agreements[code] = {}
        for prop in ("metallicity", "log_age", "ebv"):
            pairs = paired(fits, fit_column(code, prop))
            agreements[code][prop] = agreement(pairs["observed"], pairs["predicted"])
    sigma = paired(fits, fit_column("ppxf", "sigma_star"))
    agreements["ppxf"]["sigma_star_relative"] = agreement(sigma["observed"], sigma["predicted"], relative=True)
    _write_summary(agreements, summary)
    plots.mass_metallicity(fits, catalog, mass_metallicity)
    plots.degeneracy(fits, degeneracy)
    plots.bimodality(fits, catalog, bimodality)
    return agreements


def _line_inputs(fits: pd.DataFrame, kind: str, continuum: str, ids: np.ndarray) -> dict:
    sub = fits[fits["kind"] == kind].set_index("specObjID").reindex(ids)
    return {
        "fluxes": {name: sub[line_column(continuum, f"flux_{name}")].to_numpy(float) for name in LINES},
        "errors": {name: sub[line_column(continuum, f"flux_err_{name}")].to_numpy(float) for name in LINES},
        "ew": sub[line_column(continuum, "ew_Halpha")].to_numpy(float),
    }


def lines(
    fits: pd.DataFrame,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    failures: str | Path,
    figure: str | Path,
) -> dict:
    """Emission-line fluxes and EW(Hα) of observed and predicted spectra after subtracting the stellar model.

    Writes ``table`` (CSV: fluxes, errors and EW(Hα) per galaxy and kind), ``failures`` (CSV),
    ``summary`` (JSON: measured fractions and flux ratios per line) and ``figure``.
    """
    continuum = settings.lines.continuum
    ids = fits["specObjID"].unique()
    fluxes = pd.DataFrame({"specObjID": ids})
    measured: dict = {"continuum": continuum, **_fit_failures(fits, failures)}
    kinds = kinds_in(fits)
    inputs = {kind: _line_inputs(fits, kind, continuum, ids) for kind in kinds}
    for kind in kinds:
        for name in LINES:
            fluxes[f"{kind}_flux_{name}"] = inputs[kind]["fluxes"][name]
            fluxes[f"{kind}_flux_err_{name}"] = inputs[kind]["errors"][name]
        fluxes[f"{kind}_ew_Halpha"] = inputs[kind]["ew"]
    for name in LINES:
        obs, pred = (inputs[k]["fluxes"][name] for k in KINDS)
        snr = {k: inputs[k]["fluxes"][name] / inputs[k]["errors"][name] for k in KINDS}
        both = (
            (snr["observed"] >= settings.lines.min_snr)
            & (snr["predicted"] >= settings.lines.min_snr)
            & (obs > 0)
            & (pred > 0)
        )
        measured[name] = {f"fraction_measured_{k}": float(np.mean(snr[k] >= settings.lines.min_snr)) for k in KINDS}
        measured[name].update(
            {
                f"fraction_measured_{k}": float(
                    np.mean(inputs[k]["fluxes"][name] / inputs[k]["errors"][name] >= settings.lines.min_snr)
                )
                for k in kinds[2:]
            }
        )
        measured[name]["n_both"] = int(both.sum())
        measured[name]["log_ratio_median"] = (
            float(np.median(np.log10(pred[both] / obs[both]))) if both.any() else np.nan
        )
        measured[name]["log_ratio_scatter_mad"] = (
            metrics.sigma_mad(np.log10(pred[both] / obs[both])) if both.any() else np.nan
        )
    ew = {k: inputs[k]["ew"] for k in kinds}
    measured["ew_Halpha"] = {
        "median_observed": float(np.nanmedian(ew["observed"])),
        "median_predicted": float(np.nanmedian(ew["predicted"])),
        "median_difference": float(np.nanmedian(ew["predicted"] - ew["observed"])),
    }
    measured["predictors"] = {
        k: {
            "ew_Halpha_median_difference": float(np.nanmedian(ew[k] - ew["observed"])),
            "ew_Halpha_scatter_mad": metrics.sigma_mad(ew[k] - ew["observed"]),
        }
        for k in kinds[1:]
    }
    emitting = ew["observed"] > metrics.EMITTING_EW
    measured["plausibility"] = {
        kind: {
            **metrics.emission_plausibility(ew["observed"], ew[kind], settings.lines.min_ew),
            "line_flux_bias": {
                name: metrics.line_flux_bias(
                    inputs[kind]["fluxes"][name][emitting],
                    inputs["observed"]["fluxes"][name][emitting],
                    seed=settings.seed,
                )
                for name in BPT_LINES
            },
        }
        for kind in kinds[1:]
    }
    _write_table(fluxes, table)
    _write_summary(measured, summary)
    plots.line_comparison(fluxes, tuple(LINES), figure)
    return measured


def bpt(
    fits: pd.DataFrame,
    settings: EvaluationSettings,
    *,
    summary: str | Path,
    table: str | Path,
    confusion: str | Path,
    confusion_figure: str | Path,
    diagram: str | Path,
    truth_parquet: str | Path | None = None,
) -> dict:
    """Passive / star-forming / AGN classes of observed and predicted spectra (the paper's Sect. 4.6, Figure 12).

    Writes ``table`` (CSV: each kind's class per galaxy), ``confusion`` (CSV: the 3×3 matrix,
    actual: observed spectra; predicted: predicted spectra) and its ``confusion_figure``, the BPT
    ``diagram`` of both kinds, and ``summary`` (JSON: AGN accuracy, precision and recall with their
    Monte-Carlo spread under the paper's line-flux and EW errors, and on the mock every kind scored
    against the true class).
    """
    options = settings.lines
    ids = fits["specObjID"].unique()
    kinds = kinds_in(fits)
    inputs = {kind: _line_inputs(fits, kind, options.continuum, ids) for kind in kinds}
    measured = {
        kind: lines_measured(inputs[kind]["fluxes"], inputs[kind]["errors"], options.min_snr, options.detection)
        for kind in kinds
    }
    classes = {
        kind: bpt_class(inputs[kind]["fluxes"], inputs[kind]["ew"], measured[kind], options.min_ew) for kind in kinds
    }
    classified = pd.DataFrame({"specObjID": ids, **{f"{kind}_class": classes[kind] for kind in kinds}})
    matrix = metrics.confusion_matrix(classes["observed"], classes["predicted"], BPT_CLASSES)
    confusion_table = pd.DataFrame(
        matrix, index=[f"observed {c}" for c in BPT_CLASSES], columns=[f"predicted {c}" for c in BPT_CLASSES]
    )
    _write_table(confusion_table, confusion, index=True)

    def classifier(kind):
        # draws move fluxes and EW; whether a line counts as measured stays as found
        return lambda fluxes, ew: bpt_class(fluxes, ew, measured[kind], options.min_ew)

    monte_carlo = metrics.monte_carlo_scores(
        classifier("observed"),
        classifier("predicted"),
        inputs["observed"],
        inputs["predicted"],
        options.relative_errors,
        options.ew_error,
        options.draws,
        settings.seed,
    )
    scores = {
        "n": len(ids),
        "counts": {kind: {c: int(np.sum(classes[kind] == c)) for c in BPT_CLASSES} for kind in kinds},
        "confusion_matrix": {
            "rows_observed": list(BPT_CLASSES),
            "columns_predicted": list(BPT_CLASSES),
            "counts": matrix.tolist(),
        },
        "scores": metrics.classification_scores(classes["observed"], classes["predicted"]),
        "predictors": {
            kind: {
                **metrics.classification_scores(classes["observed"], classes[kind]),
                "confusion_counts": metrics.confusion_matrix(classes["observed"], classes[kind], BPT_CLASSES).tolist(),
            }
            for kind in kinds[1:]
        },
        "monte_carlo": {
            "draws": options.draws,
            "relative_errors": options.relative_errors,
            "ew_error": options.ew_error,
            "scores": monte_carlo,
        },
    }
    truth = _truth_table(truth_parquet, ids)
    if truth is not None:
        classified["true_class"] = truth["bpt_class"].to_numpy()
        scores["versus_truth"] = {
            kind: metrics.classification_scores(classified["true_class"].to_numpy(), classes[kind]) for kind in kinds
        }
    _write_table(classified, table)
    _write_summary(scores, summary)
    plots.confusion(matrix, BPT_CLASSES, confusion_figure)
    plots.bpt_pair({k: inputs[k]["fluxes"] for k in KINDS}, classes, diagram)
    return scores


#: Headline rows: label, the paper's value (None where it gives none), whether lower is better, and
#: where each predictor's value is found (``{p}`` is the predictor's name).
HEADLINES = (
    (
        "median mean relative deviation Δ̄",
        0.055,
        True,
        ("quality", "predictors", "{p}", "all", "median_mean_relative_deviation"),
    ),
    ("fraction with Δ̄ < 10%", None, False, ("quality", "predictors", "{p}", "all", "fraction_below_10pct")),
    ("median MSE of ln flux", None, True, ("quality", "predictors", "{p}", "all", "median_mse")),
    ("median χ²/N", None, True, ("quality", "predictors", "{p}", "all", "median_chi2_per_pixel")),
    (
        "median Δ̄ without redshift alignment",
        None,
        True,
        ("quality", "predictors", "{p}", "all", "as_predicted", "median_mean_relative_deviation"),
    ),
    (
        "median MSE without redshift alignment",
        None,
        True,
        ("quality", "predictors", "{p}", "all", "as_predicted", "median_mse"),
    ),
    ("redshift σ_MAD of Δz/(1+z)", 0.0118, True, ("redshift", "{p}", "sigma_mad")),
    ("redshift outlier fraction", None, True, ("redshift", "{p}", "outlier_fraction")),
    ("pPXF [M/H] within 0.1 dex", 0.86, False, ("ppxf", "predictors", "{p}", "metallicity", "fraction_within_0.1")),
    ("pPXF log age scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "log_age", "scatter_mad")),
    ("pPXF E(B−V) scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "ebv", "scatter_mad")),
    ("pPXF σ* relative scatter (std)", 0.20, True, ("ppxf", "predictors", "{p}", "sigma_star", "scatter_std")),
    ("pPXF σ* relative scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "sigma_star", "scatter_mad")),
    (
        "Dn4000 Pearson ρ (no spirals)",
        None,
        False,
        ("indices", "predictors", "{p}", "Dn4000", "pearson_rho_without_spirals"),
    ),
    (
        "[MgFe]′ Pearson ρ (no spirals)",
        None,
        False,
        ("indices", "predictors", "{p}", "MgFe_prime", "pearson_rho_without_spirals"),
    ),
    ("BPT class accuracy", None, False, ("bpt", "predictors", "{p}", "accuracy")),
    ("AGN accuracy", 0.82, False, ("bpt", "predictors", "{p}", "AGN_accuracy")),
    ("AGN precision", 0.73, False, ("bpt", "predictors", "{p}", "AGN_precision")),
    ("AGN recall", 0.74, False, ("bpt", "predictors", "{p}", "AGN_recall")),
)
#: Plausibility of the predicted lines (issue 25): label, lower-is-better (None: closest to zero is best),
#: where each kind's value is found, and whether the observed spectra have a value of their own (the
#: line rows compare each prediction with them, so they have none).
PLAUSIBILITY_ROWS = (
    (
        "false emission: EW(Hα) > 3 Å where observed < 1 Å",
        True,
        ("lines", "plausibility", "{p}", "false_emission_rate"),
        False,
    ),
    (
        "missed emission: EW(Hα) < 1 Å where observed > 3 Å",
        True,
        ("lines", "plausibility", "{p}", "missed_emission_rate"),
        False,
    ),
    *(
        (
            f"{label} flux bias, median log10(pred/obs), observed EW(Hα) > 5 Å",
            None,
            ("lines", "plausibility", "{p}", "line_flux_bias", line, "median_log_ratio"),
            False,
        )
        for label, line in (
            ("Hβ", "Hbeta"),
            ("[O III] 5007", "OIII_5007"),
            ("Hα", "Halpha"),
            ("[N II] 6584", "NII_6584"),
        )
    ),
    (
        "side-lobes: trough < 0.7 of the continuum 4–25 Å from Hβ or Hα",
        True,
        ("quality", "plausibility", "{p}", "side_lobe_fraction"),
        True,
    ),
    (
        "fine-structure power over the observed spectrum's (median)",
        None,
        ("quality", "plausibility", "{p}", "fine_structure_power_ratio_median"),
        True,
    ),
)
#: Where the observed spectra's share of noise in their high-pass power is found.
OBSERVED_NOISE_POWER = ("quality", "plausibility", "observed", "noise_over_observed_power_median")
#: On the mock: every kind of spectrum (the observed one included) against the truth.
TRUTH_ROWS = (
    ("pPXF [M/H] − truth, scatter (MAD)", ("ppxf", "fit_minus_truth", "{p}", "metallicity", "scatter_mad")),
    ("pPXF log age − truth, scatter (MAD)", ("ppxf", "fit_minus_truth", "{p}", "log_age", "scatter_mad")),
    (
        "pPXF σ*, relative to truth, scatter (MAD)",
        ("ppxf", "fit_minus_truth", "{p}", "sigma_star_relative", "scatter_mad"),
    ),
    ("BPT class accuracy against the true class", ("bpt", "versus_truth", "{p}", "accuracy")),
)


#: How each headline number is computed here, and where that differs from the paper's procedure.
HEADLINE_METHODS = {
    "median mean relative deviation Δ̄": (
        (
            "median over test galaxies of the mean over unmasked pixels of |F_pred − F_obs|/F_obs, linear normalised flux (eq. 9), "
            "after moving the prediction from the redshift measured on it to the observed one and renormalising it in 6900–6950 Å "
            "(Sect. 5.1)"
        ),
        (
            "the paper does not say how the moved spectrum is renormalised; pixels the moved prediction does not cover "
            "are left out"
        ),
    ),
    "fraction with Δ̄ < 10%": ("as Δ̄; a prediction without a measured redshift counts as above 10%", "—"),
    "median MSE of ln flux": (
        "mean squared difference of ln flux over unmasked pixels, after the same move",
        "the paper's MSE (Table 3) is in the rest frame over 4000–7000 Å",
    ),
    "median χ²/N": ("Σ (F_pred − F_obs)² ivar_obs / N over unmasked pixels, after the same move", "—"),
    "median Δ̄ without redshift alignment": (
        "Δ̄ of the prediction as it comes, on the observed wavelength grid",
        "not in the paper; shows what the alignment changes",
    ),
    "median MSE without redshift alignment": ("MSE of the prediction as it comes", "not in the paper"),
    "redshift σ_MAD of Δz/(1+z)": (
        (
            "1.4826 × MAD of Δz/(1+z_spec), z from a χ² scan over principal components of the redshift "
            "library (evaluation.redshift), observed-spectrum noise"
        ),
        "the paper does not describe its redshift measurement",
    ),
    "redshift outlier fraction": (
        "|Δz|/(1+z_spec) > evaluation.redshift.outlier (0.05), a failed fit counted as an outlier",
        "—",
    ),
    "pPXF [M/H] within 0.1 dex": (
        (
            "|[M/H]_pred − [M/H]_obs| ≤ 0.1, light-weighted, each spectrum fitted in the rest frame of its "
            "own redshift (Sect. 5.3) with evaluation.library, regul, Calzetti dust, gas lines, "
            "interstellar/sky masks and 3σ clipping"
        ),
        "the paper uses E-MILES; the default here is BC03 (config/sdss.yaml uses E-MILES)",
    ),
    "pPXF log age scatter (MAD)": ("1.4826 × MAD of log age_obs − log age_pred (light-weighted)", "—"),
    "pPXF E(B−V) scatter (MAD)": ("1.4826 × MAD of the stellar E(B−V) difference (Calzetti, A_V/4.05)", "—"),
    "pPXF σ* relative scatter (std)": ("standard deviation of (σ*_obs − σ*_pred)/σ*_obs", "—"),
    "pPXF σ* relative scatter (MAD)": ("1.4826 × MAD of (σ*_obs − σ*_pred)/σ*_obs", "not in the paper"),
    "Dn4000 Pearson ρ (no spirals)": (
        (
            "Pearson ρ of Dn4000 (Balogh et al. 1999) of predicted and observed rest-frame spectra, "
            "Galaxy Zoo spirals excluded (Figure 7)"
        ),
        "—",
    ),
    "[MgFe]′ Pearson ρ (no spirals)": (
        "as Dn4000, [MgFe]′ from Lick indices corrected for σ* with the pPXF model",
        "—",
    ),
    "BPT class accuracy": (
        (
            "passive if EW(Hα) < 1 Å or a line missing (evaluation.lines.detection), else star-forming below "
            "Kauffmann et al. (2003), AGN above; lines after subtracting the FIREFLY-method continuum (Sect. 5.7)"
        ),
        "the paper also labels passive by visual inspection",
    ),
    "AGN accuracy": ("AGN against the rest, observed spectra's class as truth", "—"),
    "AGN precision": ("as AGN accuracy", "—"),
    "AGN recall": ("as AGN accuracy", "—"),
}


def _lookup(loaded: dict, path: tuple[str, ...], predictor: str) -> float:
    """The number at ``path`` (``{p}`` standing for ``predictor``) of the loaded summaries; NaN where the
    target wrote None (not measurable).

    Raises
    ------
    KeyError
        Naming the target and the path, when the summary has no such entry: a renamed or forgotten
        key fails here instead of showing as an empty cell.
    """
    value: Any = loaded
    for depth, key in enumerate(path):
        key = key.format(p=predictor)
        if not isinstance(value, dict) or key not in value:
            where = ".".join(part.format(p=predictor) for part in path[1 : depth + 1])
            raise KeyError(f"the {path[0]} summary has no entry {where!r} (for {predictor!r})")
        value = value[key]
    return float(value) if value is not None else float("nan")


def _cell(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{value:.4g}"


def beats(summary: dict, challenger: str = "predicted", reference: str = "knn") -> dict[str, str | None]:
    """Per headline row: "wins", "loses" or "tie" for ``challenger`` against ``reference``; None where either is missing."""
    verdict: dict[str, str | None] = {}
    for row in summary["headlines"]:
        a, b = row["values"].get(challenger, np.nan), row["values"].get(reference, np.nan)
        if not (np.isfinite(a) and np.isfinite(b)):
            verdict[row["quantity"]] = None
        elif a == b:
            verdict[row["quantity"]] = "tie"
        else:
            verdict[row["quantity"]] = "wins" if (a < b) == row["lower_is_better"] else "loses"
    return verdict


def headline_summary(summaries: dict[str, str | Path], survey: str, out_json, out_md, preset: str = "tiny") -> dict:
    """Every predictor's headline numbers side by side, with the paper's, labelled with the dataset they come from.

    ``summaries`` maps target names (quality, redshift, ppxf, indices, bpt) to their summary.json,
    and optionally ``predictions`` to the prediction summary (its uncertainty-band coverage).
    The Markdown table has one column per predictor (:data:`PREDICTORS`) and says, from the
    numbers, on which rows the networks beat the nearest-neighbour baseline.
    """
    loaded = {name: json.loads(Path(path).read_text()) for name, path in summaries.items()}
    present = [p for p in PREDICTORS if p in loaded["quality"].get("predictors", {"predicted": None})]
    dataset = "the embedded mock SDSS survey" if survey == "mock" else "SDSS"
    rows: list[dict[str, Any]] = [
        {
            "quantity": label,
            "paper": paper,
            "lower_is_better": lower,
            "target": path[0],
            "values": {p: _lookup(loaded, path, p) for p in present},
        }
        for label, paper, lower, path in HEADLINES
    ]
    n_test = loaded["quality"]["all"]["n"]
    summary = {
        "dataset": dataset,
        "survey": survey,
        "n_test": n_test,
        "preset": preset,
        "paper": "Doorenbos, Sextl et al. 2024, ApJ 977, 131 (SDSS DR12, 1,506 test galaxies)",
        "predictors": {p: PREDICTOR_LABELS[p] for p in present},
        "headlines": rows,
    }
    if "bpt" in loaded and "monte_carlo" in loaded["bpt"]:
        summary["agn_monte_carlo_spread"] = {
            k: loaded["bpt"]["monte_carlo"]["scores"][k]["std"] for k in ("AGN_accuracy", "AGN_precision", "AGN_recall")
        }
    if survey == "mock":
        summary["versus_truth"] = [
            {"quantity": label, "values": {k: _lookup(loaded, path, k) for k in ("observed", *present)}}
            for label, path in TRUTH_ROWS
        ]
    for challenger in ("predicted", "median"):
        for reference in ("knn", "knn_rest"):
            both = {challenger, reference} <= set(present)
            summary[f"{challenger}_beats_{reference}"] = beats(summary, challenger, reference) if both else {}
    header = ["quantity", *(PREDICTOR_LABELS[p] for p in present), "paper (SDSS)"]
    lines = [
        f"# img2spec evaluation: headline numbers ({dataset})",
        "",
        f"Ours: {n_test} test galaxies of {dataset}, networks of the `{preset}` preset. Paper: {summary['paper']}.",
        "Every predictor goes through the same metrics and the same fits against the same observed spectra.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [_cell(row["values"][p]) for p in present]
        lines.append(
            f"| {row['quantity']} | "
            + " | ".join(cells)
            + f" | {_cell(row['paper']) if row['paper'] is not None else '—'} |"
        )
    for (challenger, who), (reference, whom) in itertools.product(
        (("predicted", "selected candidate"), ("median", "median of the candidates")),
        (("knn", "nearest-neighbour baseline"), ("knn_rest", "rest-frame nearest-neighbour baseline")),
    ):
        verdict = summary[f"{challenger}_beats_{reference}"]
        if not verdict:
            continue
        won, lost, tied = ([q for q, v in verdict.items() if v == outcome] for outcome in ("wins", "loses", "tie"))
        lines += [
            "",
            f"The networks' {who} beats the {whom} on {len(won)} of "
            f"{len(won) + len(lost) + len(tied)} rows"
            + (f"; it loses on: {', '.join(lost)}" if lost else "")
            + (f"; ties on: {', '.join(tied)}" if tied else "")
            + ".",
        ]
    if "agn_monte_carlo_spread" in summary:
        spread = summary["agn_monte_carlo_spread"]
        lines += [
            "",
            "Monte-Carlo spread of the networks' AGN scores under the paper's line errors: "
            + ", ".join(f"{k.replace('AGN_', '')} ± {v:.2g}" for k, v in spread.items())
            + ".",
        ]
    if "predictions" in loaded and "coverage_of_16_84_band" in loaded["predictions"]:
        band = loaded["predictions"]
        summary["band_coverage"] = {
            key: band.get(key)
            for key in (
                "coverage_of_16_84_band",
                "coverage_of_16_84_band_at_predicted_redshift",
                "coverage_of_16_84_band_as_drawn",
                "band_scale",
                "coverage_of_16_84_band_by_morphology",
            )
        }
        by_morphology = ", ".join(f"{m} {v:.2f}" for m, v in band["coverage_of_16_84_band_by_morphology"].items())
        truth_coverage = loaded.get("quality", {}).get("band_coverage_of_truth")
        lines += [
            "",
            (
                f"Uncertainty band: moved to the observed redshift, the 16–84% band of the candidates holds "
                f"{band['coverage_of_16_84_band']:.2f} of the test galaxies' observed pixels (nominal 0.68; {by_morphology})"
                + (f" and {truth_coverage:.2f} of the noiseless truth's" if truth_coverage is not None else "")
                + f"; at the predicted redshift {band.get('coverage_of_16_84_band_at_predicted_redshift', float('nan')):.2f}; "
                f"as drawn, before its calibration on validation galaxies (× {band.get('band_scale', 1.0):.2f}), "
                f"{band.get('coverage_of_16_84_band_as_drawn', float('nan')):.2f}."
            ),
        ]
    if "lines" in loaded:
        summary["plausibility"] = [
            {
                "quantity": label,
                "lower_is_better": lower,
                "values": {"observed": _lookup(loaded, path, "observed") if observed_has_one else float("nan")}
                | {k: _lookup(loaded, path, k) for k in present},
            }
            for label, lower, path, observed_has_one in PLAUSIBILITY_ROWS
        ]
        noise = _lookup(loaded, OBSERVED_NOISE_POWER, "observed")
        plausibility_header = ["quantity", "observed spectrum", *(PREDICTOR_LABELS[p] for p in present)]
        lines += [
            "",
            "## Plausibility of the lines",
            "",
            "Each predictor's spectra against the observed ones of the same galaxies, at the observed redshift; the flux",
            "biases are medians over the galaxies whose observed EW(Hα) exceeds 5 Å (bootstrap spreads in",
            (
                "`lines/summary.json`). The observed spectra's high-pass power is "
                f"{noise:.2f} noise (median): a noiseless perfect prediction would have a fine-structure ratio of about "
                f"{1 - noise:.2f}."
            ),
            "",
            "| " + " | ".join(plausibility_header) + " |",
            "|" + "---|" * len(plausibility_header),
        ]
        for row in summary["plausibility"]:
            lines.append(
                f"| {row['quantity']} | " + " | ".join(_cell(row["values"][k]) for k in ("observed", *present)) + " |"
            )
    if survey == "mock":
        truth_header = ["quantity", "observed spectrum", *(PREDICTOR_LABELS[p] for p in present)]
        lines += [
            "",
            "## Against the mock's truth",
            "",
            "| " + " | ".join(truth_header) + " |",
            "|" + "---|" * len(truth_header),
        ]
        for row in summary["versus_truth"]:
            lines.append(
                f"| {row['quantity']} | " + " | ".join(_cell(row["values"][k]) for k in ("observed", *present)) + " |"
            )
    lines += [
        "",
        "## How each number is computed",
        "",
        "Every row compares a predictor's spectrum with the observed spectrum of the same galaxy; fractions and scatters compare",
        "the fit of one with the fit of the other. Sources: `results/evaluation/<target>/summary.json`.",
        "",
        "| quantity | how | differs from the paper |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {HEADLINE_METHODS[label][0]} | {HEADLINE_METHODS[label][1]} |" for label, *_ in HEADLINES]
    for path, text in ((out_json, json.dumps(summary, indent=2, default=float)), (out_md, "\n".join(lines) + "\n")):
        with atomic_output(path) as tmp:
            Path(tmp).write_text(text)
    return summary
