"""Snakemake entry point: emission-line fluxes and EW(Hα) of observed and predicted test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)

from pathlib import Path

from img2spec.config import logged
from img2spec.evaluation import EvaluationSettings, gather_fits, lines

with logged(snakemake.log[0]):
    settings = EvaluationSettings.from_config(snakemake.params.evaluation, snakemake.params.resolving_power)
    fits = gather_fits(snakemake.input.chunks)
    out_dir = Path(snakemake.output.summary).parent
    summary = lines(fits, settings, out_dir)
    print(summary)
