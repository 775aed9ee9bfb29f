"""Snakemake entry point: the galaxy sample from SkyServer, queried in cached chunks."""

import os
from pathlib import Path

from img2spec.config import logged
from img2spec.io import atomic_output
from img2spec.sdss import QuerySettings, casjobs_runner, query_catalog, skyserver_runner

with logged(snakemake.log[0]):
    settings = QuerySettings.from_config(snakemake.params.query)
    if settings.backend == "casjobs":
        token = os.environ.get(settings.token_env, "")
        run = casjobs_runner(settings.casjobs_url, token, settings.casjobs_context)
    else:
        run = skyserver_runner(settings.data_release)
    catalog = query_catalog(Path(snakemake.input.sql).read_text(), settings, snakemake.params.cache, run)
    with atomic_output(snakemake.output.catalog) as tmp:
        catalog.to_csv(tmp, index=False)
    print(f"{len(catalog)} galaxies")
