"""Snakemake entry point: rest-frame 4000-7000 A MSE of one ablation variant's predictions."""

from img2spec.ablation import rest_frame_mse
from img2spec.config import logged
from img2spec.io import atomic_output

with logged(snakemake.log[0]):
    table = rest_frame_mse(snakemake.input.predictions, snakemake.input.dataset)
    with atomic_output(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    print(table["mse"].describe())
