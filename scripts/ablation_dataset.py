"""Snakemake entry point: the dataset with one ablated image variant."""

from img2spec.ablation import variant_dataset
from img2spec.config import logged

with logged(snakemake.log[0]):
    print(variant_dataset(snakemake.input.dataset, snakemake.output.dataset, snakemake.wildcards.variant))
