"""Prediction runs: whole datasets and cube files, with the band calibrated on validation galaxies.

Each run batches galaxies through :func:`img2spec.inference.sampling.predict_spectra`, scales the
band (:mod:`img2spec.bands`), flags galaxies unlike the training set (:mod:`img2spec.outliers`) and
writes a prediction file (:class:`img2spec.predictions.PredictionWriter`); a cube that cannot be used
or a galaxy whose prediction fails is listed with its reason while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bands import (
    BAND_SCALE,
    COVERAGE,
    COVERAGE_AS_DRAWN,
    COVERAGE_AT_PREDICTED_REDSHIFT,
    COVERAGE_BY_MORPHOLOGY,
    apply_band_scale,
    band_scale,
    bands_at_redshift,
    bands_of,
    scale_bands,
)
from ..dataset import DatasetFile
from ..diffusion import NoiseSchedule
from ..io import InputError, atomic_output, write_json
from ..metrics import band_coverage
from ..outliers import OutlierModel, outlier_model_of_dataset
from ..predictions import FLUX_CONTRASTIVE_BEST, MEDIAN, PredictionWriter, band_key, write_prediction_fits
from .sampling import InferenceSettings, TrainedModels, check_images, predict_spectra


def calibrate_bands(
    dataset_path, checkpoints: dict, settings: InferenceSettings, out_json, device: str = "cpu"
) -> dict:
    """Predict the first ``settings.calibration_galaxies`` validation galaxies and write the band's scale factor.

    The factor is fitted where a user compares the band with a spectrum: after the move from the
    predicted redshift to the observed one (:func:`bands_at_redshift`), so that it measures the
    spread of the spectra, not the redshift errors.  The JSON holds ``band_scale`` (1 when no galaxy
    is to be used), the galaxies used and the 16–84%-style band's coverage of their observed pixels
    before and after scaling.
    """

    summary = {
        "split": "val",
        "n_galaxies": 0,
        BAND_SCALE: 1.0,
        "percentiles": list(settings.percentiles),
        "frame": "moved to the observed redshift",
    }
    if settings.calibration_galaxies > 0:
        with DatasetFile(dataset_path) as data:
            rows = data.rows("val")[: settings.calibration_galaxies]
            images, observed, mask, z_spec = (data.read(key, rows) for key in ("images", "flux", "mask", "z_spec"))
            ids = data.specobjid[rows]
        if rows.size == 0:
            raise InputError(f"{dataset_path}: no validation galaxies to calibrate the uncertainty band on")
        models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
        result = predict_spectra(models, images, ids, settings)
        bands, uncovered = bands_at_redshift(models.grids, bands_of(result, settings.percentiles), result["z"], z_spec)
        factor = band_scale(bands, observed, mask | uncovered)
        low, high = min(settings.percentiles), max(settings.percentiles)
        scaled = scale_bands(bands, factor)
        summary.update(
            n_galaxies=int(rows.size),
            **{BAND_SCALE: factor},
            coverage_before=band_coverage(bands[low], bands[high], observed, mask | uncovered),
            coverage_after=band_coverage(scaled[low], scaled[high], observed, mask | uncovered),
        )
    write_json(summary, out_json)
    return summary


def network_evaluations(settings: InferenceSettings, cdm_lr: NoiseSchedule, cdm_sr: NoiseSchedule) -> int:
    """Denoiser evaluations per galaxy: k_lr + keep_lr·k_sr candidates × steps per sample; the ancestral
    sampler takes every step of its CDM's schedule down to the one its ``final_noise`` ends at."""

    def per_sample(schedule: NoiseSchedule, final_noise: float) -> int:
        if settings.sampler == "ancestral":
            return schedule.timesteps - schedule.final_step(final_noise)
        return settings.steps

    return settings.k_lr * per_sample(cdm_lr, settings.final_noise_lr) + settings.keep_lr * settings.k_sr * per_sample(
        cdm_sr, settings.final_noise_sr
    )


def predict_dataset(
    dataset_path,
    checkpoints: dict,
    settings: InferenceSettings,
    out_h5,
    fits_dir,
    summary_json,
    figure_png,
    device: str = "cpu",
    band_factor: float = 1.0,
) -> dict:
    """Predict the test split of ``dataset.h5``; write predictions, per-galaxy FITS, summary and figure.

    ``band_factor`` scales the bands' distances from the median (from :func:`calibrate_bands`); the
    summary gives the test galaxies' band coverage before and after it.  Its agreement numbers
    (Δ̄, MSE) compare the spectra where they are placed, at the predicted redshift, and say so in
    their keys; the evaluation's headline compares them after the move to the observed redshift.
    """
    import time

    from .. import metrics, plots

    with DatasetFile(dataset_path) as data:
        rows = data.rows("test")
        images, observed, mask, z_spec = (data.read(key, rows) for key in ("images", "flux", "mask", "z_spec"))
        ids, morphology = data.specobjid[rows], data.morphology(rows)
    models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
    start = time.perf_counter()
    result = predict_spectra(models, images, ids, settings, log=lambda message: print(message, flush=True))
    seconds = time.perf_counter() - start
    lo, hi = band_key(min(settings.percentiles)), band_key(max(settings.percentiles))
    low, high = float(min(settings.percentiles)), float(max(settings.percentiles))
    coverage_as_drawn = band_coverage(result[lo], result[hi], observed, mask)
    apply_band_scale(result, settings.percentiles, band_factor)
    moved, uncovered = bands_at_redshift(models.grids, bands_of(result, settings.percentiles), result["z"], z_spec)
    compared = mask | uncovered
    outliers = outlier_model_of_dataset(dataset_path, settings.ood_quantile, log=print)
    result["ood_score"] = outliers.score(images).astype(np.float32)
    result["ood_flag"] = outliers.flag(result["ood_score"])
    with PredictionWriter(out_h5, models.grids, settings, band_factor) as writer:
        writer.append(ids, result)
        writer.h5_attrs(ood_threshold=outliers.threshold, ood_quantile=outliers.quantile)
    Path(fits_dir).mkdir(parents=True, exist_ok=True)
    for i, sid in enumerate(ids):
        others = {key: result[key][i] for key in (FLUX_CONTRASTIVE_BEST, *map(band_key, settings.percentiles))}
        write_prediction_fits(
            Path(fits_dir) / f"{int(sid)}.fits",
            sid,
            models.wave,
            result["flux"][i],
            others,
            {
                "SAMPLER": settings.sampler,
                "STEPS": settings.steps,
                "FNOISELR": settings.final_noise_lr,
                "FNOISESR": settings.final_noise_sr,
                "TYPICSR": settings.typicality_sr,
            }
            | _ood_header(result, i, outliers)
            | ({"Z": float(result["z"][i])} if np.isfinite(result["z"][i]) else {}),
        )
    deviation = metrics.mean_relative_deviation(result["flux"], observed, mask)
    squared = metrics.mse(result["flux"], observed, mask)
    summary = {
        "n_galaxies": int(ids.size),
        "sampler": settings.sampler,
        "steps": settings.steps,
        "network_evaluations_per_galaxy": network_evaluations(settings, models.cdm_lr.schedule, models.cdm_sr.schedule),
        "seconds": round(seconds, 2),
        "galaxies_per_second": round(ids.size / seconds, 3),
        "median_mean_relative_deviation_at_predicted_redshift": float(np.median(deviation)),
        "fraction_mean_relative_deviation_below_10pct_at_predicted_redshift": float(np.mean(deviation < 0.1)),
        "median_mse_at_predicted_redshift": float(np.median(squared)),
        "median_mean_relative_deviation_of_candidates_median_at_predicted_redshift": float(
            np.median(metrics.mean_relative_deviation(result[MEDIAN], observed, mask))
        )
        if 50.0 in settings.percentiles
        else None,
        BAND_SCALE: band_factor,
        "ood_threshold": outliers.threshold,
        "ood_nominal_flag_rate": round(1.0 - outliers.quantile, 6),
        "ood_flag_rate": float(np.mean(result["ood_flag"])),
        COVERAGE_AS_DRAWN: coverage_as_drawn,
        COVERAGE_AT_PREDICTED_REDSHIFT: band_coverage(result[lo], result[hi], observed, mask),
        COVERAGE: band_coverage(moved[low], moved[high], observed, compared),
        COVERAGE_BY_MORPHOLOGY: {
            m: band_coverage(
                moved[low][morphology == m],
                moved[high][morphology == m],
                observed[morphology == m],
                compared[morphology == m],
            )
            for m in sorted(set(morphology))
        },
        "median_mean_relative_deviation_by_morphology_at_predicted_redshift": {
            m: float(np.median(deviation[morphology == m])) for m in sorted(set(morphology))
        },
    }
    write_json(summary, summary_json)
    picks = []
    for name in ("elliptical", "spiral", "uncertain"):
        picks += list(np.flatnonzero(morphology == name)[:2])
    picks = picks[:6] or list(range(min(4, ids.size)))
    labels = [f"specObjID {ids[i]}  {morphology[i]}  Δ̄ = {100 * deviation[i]:.1f}%" for i in picks]
    plots.prediction_examples(
        models.wave,
        observed[picks],
        result["flux"][picks],
        result[lo][picks],
        result[hi][picks],
        images[picks],
        labels,
        figure_png,
    )
    return summary


def _ood_header(result: dict[str, np.ndarray], i: int, outliers: OutlierModel) -> dict:
    """FITS header cards of galaxy ``i``'s out-of-distribution score and flag."""
    return {
        "OODSCORE": float(result["ood_score"][i]),
        "OODFLAG": bool(result["ood_flag"][i]),
        "OODTHRES": outliers.threshold,
    }


def predict_isolated(
    models: TrainedModels, images: np.ndarray, ids: np.ndarray, settings: InferenceSettings
) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """:func:`predict_spectra`, one galaxy at a time if the batch fails, so that one galaxy never costs the others.

    Returns the predictions of the galaxies that succeeded and, by position in ``ids``, why the others
    failed.  Prediction does not depend on batching, so the results equal a whole-batch run's.
    """
    try:
        return predict_spectra(models, images, ids, settings), {}
    except (RuntimeError, ValueError, InputError):
        if len(ids) == 1:
            raise
    parts, failures = [], {}
    for i in range(len(ids)):
        try:
            parts.append(predict_spectra(models, images[i : i + 1], ids[i : i + 1], settings))
        except (RuntimeError, ValueError, InputError) as err:
            failures[i] = f"prediction failed: {err}"
    if not parts:
        return {}, failures
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, failures


def predict_cube_file(
    cubes_path,
    dataset_path,
    checkpoints: dict,
    settings: InferenceSettings,
    out_h5,
    rejects_csv,
    device: str = "cpu",
    band_factor: float = 1.0,
    chunk_galaxies: int = 512,
    log: Callable[[str], None] = lambda message: None,
) -> int:
    """Predict spectra for every usable cube of a cube file, ``chunk_galaxies`` cubes at a time.

    Each galaxy stands alone: a cube that cannot be used (:func:`img2spec.cubes.image_problem`: non-finite
    pixels, a missing band, not sky-subtracted flux in nanomaggies), a repeated specObjID, or a galaxy
    whose prediction fails is listed in ``rejects_csv`` (specObjID, position in the file, reason, file)
    and the others are delivered.  Every delivered galaxy carries its out-of-distribution score and
    flag (:mod:`img2spec.outliers`).  Memory is bounded by the chunk, not by the file.

    ``dataset_path`` provides the training image statistics and wavelength grids; ``band_factor``
    the band calibration (:func:`calibrate_bands`).  Returns the number of galaxies predicted.

    Raises
    ------
    InputError
        For a file with the wrong shape or band order (see :func:`img2spec.cubes.open_cube_file`), or
        when no cube could be predicted (the rejects file is written first).
    """
    import pandas as pd

    from ..cubes import open_cube_file

    models = TrainedModels.from_dataset(checkpoints, dataset_path, device)
    outliers = outlier_model_of_dataset(dataset_path, settings.ood_quantile, log=log)
    rejects: list[tuple[int, int, str]] = []
    first_position: dict[int, int] = {}

    def write_rejects() -> None:
        table = pd.DataFrame(rejects, columns=["specObjID", "position", "reason"]).assign(file=str(cubes_path))
        with atomic_output(rejects_csv) as tmp:
            table.to_csv(tmp, index=False)

    try:
        with (
            open_cube_file(cubes_path) as cubes,
            PredictionWriter(out_h5, models.grids, settings, band_factor) as writer,
        ):
            for start in range(0, len(cubes), chunk_galaxies):
                images = cubes.read(slice(start, start + chunk_galaxies))
                ids = cubes.specobjid[start : start + len(images)]
                problems = check_images(images, str(cubes_path))
                for i, sid in enumerate(ids.tolist()):
                    if sid in first_position:
                        problems.setdefault(i, f"duplicate specObjID (first at position {first_position[sid]})")
                    else:
                        first_position[sid] = start + i
                usable = np.array([i for i in range(len(ids)) if i not in problems], dtype=int)
                result, failures = (
                    predict_isolated(models, images[usable], ids[usable], settings) if usable.size else ({}, {})
                )
                problems.update({int(usable[i]): reason for i, reason in failures.items()})
                rejects.extend((int(ids[i]), start + i, problems[i]) for i in sorted(problems))
                done = np.array([i for i in usable if i not in problems], dtype=int)
                if done.size:
                    apply_band_scale(result, settings.percentiles, band_factor)
                    result["ood_score"] = outliers.score(images[done]).astype(np.float32)
                    result["ood_flag"] = outliers.flag(result["ood_score"])
                    writer.append(ids[done], result)
                log(f"{start + len(images)}/{len(cubes)} cubes: {writer.n_written} predicted, {len(rejects)} rejected")
            writer.h5_attrs(ood_threshold=outliers.threshold, ood_quantile=outliers.quantile)
            if writer.n_written == 0:
                position, sid, reason = rejects[0][1], rejects[0][0], rejects[0][2]
                raise InputError(
                    f"{cubes_path}: no usable cube (e.g. specObjID {sid} at position {position}: {reason})"
                )
            return writer.n_written
    finally:
        write_rejects()
