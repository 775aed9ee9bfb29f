"""Snakemake entry point: the ablation table and figure."""

import sys

sys.path.insert(0, snakemake.scriptdir)

from pathlib import Path

from img2spec.ablation import collect
from img2spec.config import logged

with logged(snakemake.log[0]):
    scores = dict(zip(snakemake.params.variants, snakemake.input))
    print(collect(scores, Path(snakemake.output.summary).parent))
