"""Snakemake entry point: headline numbers beside the paper's."""

from img2spec.config import logged
from img2spec.evaluation import headline_summary

with logged(snakemake.log[0]):
    summaries = {
        name: snakemake.input[name]
        for name in ("quality", "redshift", "ppxf", "indices", "lines", "bpt", "predictions")
    }
    summary = headline_summary(
        summaries, snakemake.params.survey, snakemake.output.json, snakemake.output.markdown, snakemake.params.preset
    )
    print(summary)
