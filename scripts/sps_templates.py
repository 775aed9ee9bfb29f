"""Snakemake entry point: download E-MILES (pPXF sps_util format) and save it as an img2spec library."""

from img2spec.config import logged
from img2spec.templates import fetch_sps_library

with logged(snakemake.log[0]):
    library = fetch_sps_library(snakemake.params.url, snakemake.output.library, "emiles")
    print(
        f"{library.name}: {library.flux.shape[0]} SSPs, {library.wave_air[0]:.0f}-{library.wave_air[-1]:.0f} A, FWHM {library.fwhm} A"
    )
