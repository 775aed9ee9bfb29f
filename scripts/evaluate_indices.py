"""Snakemake entry point: Lick indices, [MgFe]' and Dn4000 of observed and predicted test spectra."""

from img2spec.config import declared, logged
from img2spec.evaluation import gather_fits, indices

with logged(snakemake.log[0]):
    summary = indices(gather_fits(snakemake.input.chunks), **declared(snakemake.output))
    print(summary)
