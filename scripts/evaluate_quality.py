"""Snakemake entry point: spectral agreement of predicted and observed test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)

from pathlib import Path

from img2spec.config import logged
from img2spec.evaluation import quality

with logged(snakemake.log[0]):
    truth = snakemake.input.get("truth")
    preprocessing = snakemake.params.preprocessing
    summary = quality(
        snakemake.input.predictions,
        snakemake.input.dataset,
        Path(snakemake.output.summary).parent,
        truth,
        snakemake.input.baselines,
        snakemake.input.redshifts,
        tuple(preprocessing["norm_window"]),
        preprocessing["norm_frame"],
    )
    print(summary["all"])
