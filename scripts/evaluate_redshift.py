"""Snakemake entry point: redshifts measured on predicted and observed test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import EvaluationSettings, redshift  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    settings = EvaluationSettings.from_config(snakemake.params.evaluation, snakemake.params.resolving_power)  # noqa: F821
    summary = redshift(snakemake.input.predictions, snakemake.input.dataset, snakemake.input.library, settings,  # noqa: F821
                       Path(snakemake.output.summary).parent, snakemake.input.baselines)  # noqa: F821
    print(summary)
