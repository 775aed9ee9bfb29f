"""Snakemake entry point: emission-line fluxes and EW(Hα) of observed and predicted test spectra."""

from img2spec.config import declared, logged
from img2spec.evaluation import EvaluationSettings, gather_fits, lines

with logged(snakemake.log[0]):
    settings = EvaluationSettings.from_config(
        snakemake.params.evaluation, resolving_power=snakemake.params.resolving_power
    )
    summary = lines(gather_fits(snakemake.input.chunks), settings, **declared(snakemake.output))
    print(summary)
