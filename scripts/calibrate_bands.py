"""Snakemake entry point: calibrate the candidates' uncertainty band on validation galaxies."""

import torch
from img2spec.config import logged
from img2spec.inference import InferenceSettings, calibrate_bands
from img2spec.networks import NETWORK_NAMES

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    summary = calibrate_bands(
        snakemake.input.dataset,
        {name: getattr(snakemake.input, name) for name in NETWORK_NAMES},
        InferenceSettings.from_config(snakemake.params.inference),
        snakemake.output.calibration,
        device=snakemake.params.inference["device"],
    )
    print(summary)
