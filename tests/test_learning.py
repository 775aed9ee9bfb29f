"""Training learns the image → spectrum mapping, not only the marginal distribution of spectra (issue 12)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from img2spec.config import network_hyperparameters
from img2spec.dataset import SPLITS, spectrum_key
from img2spec.train import CheckpointFiles, load_task, train_network

from tests.two_class import write_two_class_dataset

RUN = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32-true", "num_workers": 0, "seed": 0}


def _nearest_class(spectra: np.ndarray, references: np.ndarray, classes: np.ndarray) -> np.ndarray:
    distance = ((spectra[:, None, :] - references[None]) ** 2).mean(-1)
    return classes[distance.argmin(1)]


@pytest.mark.slow
def test_conditional_diffusion_learns_the_class_of_the_image(tmp_path):
    """Red and blue galaxies with different spectra: samples drawn for unseen images have the image's
    class far above chance (0.5), and swapping the images swaps the class; a model of the marginal
    distribution of spectra could do neither."""
    torch.set_num_threads(2)
    truth = write_two_class_dataset(tmp_path / "two.h5", n_train=96, n_val=8, n_test=32)
    hp = dataclasses.replace(
        network_hyperparameters({"preset": "tiny"})["cdm_lr"],
        max_steps=200,
        batch_size=16,
        val_every_steps=200,
        checkpoint_every_steps=200,
        val_sampler_steps=5,
        lr_warmup_steps=10,
    )
    train_network(
        str(tmp_path / "two.h5"), "cdm_lr", hp, RUN, CheckpointFiles.in_folder(tmp_path / "cdm_lr"), progress=False
    )
    task = load_task(tmp_path / "cdm_lr" / "last.ckpt").eval()
    with h5py.File(tmp_path / "two.h5") as h5:
        split = h5["split"][()]
        rows, train = np.flatnonzero(split == SPLITS["test"]), np.flatnonzero(split == SPLITS["train"])
        raw, references = h5["images"][()][rows], h5[spectrum_key("flux_lowres", task.frame)][()][train]
    kinds, reference_kinds = truth["kind"][rows], truth["kind"][train]

    def accuracy(images: np.ndarray) -> tuple[float, float]:
        pixels, features = (
            torch.from_numpy(task.image_stats.apply(images)),
            torch.from_numpy(task.image_stats.features(images)),
        )
        sample = task.sample(pixels, features, None, "dpmpp_2m", 20, torch.Generator().manual_seed(0))
        regression = task.regression_mean(pixels, features)
        scores = [
            np.mean(_nearest_class(task.stats.restore(x).numpy(), references, reference_kinds) == kinds)
            for x in (sample, regression)
        ]
        return scores[0], scores[1]

    sampled, regressed = accuracy(raw)
    assert sampled >= 0.7 and regressed >= 0.85, (sampled, regressed)  # chance: 0.5; P(≥ 0.7 | chance) = 0.01
    swapped = raw[np.arange(rows.size) ^ 1]  # neighbours alternate red and blue
    assert accuracy(swapped)[0] <= 0.3
