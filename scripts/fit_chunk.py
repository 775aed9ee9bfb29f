"""Snakemake entry point: pPXF, FIREFLY-method and index fits of one chunk of the test split."""

from img2spec.config import logged
from img2spec.evaluation import EvaluationSettings, fit_chunk

with logged(snakemake.log[0]):
    settings = EvaluationSettings.from_config(
        snakemake.params.evaluation, resolving_power=snakemake.params.resolving_power
    )
    table = fit_chunk(
        snakemake.input.predictions,
        snakemake.input.dataset,
        snakemake.input.library,
        settings,
        int(snakemake.wildcards.chunk),
        snakemake.output.table,
        snakemake.input.baselines,
        snakemake.input.redshifts,
        snakemake.input.get("kinematics"),
    )
    print(f"{len(table)} fits, {int((table['error'] != '').sum())} failed")
