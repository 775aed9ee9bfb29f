"""Snakemake entry point: the ablation table and figure."""

from img2spec.ablation import collect
from img2spec.config import declared, logged

with logged(snakemake.log[0]):
    scores = dict(zip(snakemake.params.variants, snakemake.input))
    print(collect(scores, **declared(snakemake.output)))
