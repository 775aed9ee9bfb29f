"""Snakemake entry point: rest-frame 4000-7000 A MSE of one ablation variant's predictions."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from img2spec.ablation import rest_frame_mse  # noqa: E402
from img2spec.config import logged  # noqa: E402
from img2spec.io import atomic_output  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    table = rest_frame_mse(snakemake.input.predictions, snakemake.input.dataset)  # noqa: F821
    with atomic_output(snakemake.output[0]) as tmp:  # noqa: F821
        table.to_csv(tmp, index=False)
    print(table["mse"].describe())
