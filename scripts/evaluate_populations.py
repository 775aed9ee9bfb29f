"""Snakemake entry point: observed-versus-predicted stellar populations of one fitter (pPXF or FIREFLY method)."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import gather_fits, stellar_populations  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    fits = gather_fits(snakemake.input.chunks)  # noqa: F821
    summary = stellar_populations(fits, snakemake.wildcards.code, Path(snakemake.output.summary).parent,  # noqa: F821
                                  snakemake.input.get("truth"))  # noqa: F821
    print(summary)
