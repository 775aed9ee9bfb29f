"""Snakemake entry point: train one of the four networks (with several devices, Lightning runs copies of it)."""

import torch
from img2spec.config import logged
from img2spec.distributed import local_rank, threads_per_process
from img2spec.networks import hyperparameters
from img2spec.plots import loss_curve
from img2spec.train import CheckpointFiles, train_network

rank = local_rank()
run = dict(snakemake.params.run)
with logged(snakemake.log[0] if rank == 0 else f"{snakemake.log[0]}.rank{rank}"):
    torch.set_num_threads(threads_per_process(snakemake.threads, run["devices"]))
    files = CheckpointFiles(snakemake.output.last, snakemake.output.best, snakemake.output.metrics)
    network = snakemake.wildcards.network
    hp = hyperparameters(network, snakemake.params.hp)
    train_network(snakemake.input.dataset, network, hp, run, files, progress=False)
    if rank == 0:
        loss_curve(snakemake.output.metrics, snakemake.wildcards.network, snakemake.output.figure)
