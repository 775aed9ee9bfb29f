"""Baselines (issue 12): photometric nearest neighbours, the mean spectrum and the mock's noiseless truth."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from img2spec import metrics
from img2spec.baselines import (
    BaselineSettings,
    baseline_summary,
    nearest_neighbours,
    photometric_baselines,
    truth_spectra,
)
from img2spec.dataset import SPLITS
from img2spec.io import InputError
from img2spec.photometry import aperture_fluxes, photometric_features
from img2spec.preprocessing import PreprocessingSettings

from tests.two_class import write_two_class_dataset


def test_aperture_fluxes_of_a_uniform_image_grow_with_area():
    images = np.ones((1, 5, 64, 64))
    fluxes = aperture_fluxes(images, (3.0, 6.0, 12.0))
    np.testing.assert_allclose(fluxes[0, :, 2], np.pi * np.array([3.0, 6.0, 12.0]) ** 2, rtol=0.01)


def test_features_reject_bad_cubes():
    cubes = np.ones((2, 5, 64, 64))
    cubes[1, 3, 10, 10] = np.nan
    with pytest.raises(InputError, match="non-finite pixels.*position 1"):
        photometric_features(cubes)
    with pytest.raises(InputError, match="expected \\(N, 5, H, W\\)"):
        photometric_features(np.ones((2, 4, 64, 64)))


def test_knn_recovers_spectra_that_follow_colour_and_mean_does_not(tmp_path):
    write_two_class_dataset(tmp_path / "two.h5", n_train=200, n_test=40)
    result = photometric_baselines(tmp_path / "two.h5", BaselineSettings.defaults(k=5), split="test")
    with h5py.File(tmp_path / "two.h5") as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        observed, mask = h5["flux"][()][rows], h5["mask"][()][rows]
        np.testing.assert_array_equal(result["specobjid"], h5["specobjid"][()][rows])
    knn = np.median(metrics.mse(result["knn"], observed, mask))
    mean = np.median(metrics.mse(result["mean"], observed, mask))
    assert knn < 0.003 and mean > 30 * knn
    # the same spectrum for every galaxy: the mean of the training spectra in linear flux
    assert np.allclose(result["mean"], result["mean"][0]) and result["mean_lowres"].shape == (rows.size, 563)


def test_rest_frame_knn_keeps_the_lines_that_the_observed_frame_average_smears(tmp_path):
    """Blue galaxies share a rest-frame Hα-like line (6620 Å, σ = 4 Å) seen at redshifts unrelated to
    their images: the observed-frame average of 5 neighbours spreads it over their redshifts, while
    the rest-frame average keeps its height and places it at the neighbours' median redshift."""
    truth = write_two_class_dataset(tmp_path / "two.h5", n_train=200, n_test=40, redshifted=True)
    settings = BaselineSettings.defaults(k=5)
    result = photometric_baselines(tmp_path / "two.h5", settings, split="test")
    wave = PreprocessingSettings.defaults().wave
    test = np.flatnonzero((truth["split"] == SPLITS["test"]) & (truth["kind"] == "blue"))
    train = np.flatnonzero(truth["split"] == SPLITS["train"])
    with h5py.File(tmp_path / "two.h5") as h5:
        images = h5["images"][()]
    neighbours = nearest_neighbours(photometric_features(images[train]), photometric_features(images[test]), 5)
    order = np.searchsorted(np.flatnonzero(truth["split"] == SPLITS["test"]), test)
    z = result["knn_rest_z"][order]
    np.testing.assert_allclose(z, np.median(truth["z"][train][neighbours], axis=1))

    def line(spectra: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Height above the continuum and centre [Å] of the line nearest 6620 (1 + at) Å."""
        heights, centres = [], []
        for spectrum, z_line in zip(np.exp(spectra), at):
            near = np.abs(wave - 6620 * (1 + z_line)) < 40
            heights.append(spectrum[near].max() / np.median(spectrum[near]) - 1)
            centres.append(wave[near][np.argmax(spectrum[near])])
        return np.array(heights), np.array(centres)

    rest_height, rest_centre = line(result["knn_rest"][order], z)
    observed_height, _ = line(result["knn"][order], z)
    assert np.all(rest_height > 1.6) and np.all(observed_height < 0.6 * rest_height)  # a lone line: height 2.0
    assert np.abs(rest_centre - 6620 * (1 + z)).max() <= 1.0


def test_truth_baseline_is_the_noise_floor(tiny_dataset, mock_dir, tmp_path):
    """The noiseless spectra, preprocessed like the observed ones, scatter about them by the noise the
    observed inverse variance states: χ²/N ≈ 1 (a little more for the mock's flux-calibration error)."""
    truth = truth_spectra(tiny_dataset, mock_dir / "spectra", PreprocessingSettings.defaults(), split="train")
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["train"])
        observed, mask, ivar = (h5[key][()][rows] for key in ("flux", "mask", "ivar"))
    chi2 = metrics.chi2_per_pixel(truth["truth"], observed, ivar, mask)
    assert 0.85 < np.median(chi2) < 1.4
    summary = baseline_summary(
        tiny_dataset,
        BaselineSettings.defaults(k=3),
        tmp_path / "b.h5",
        tmp_path / "b.json",
        spectra_root=mock_dir / "spectra",
        preprocessing=PreprocessingSettings.defaults(),
    )
    assert json.loads((tmp_path / "b.json").read_text()) == summary
    deviation = {name: values["median_mean_relative_deviation"] for name, values in summary["baselines"].items()}
    assert deviation["truth"] < deviation["knn"] and deviation["truth"] < deviation["mean"]
    with h5py.File(tmp_path / "b.h5") as h5:
        assert list(h5.attrs["baselines"]) == ["mean", "knn", "knn_rest", "truth"] and h5["truth"].shape == (
            summary["n"],
            4500,
        )
