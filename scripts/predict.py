"""Snakemake entry point: predict the test split's spectra from their images."""

import torch
from img2spec.bands import read_band_scale
from img2spec.config import logged
from img2spec.inference import InferenceSettings, predict_dataset
from img2spec.networks import NETWORK_NAMES

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    calibration = snakemake.input.get("calibration")
    summary = predict_dataset(
        snakemake.input.dataset,
        {name: getattr(snakemake.input, name) for name in NETWORK_NAMES},
        InferenceSettings.from_config(snakemake.params.inference),
        snakemake.output.predictions,
        snakemake.output.fits,
        snakemake.output.summary,
        snakemake.output.figure,
        device=snakemake.params.inference["device"],
        band_factor=read_band_scale(calibration) if calibration else 1.0,
    )
    print(summary)
