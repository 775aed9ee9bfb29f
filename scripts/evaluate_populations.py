"""Snakemake entry point: observed-versus-predicted stellar populations of one fitter (pPXF or FIREFLY method)."""

from img2spec.config import declared, logged
from img2spec.evaluation import gather_fits, stellar_populations

with logged(snakemake.log[0]):
    fits = gather_fits(snakemake.input.chunks)
    summary = stellar_populations(
        fits, snakemake.wildcards.code, **declared(snakemake.output), truth_parquet=snakemake.input.get("truth")
    )
    print(summary)
