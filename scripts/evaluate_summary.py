"""Snakemake entry point: headline numbers beside the paper's."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged  # noqa: E402
from img2spec.evaluation import headline_summary  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    summaries = {name: snakemake.input[name] for name in ("quality", "redshift", "ppxf", "indices", "bpt", "predictions")}  # noqa: F821
    summary = headline_summary(summaries, snakemake.params.survey, snakemake.output.json, snakemake.output.markdown,  # noqa: F821
                               snakemake.params.preset)  # noqa: F821
    print(summary)
