"""Snakemake entry point: the dataset with one ablated image variant."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.ablation import variant_dataset  # noqa: E402
from img2spec.config import logged  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    print(variant_dataset(snakemake.input.dataset, snakemake.output.dataset, snakemake.wildcards.variant))  # noqa: F821
