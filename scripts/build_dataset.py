"""Snakemake entry point: join spectra, cubes and catalog into results/dataset/dataset.h5."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

import json  # noqa: E402

import pandas as pd  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.dataset import DatasetSettings, build_dataset, dataset_figure, read_catalog  # noqa: E402
from img2spec.io import open_cube_file  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    out = snakemake.output  # noqa: F821
    with open_cube_file(snakemake.input.cubes) as cubes:  # noqa: F821
        summary, rejects = build_dataset(
            read_catalog(snakemake.input.catalog),  # noqa: F821
            snakemake.input.spectra,  # noqa: F821
            cubes,
            DatasetSettings(**snakemake.params.dataset),  # noqa: F821
            out.dataset,
            prior_rejects=pd.read_csv(snakemake.input.spectra_rejects),  # noqa: F821
        )
    rejects.to_csv(out.rejects, index=False)
    with open(out.summary, "w") as fh:
        json.dump(summary, fh, indent=2)
    dataset_figure(out.dataset, out.figure)
    print(json.dumps(summary, indent=2))
