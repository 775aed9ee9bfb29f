"""Snakemake entry point: spectral agreement of predicted and observed test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import quality  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    truth = snakemake.input.get("truth")  # noqa: F821
    preprocessing = snakemake.params.preprocessing  # noqa: F821
    summary = quality(snakemake.input.predictions, snakemake.input.dataset, Path(snakemake.output.summary).parent, truth,  # noqa: F821
                      snakemake.input.baselines, snakemake.input.redshifts,  # noqa: F821
                      tuple(preprocessing["norm_window"]), preprocessing["norm_frame"])
    print(summary["all"])
