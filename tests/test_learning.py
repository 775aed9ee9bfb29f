"""Training learns the image → spectrum mapping, not only the marginal distribution of spectra (issue 12)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from img2spec.config import network_hyperparameters
from img2spec.dataset import SPLITS, spectrum_key
from img2spec.tasks import load_task
from img2spec.train import CheckpointFiles, train_network

from tests.two_class import write_two_class_dataset

RUN = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32-true", "num_workers": 0, "seed": 0}


def _short(hp, steps: int, batch_size: int, sampler_steps: int, **changes):
    """``hp`` trained for ``steps`` steps, validated and checkpointed once at the end."""
    return dataclasses.replace(
        hp,
        max_steps=steps,
        batch_size=batch_size,
        val_every_steps=steps,
        checkpoint_every_steps=steps,
        val_sampler_steps=sampler_steps,
        lr_warmup_steps=10,
        **changes,
    )


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
    hp = _short(network_hyperparameters({"preset": "tiny"})["cdm_lr"], 200, 16, 5)
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
        regression = task.regression_centre(pixels, features)
        scores = [
            np.mean(_nearest_class(task.stats.restore(x).numpy(), references, reference_kinds) == kinds)
            for x in (sample, regression)
        ]
        return scores[0], scores[1]

    sampled, regressed = accuracy(raw)
    assert sampled >= 0.7 and regressed >= 0.85, (sampled, regressed)  # chance: 0.5; P(≥ 0.7 | chance) = 0.01
    swapped = raw[np.arange(rows.size) ^ 1]  # neighbours alternate red and blue
    assert accuracy(swapped)[0] <= 0.3


@pytest.mark.slow
def test_the_tiny_pipeline_puts_a_narrow_line_only_where_the_image_says(tmp_path):
    """Issue 25: blue galaxies have one narrow emission line, red ones none, with noise in every spectrum.
    The four tiny networks, chained by the inference as delivered (15 → 3 → 5 → 1), put the line into
    the blue galaxies' selected spectra with its flux within 20%, not into the red ones', and leave
    no trough beside it deeper than the observed spectra's noise makes."""
    from img2spec.inference import InferenceSettings, TrainedModels, predict_spectra
    from img2spec.metrics import side_lobe_depth, window_ew

    from tests.two_class import LINE_EW, LINE_REST, narrow_line_spectrum

    torch.set_num_threads(2)
    path = tmp_path / "lines.h5"
    truth = write_two_class_dataset(
        path, n_train=160, n_val=8, n_test=24, redshifted=True, spectrum_of=narrow_line_spectrum, noise=0.02
    )
    steps = {"cdm_lr": 300, "contrastive_lr": 120, "cdm_sr": 60, "contrastive_sr": 120}
    checkpoints = {}
    for name, hp in network_hyperparameters({"preset": "tiny"}).items():
        short = {"max_steps": steps[name], "batch_size": 16, "lr_warmup_steps": 10}
        short |= {"val_every_steps": steps[name], "checkpoint_every_steps": steps[name]}
        if hasattr(hp, "val_sampler_steps"):
            short["val_sampler_steps"] = 5
        files = CheckpointFiles.in_folder(tmp_path / name)
        train_network(str(path), name, dataclasses.replace(hp, **short), RUN, files, progress=False)
        checkpoints[name] = files.last
    models = TrainedModels.from_dataset(checkpoints, path)
    with h5py.File(path) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        images, observed_rest = h5["images"][()][rows], h5[spectrum_key("flux", "rest")][()][rows]
        mask_rest = h5[spectrum_key("mask", "rest")][()][rows]
    settings = InferenceSettings.defaults(
        k_lr=15, keep_lr=3, k_sr=5, sampler="dpmpp_2m", steps=10, batch_galaxies=8, seed=1
    )
    drawn = predict_spectra(models, images, rows + 1, settings)["flux_drawn"]  # rest frame, as the networks drew it
    wave, at_rest = models.grids.network_wave, np.zeros(rows.size)
    blue = truth["kind"][rows] == "blue"
    ew = window_ew(wave, drawn, np.zeros(drawn.shape, bool), at_rest, LINE_REST)
    assert abs(np.median(ew[blue]) / LINE_EW - 1) < 0.2, ew[blue]
    assert np.all(ew[~blue] < 0.2 * LINE_EW), ew[~blue]
    depth = side_lobe_depth(wave, drawn, np.zeros(drawn.shape, bool), at_rest, LINE_REST)
    observed_depth = side_lobe_depth(wave, observed_rest, mask_rest, at_rest, LINE_REST)
    assert np.median(depth[blue]) >= np.median(observed_depth[blue]) - 0.02, (depth[blue], observed_depth[blue])
    assert depth.min() > np.exp(-5 * 0.02), depth


@pytest.mark.slow
def test_a_median_regression_head_leaves_out_a_line_the_image_cannot_tell(tmp_path):
    """Issue 25: a line in 30% of the blue galaxies, chosen independently of their images.  CDM_lr's
    regression head with ``statistic: median`` predicts no line for blue test galaxies (the likelier
    alternative); with ``mean`` it blends a fraction of the line in, the [O III] excess of the default run."""
    from img2spec.metrics import window_ew
    from img2spec.upsampling import lowres_to_fullres

    from tests.two_class import LINE_EW, LINE_REST, hidden_line_spectrum

    torch.set_num_threads(2)
    path = tmp_path / "hidden.h5"
    truth = write_two_class_dataset(
        path, n_train=320, n_val=8, n_test=32, redshifted=True, spectrum_of=hidden_line_spectrum, noise=0.02
    )
    tiny = network_hyperparameters({"preset": "tiny"})["cdm_lr"]
    assert tiny.regression is not None
    line_ew = {}
    for statistic in ("mean", "median"):
        hp = _short(tiny, 180, 32, 2, regression=dataclasses.replace(tiny.regression, statistic=statistic))
        files = CheckpointFiles.in_folder(tmp_path / statistic)
        train_network(str(path), "cdm_lr", hp, RUN, files, progress=False)
        task = load_task(files.last).eval()
        with h5py.File(path) as h5:
            rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
            images, wave = h5["images"][()][rows], h5[spectrum_key("wave", "rest")][()]
            to_full = lowres_to_fullres(h5[spectrum_key("wave_lowres", "rest")][()], wave)
        pixels, features = (
            torch.from_numpy(task.image_stats.apply(images)),
            torch.from_numpy(task.image_stats.features(images)),
        )
        centre = task.stats.restore(task.regression_centre(pixels, features)).numpy() @ to_full
        blue = truth["kind"][rows] == "blue"
        ew = window_ew(wave, centre[blue], np.zeros((blue.sum(), wave.size), bool), np.zeros(blue.sum()), LINE_REST)
        line_ew[statistic] = float(np.median(ew))
    # mean of ln flux: about 0.3 of the line's ln bump in its 8 Å bin, an EW near 0.2 of the line's
    # (measured after 180 steps: median head 0.34 Å, mean head 2.23 Å; 0.08 and 2.36 after 300)
    assert line_ew["median"] < 0.08 * LINE_EW < 0.12 * LINE_EW < line_ew["mean"], line_ew
