"""Snakemake entry point: predict spectra for any file of 64×64 ugriz cubes (no spectra needed)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

import torch  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.networks import NETWORK_NAMES  # noqa: E402
from img2spec.inference import InferenceSettings, predict_cube_file, read_band_scale  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    predict_cube_file(
        snakemake.input.cubes,  # noqa: F821
        snakemake.input.dataset,  # noqa: F821
        {name: getattr(snakemake.input, name) for name in NETWORK_NAMES},  # noqa: F821
        InferenceSettings.from_config(snakemake.params.inference),  # noqa: F821
        snakemake.output.predictions,  # noqa: F821
        snakemake.output.rejects,  # noqa: F821
        device=snakemake.params.inference["device"],  # noqa: F821
        band_factor=read_band_scale(snakemake.input.calibration),  # noqa: F821
    )
