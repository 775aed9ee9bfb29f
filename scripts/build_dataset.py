"""Snakemake entry point: join spectra, cubes and catalog into results/dataset/dataset.h5."""

import json

import pandas as pd
from img2spec.catalog import read_catalog
from img2spec.config import logged
from img2spec.cubes import open_cube_file
from img2spec.dataset import DatasetSettings, build_dataset, dataset_figure

with logged(snakemake.log[0]):
    out = snakemake.output
    with open_cube_file(snakemake.input.cubes) as cubes:
        summary, rejects = build_dataset(
            read_catalog(snakemake.input.catalog),
            snakemake.input.spectra,
            cubes,
            DatasetSettings.from_config(snakemake.params.dataset),
            out.dataset,
            prior_rejects=pd.read_csv(snakemake.input.spectra_rejects),
        )
    rejects.to_csv(out.rejects, index=False)
    with open(out.summary, "w") as fh:
        json.dump(summary, fh, indent=2)
    dataset_figure(out.dataset, out.figure)
    print(json.dumps(summary, indent=2))
