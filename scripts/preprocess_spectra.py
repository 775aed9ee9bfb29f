"""Snakemake entry point: read and preprocess every catalog object's spectrum into spectra.h5."""

from img2spec.catalog import preprocess_catalog_spectra, read_catalog
from img2spec.config import logged
from img2spec.preprocessing import PreprocessingSettings

with logged(snakemake.log[0]):
    section = snakemake.params.preprocessing
    rejects = preprocess_catalog_spectra(
        read_catalog(snakemake.input.catalog),
        snakemake.params.spectra_root,
        PreprocessingSettings.from_config(section),
        snakemake.output.spectra,
        chunk_size=section["chunk_size"],
    )
    rejects.to_csv(snakemake.output.rejects, index=False)
    print(f"{len(rejects)} rejected; reasons: {rejects['reason'].value_counts().to_dict()}")
