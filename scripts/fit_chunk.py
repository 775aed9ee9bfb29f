"""Snakemake entry point: pPXF, FIREFLY-method and index fits of one chunk of the test split."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import EvaluationSettings, fit_chunk  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    settings = EvaluationSettings.from_config(snakemake.params.evaluation, snakemake.params.resolving_power)  # noqa: F821
    table = fit_chunk(snakemake.input.predictions, snakemake.input.dataset, snakemake.input.library, settings,  # noqa: F821
                      int(snakemake.wildcards.chunk), snakemake.output[0], snakemake.input.baselines,  # noqa: F821
                      snakemake.input.redshifts, snakemake.input.get("kinematics"))  # noqa: F821
    print(f"{len(table)} fits, {int((table['error'] != '').sum())} failed")
