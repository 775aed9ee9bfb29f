"""Snakemake entry point: fetch each catalog field's ugriz frames and build the 64×64 cubes.

The frames folder is not a declared output, so a rerun keeps frames already fetched.
"""

import dataclasses

from img2spec.catalog import read_catalog
from img2spec.config import logged
from img2spec.sdss import DownloadSettings, cubes_from_frames, download_frames

with logged(snakemake.log[0]):
    catalog = read_catalog(snakemake.input.catalog)
    settings = DownloadSettings.from_config(snakemake.params.download)
    settings = dataclasses.replace(settings, base_url=snakemake.params.frames_base_url)
    counts = download_frames(catalog, snakemake.params.frames_root, settings)
    for url, reason in counts["failures"]:
        print(f"frame not fetched: {url}: {reason}")
    rejects = cubes_from_frames(catalog, snakemake.params.frames_root, snakemake.output.cubes)
    rejects.to_csv(snakemake.output.rejects, index=False)
    print(f"{len(catalog) - len(rejects)} cubes built, {len(rejects)} objects rejected")
