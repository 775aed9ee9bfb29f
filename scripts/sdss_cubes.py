"""Snakemake entry point: fetch each catalog field's ugriz frames and build the 64×64 cubes.

The frames folder is not a declared output, so a rerun keeps frames already fetched.
"""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

import dataclasses  # noqa: E402

from img2spec.config import logged, settings_from_section  # noqa: E402
from img2spec.dataset import read_catalog  # noqa: E402
from img2spec.sdss import DownloadSettings, cubes_from_frames, download_frames  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    catalog = read_catalog(snakemake.input.catalog)  # noqa: F821
    settings = settings_from_section(DownloadSettings, snakemake.params.download)  # noqa: F821
    settings = dataclasses.replace(settings, base_url=snakemake.params.frames_base_url)  # noqa: F821
    counts = download_frames(catalog, snakemake.params.frames_root, settings)  # noqa: F821
    for url, reason in counts["failures"]:
        print(f"frame not fetched: {url}: {reason}")
    rejects = cubes_from_frames(catalog, snakemake.params.frames_root, snakemake.output.cubes)  # noqa: F821
    rejects.to_csv(snakemake.output.rejects, index=False)  # noqa: F821
    print(f"{len(catalog) - len(rejects)} cubes built, {len(rejects)} objects rejected")
