"""Snakemake entry point: mass-metallicity, degeneracy and bimodality comparisons of the two fitters."""

from img2spec.config import declared, logged
from img2spec.evaluation import comparisons, gather_fits

with logged(snakemake.log[0]):
    summary = comparisons(gather_fits(snakemake.input.chunks), snakemake.input.dataset, **declared(snakemake.output))
    print(summary)
