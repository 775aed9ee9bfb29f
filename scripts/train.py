"""Snakemake entry point: train one of the four networks."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 - the library, also under --use-conda

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from img2spec.config import logged  # noqa: E402
from img2spec.plots import loss_curve  # noqa: E402
from img2spec.train import train_network  # noqa: E402

with logged(snakemake.log[0]):  # noqa: F821
    torch.set_num_threads(snakemake.threads)  # noqa: F821
    out_dir = Path(snakemake.output.last).parent  # noqa: F821
    run = dict(snakemake.params.run)  # noqa: F821
    train_network(snakemake.input.dataset, snakemake.wildcards.network, snakemake.params.hp, run, out_dir,  # noqa: F821
                  progress=False)
    loss_curve(snakemake.output.metrics, snakemake.wildcards.network, snakemake.output.figure)  # noqa: F821
