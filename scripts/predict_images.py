"""Snakemake entry point: predict spectra for any file of 64×64 ugriz cubes (no spectra needed)."""

import torch
from img2spec.bands import read_band_scale
from img2spec.config import logged
from img2spec.inference import InferenceSettings, predict_cube_file
from img2spec.networks import NETWORK_NAMES

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    predict_cube_file(
        snakemake.input.cubes,
        snakemake.input.dataset,
        {name: getattr(snakemake.input, name) for name in NETWORK_NAMES},
        InferenceSettings.from_config(snakemake.params.inference),
        snakemake.output.predictions,
        snakemake.output.rejects,
        device=snakemake.params.inference["device"],
        band_factor=read_band_scale(snakemake.input.calibration),
        log=lambda message: print(message, flush=True),
    )
