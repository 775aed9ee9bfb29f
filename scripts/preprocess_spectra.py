"""Snakemake entry point: read and preprocess every catalog object's spectrum into spectra.h5."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged  # noqa: E402
from img2spec.dataset import preprocess_catalog_spectra, read_catalog  # noqa: E402
from img2spec.preprocessing import PreprocessingSettings  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    section = snakemake.params.preprocessing  # noqa: F821
    rejects = preprocess_catalog_spectra(
        read_catalog(snakemake.input.catalog),  # noqa: F821
        snakemake.params.spectra_root,  # noqa: F821
        PreprocessingSettings.from_config(section),
        snakemake.output.spectra,  # noqa: F821
        chunk_size=section["chunk_size"],
    )
    rejects.to_csv(snakemake.output.rejects, index=False)  # noqa: F821
    print(f"{len(rejects)} rejected; reasons: {rejects['reason'].value_counts().to_dict()}")
