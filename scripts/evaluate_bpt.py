"""Snakemake entry point: passive / star-forming / AGN classification of observed and predicted test spectra."""

from img2spec.config import declared, logged
from img2spec.evaluation import EvaluationSettings, bpt, gather_fits

with logged(snakemake.log[0]):
    settings = EvaluationSettings.from_config(
        snakemake.params.evaluation, resolving_power=snakemake.params.resolving_power
    )
    fits = gather_fits(snakemake.input.chunks)
    summary = bpt(fits, settings, **declared(snakemake.output), truth_parquet=snakemake.input.get("truth"))
    print(summary)
