"""Snakemake entry point: the ablation table and figure."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.ablation import collect  # noqa: E402
from img2spec.config import logged  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    scores = dict(zip(snakemake.params.variants, snakemake.input))  # noqa: F821
    print(collect(scores, Path(snakemake.output.summary).parent))  # noqa: F821
