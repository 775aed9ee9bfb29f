"""Snakemake entry point: mass-metallicity, degeneracy and bimodality comparisons of the two fitters."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import comparisons, gather_fits  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    summary = comparisons(gather_fits(snakemake.input.chunks), snakemake.input.dataset,  # noqa: F821
                          Path(snakemake.output.summary).parent)  # noqa: F821
    print(summary)
