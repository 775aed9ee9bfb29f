"""Snakemake entry point: download the catalog's spec-lite files from the SAS (resumable).

The spectra folder is not a declared output: Snakemake would delete it before a rerun, and a
rerun must keep what was already fetched.  The manifest marks completion.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged, settings_from_section  # noqa: E402
from img2spec.dataset import read_catalog  # noqa: E402
from img2spec.sdss import DownloadSettings, download_spectra  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    counts = download_spectra(
        read_catalog(snakemake.input.catalog),  # noqa: F821
        snakemake.params.spectra_root,  # noqa: F821
        settings_from_section(DownloadSettings, snakemake.params.download),  # noqa: F821
        snakemake.output.manifest,  # noqa: F821
        snakemake.output.failures,  # noqa: F821
    )
    print(counts)
