"""Predicting spectra from images: the paper's 15 → 3 → 5 → 1 selection with an uncertainty band.

:mod:`.sampling` draws and ranks the candidates of a batch of cubes (:func:`predict_spectra`, the
method); :mod:`.runs` predicts whole datasets and cube files with it, calibrating the band and
isolating failures.
"""

from .runs import calibrate_bands, network_evaluations, predict_cube_file, predict_dataset, predict_isolated
from .sampling import (
    InferenceSettings,
    SpectrumGrids,
    TrainedModels,
    atypicality,
    check_images,
    network_input,
    pooled_candidates,
    predict_spectra,
)

__all__ = [
    "InferenceSettings",
    "SpectrumGrids",
    "TrainedModels",
    "atypicality",
    "calibrate_bands",
    "check_images",
    "network_evaluations",
    "network_input",
    "pooled_candidates",
    "predict_cube_file",
    "predict_dataset",
    "predict_isolated",
    "predict_spectra",
]
