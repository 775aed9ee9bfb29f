"""Snakemake entry point: download the catalog's spec-lite files from the SAS (resumable).

The spectra folder is not a declared output: Snakemake would delete it before a rerun, and a
rerun must keep what was already fetched.  The manifest marks completion.
"""

from img2spec.catalog import read_catalog
from img2spec.config import logged
from img2spec.sdss import DownloadSettings, download_spectra

with logged(snakemake.log[0]):
    counts = download_spectra(
        read_catalog(snakemake.input.catalog),
        snakemake.params.spectra_root,
        DownloadSettings.from_config(snakemake.params.download),
        snakemake.output.manifest,
        snakemake.output.failures,
    )
    print(counts)
