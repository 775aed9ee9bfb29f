"""The uncertainty band of a prediction: per-pixel percentiles of the candidates, moved and calibrated.

The band is what the paper left as future work (Sect. 6): :func:`img2spec.inference.predict_spectra`
draws it, :func:`band_scale` calibrates its width on validation galaxies (split conformal), and the
prediction files carry it as ``flux_p{p}`` (:func:`img2spec.predictions.band_key`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .predictions import band_key
from .preprocessing import shift_to_redshift

if TYPE_CHECKING:
    from .inference import SpectrumGrids

#: Keys of the band's scale and coverage in the prediction summary (``results/predictions/summary.json``),
#: written by :func:`img2spec.inference.predict_dataset` and read by the headline report.
BAND_SCALE = "band_scale"
COVERAGE = "coverage_of_16_84_band"
COVERAGE_AT_PREDICTED_REDSHIFT = "coverage_of_16_84_band_at_predicted_redshift"
COVERAGE_AS_DRAWN = "coverage_of_16_84_band_as_drawn"
COVERAGE_BY_MORPHOLOGY = "coverage_of_16_84_band_by_morphology"
COVERAGE_KEYS = (COVERAGE, COVERAGE_AT_PREDICTED_REDSHIFT, COVERAGE_AS_DRAWN, BAND_SCALE, COVERAGE_BY_MORPHOLOGY)


def band_scale(bands: dict[float, np.ndarray], observed_ln: np.ndarray, mask: np.ndarray) -> float:
    """Factor for the bands' distances from the median that makes the outer band hold its nominal share.

    Each good observed pixel above the median is measured in units of the distance from the median
    to the highest percentile, each below it in units of the distance to the lowest; the factor is
    the quantile of those distances at the nominal coverage (0.68 for 16–84%).  This is split
    conformal calibration of a scaled band (Angelopoulos & Bates 2021, Sect. 2.3): fitted on galaxies
    the networks were not trained on, it makes the band hold its nominal share of pixels of new
    galaxies drawn alike, whatever the spread of the diffusion models' samples.

    Parameters
    ----------
    bands : dict
        Percentile → (N, L) natural-log flux; must hold 50 and at least one percentile on each side.
    observed_ln, mask : (N, L)
        Observed natural-log flux and its bad-pixel mask.
    """
    levels = sorted(bands)
    if 50.0 not in bands or levels[0] >= 50 or levels[-1] <= 50:
        raise ValueError(
            f"inference.percentiles {levels}: calibrating the band needs 50 and one percentile on each side of it"
        )
    median, lower, upper = bands[50.0], bands[levels[0]], bands[levels[-1]]
    above = observed_ln >= median
    width = np.where(above, upper - median, median - lower)
    distance = np.abs(observed_ln - median) / np.maximum(width, 1e-6)
    return float(np.quantile(distance[~mask], (levels[-1] - levels[0]) / 100))


def bands_at_redshift(
    grids: SpectrumGrids, bands: dict[float, np.ndarray], z_from: np.ndarray, z_to: np.ndarray
) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Bands (percentile → (N, L) ln flux) moved from the redshifts they were placed at to ``z_to``, and the
    (N, L) pixels the move leaves uncovered.

    The frame a user compares a band in: at the observed spectrum's redshift, as the evaluation moves
    every prediction (paper Sect. 5.1).  Observed-frame networks' bands (``z_from`` NaN) stay as they are.
    """
    z_from = np.asarray(z_from, np.float64)
    if not np.isfinite(z_from).any():
        return bands, np.zeros(next(iter(bands.values())).shape, bool)
    moved = {}
    uncovered = np.zeros(next(iter(bands.values())).shape, bool)
    for level, band in bands.items():
        moved[level], missing = shift_to_redshift(grids.wave, band, z_from, z_to, grids.window, grids.window_frame)
        uncovered |= missing
    # each level is renormalised on its own (see _placed_at): sorted back into order
    levels = sorted(moved)
    ordered = np.sort(np.stack([np.nan_to_num(moved[p]) for p in levels]), axis=0)
    return {p: ordered[i].astype(np.float32) for i, p in enumerate(levels)}, uncovered


def scale_bands(bands: dict[float, np.ndarray], factor: float) -> dict[float, np.ndarray]:
    """Bands with their distances from the median (percentile 50) multiplied by ``factor``."""
    median = bands[50.0]
    return {p: (median + factor * (band - median)).astype(band.dtype) for p, band in bands.items()}


def bands_of(result: dict[str, np.ndarray], percentiles: tuple[float, ...]) -> dict[float, np.ndarray]:
    return {float(p): result[band_key(p)] for p in percentiles}


def apply_band_scale(result: dict[str, np.ndarray], percentiles: tuple[float, ...], factor: float) -> None:
    """Scale the bands ``flux_p{p}`` of a prediction ``result`` in place (:func:`scale_bands`)."""
    for p, band in scale_bands(bands_of(result, percentiles), factor).items():
        result[band_key(p)] = band


def read_band_scale(calibration_json: str | Path) -> float:
    """The band's scale factor from a :func:`calibrate_bands` file."""
    return float(json.loads(Path(calibration_json).read_text())[BAND_SCALE])
