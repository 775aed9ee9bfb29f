"""Snakemake entry point: generate the mock SDSS survey and its figures."""

import json
import time
from pathlib import Path

import pandas as pd
from img2spec.config import logged
from img2spec.dag import SURVEY_FILES
from img2spec.io import SurveyFiles
from img2spec.mock.figures import class_fractions, mock_figures
from img2spec.mock.products import generate, settings_as_dict
from img2spec.mock.survey import MockSettings, MockSurvey
from img2spec.templates import load_library

with logged(snakemake.log[0]):
    settings = MockSettings.from_config(snakemake.params.mock)
    survey = MockSurvey.from_library(load_library(snakemake.input.templates), settings)
    files = SurveyFiles(**{name: Path(snakemake.output[name]) for name in SURVEY_FILES})
    start = time.perf_counter()
    counts = generate(survey, files)
    elapsed = time.perf_counter() - start
    counts.update(seconds=round(elapsed, 2), galaxies_per_second=round(counts["n_galaxies"] / elapsed, 1))
    print(json.dumps(counts))
    mock_figures(
        files, snakemake.output.examples, snakemake.output.colour_mass, snakemake.output.bpt, snakemake.output.classes
    )
    summary = {
        "counts": counts,
        "class_fractions": class_fractions(pd.read_parquet(files.truth)),
        "settings": settings_as_dict(settings),
    }
    Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2))
