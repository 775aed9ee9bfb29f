"""Snakemake entry point: emission-line fluxes and EW(Hα) of observed and predicted test spectra."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import EvaluationSettings, lines, gather_fits  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    settings = EvaluationSettings.from_config(snakemake.params.evaluation, snakemake.params.resolving_power)  # noqa: F821
    fits = gather_fits(snakemake.input.chunks)  # noqa: F821
    out_dir = Path(snakemake.output.summary).parent  # noqa: F821
    summary = lines(fits, settings, out_dir)
    print(summary)
