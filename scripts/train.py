"""Snakemake entry point: train one of the four networks."""

import sys

sys.path.insert(0, snakemake.scriptdir)

import torch
from img2spec.config import logged
from img2spec.networks import hyperparameters
from img2spec.plots import loss_curve
from img2spec.train import CheckpointFiles, train_network

with logged(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    files = CheckpointFiles(snakemake.output.last, snakemake.output.best, snakemake.output.metrics)
    network = snakemake.wildcards.network
    hp = hyperparameters(network, snakemake.params.hp)
    train_network(snakemake.input.dataset, network, hp, dict(snakemake.params.run), files, progress=False)
    loss_curve(snakemake.output.metrics, snakemake.wildcards.network, snakemake.output.figure)
