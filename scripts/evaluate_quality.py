"""Snakemake entry point: spectral agreement of predicted and observed test spectra."""

from img2spec.config import declared, logged
from img2spec.evaluation import quality

with logged(snakemake.log[0]):
    preprocessing = snakemake.params.preprocessing
    summary = quality(
        snakemake.input.predictions,
        snakemake.input.dataset,
        **declared(snakemake.output),
        truth_parquet=snakemake.input.get("truth"),
        baselines_h5=snakemake.input.baselines,
        redshift_csv=snakemake.input.redshifts,
        norm_window=tuple(preprocessing["norm_window"]),
        norm_frame=preprocessing["norm_frame"],
    )
    print(summary["all"])
