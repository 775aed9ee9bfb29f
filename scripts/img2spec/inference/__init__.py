"""Predicting spectra from images: candidates, contrastive selection and uncertainty bands.

The paper's procedure (Doorenbos, Sextl et al. 2024, Sect. 3.3): draw ``k_lr`` low-resolution
spectra per galaxy with CDM_lr, keep the ``keep_lr`` most similar to the image under
contrastive_lr, draw ``k_sr`` full-resolution spectra from each with CDM_sr, and keep the one most
similar to the image under contrastive_sr.  All full-resolution candidates give per-pixel
percentiles, an uncertainty band the paper left as future work.

Every candidate's noise comes from its own generator, seeded by (seed, galaxy id, candidate), so
results do not depend on batch sizes or on which other galaxies are predicted alongside.
"""

from .runs import calibrate_bands, network_evaluations, predict_cube_file, predict_dataset, predict_isolated
from .sampling import (
    InferenceSettings,
    SpectrumGrids,
    TrainedModels,
    check_images,
    network_input,
    pooled_candidates,
    predict_spectra,
)

__all__ = [
    "InferenceSettings",
    "SpectrumGrids",
    "TrainedModels",
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
