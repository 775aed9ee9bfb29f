"""Snakemake entry point: the mean, nearest-neighbour and (mock) truth baselines of the test split."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.baselines import BaselineSettings, baseline_summary  # noqa: E402
from img2spec.config import logged  # noqa: E402
from img2spec.preprocessing import PreprocessingSettings  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    summary = baseline_summary(
        snakemake.input.dataset,  # noqa: F821
        BaselineSettings.from_config(snakemake.params.baselines),  # noqa: F821
        snakemake.output.baselines,  # noqa: F821
        snakemake.output.summary,  # noqa: F821
        spectra_root=snakemake.input.get("mock_spectra"),  # noqa: F821
        preprocessing=PreprocessingSettings.from_config(snakemake.params.preprocessing),  # noqa: F821
    )
    print(summary)
