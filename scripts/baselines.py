"""Snakemake entry point: the mean, nearest-neighbour and (mock) truth baselines of the test split."""

from img2spec.baselines import BaselineSettings, baseline_summary
from img2spec.config import logged
from img2spec.preprocessing import PreprocessingSettings

with logged(snakemake.log[0]):
    summary = baseline_summary(
        snakemake.input.dataset,
        BaselineSettings.from_config(snakemake.params.baselines),
        snakemake.output.baselines,
        snakemake.output.summary,
        spectra_root=snakemake.input.get("mock_spectra"),
        preprocessing=PreprocessingSettings.from_config(snakemake.params.preprocessing),
    )
    print(summary)
