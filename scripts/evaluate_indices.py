"""Snakemake entry point: Lick indices, [MgFe]' and Dn4000 of observed and predicted test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import gather_fits, indices  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    summary = indices(gather_fits(snakemake.input.chunks), Path(snakemake.output.summary).parent)  # noqa: F821
    print(summary)
