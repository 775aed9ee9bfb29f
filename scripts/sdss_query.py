"""Snakemake entry point: the galaxy sample from SkyServer, queried in cached chunks."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

import os  # noqa: E402
from pathlib import Path  # noqa: E402

from img2spec.config import logged, settings_from_section  # noqa: E402
from img2spec.io import atomic_output  # noqa: E402
from img2spec.sdss import QuerySettings, casjobs_runner, query_catalog, skyserver_runner  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    settings = settings_from_section(QuerySettings, snakemake.params.query)  # noqa: F821
    if settings.backend == "casjobs":
        token = os.environ.get(settings.token_env, "")
        run = casjobs_runner(settings.casjobs_url, token, settings.casjobs_context)
    else:
        run = skyserver_runner(settings.data_release)
    catalog = query_catalog(Path(snakemake.input.sql).read_text(), settings, snakemake.params.cache, run)  # noqa: F821
    with atomic_output(snakemake.output.catalog) as tmp:  # noqa: F821
        catalog.to_csv(tmp, index=False)
    print(f"{len(catalog)} galaxies")
