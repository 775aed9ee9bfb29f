"""Snakemake entry point: train one of the four networks."""

import sys

sys.path.insert(0, snakemake.scriptdir)

from pathlib import Path

import torch
from img2spec.config import logged
from img2spec.plots import loss_curve
from img2spec.train import train_network

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    out_dir = Path(snakemake.output.last).parent
    run = dict(snakemake.params.run)
    train_network(
        snakemake.input.dataset, snakemake.wildcards.network, snakemake.params.hp, run, out_dir, progress=False
    )
    loss_curve(snakemake.output.metrics, snakemake.wildcards.network, snakemake.output.figure)
