"""Snakemake entry point: generate the mock SDSS survey and its figures."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.mock.figures import mock_figures  # noqa: E402
from img2spec.mock.survey import MockSettings, MockSurvey, generate, settings_as_dict  # noqa: E402
from img2spec.templates import load_library  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    settings = MockSettings.from_config(snakemake.params.mock)  # noqa: F821
    survey = MockSurvey.from_library(load_library(snakemake.input.templates), settings)  # noqa: F821
    out_dir = Path(snakemake.output.catalog).parent  # noqa: F821
    start = time.perf_counter()
    counts = generate(survey, out_dir)
    elapsed = time.perf_counter() - start
    counts.update(seconds=round(elapsed, 2), galaxies_per_second=round(counts["n_galaxies"] / elapsed, 1))
    print(json.dumps(counts))
    mock_figures(out_dir, snakemake.output.examples, snakemake.output.colour_mass, snakemake.output.bpt)  # noqa: F821
    summary = {"counts": counts, "settings": settings_as_dict(settings)}
    Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2))  # noqa: F821
