"""Snakemake entry point: redshifts measured on predicted and observed test spectra."""

from img2spec.config import declared, logged
from img2spec.evaluation import EvaluationSettings, redshift

with logged(snakemake.log[0]):
    settings = EvaluationSettings.from_config(
        snakemake.params.evaluation, resolving_power=snakemake.params.resolving_power
    )
    summary = redshift(
        snakemake.input.predictions,
        snakemake.input.dataset,
        snakemake.input.library,
        settings,
        **declared(snakemake.output),
        baselines_h5=snakemake.input.baselines,
    )
    print(summary)
