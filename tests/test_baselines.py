"""Baselines (issue 12): photometric nearest neighbours, the mean spectrum and the mock's noiseless truth."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from img2spec import metrics
from img2spec.baselines import BaselineSettings, baseline_summary, photometric_baselines, truth_spectra
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
    result = photometric_baselines(tmp_path / "two.h5", BaselineSettings(k=5), split="test")
    with h5py.File(tmp_path / "two.h5") as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        observed, mask = h5["flux"][()][rows], h5["mask"][()][rows]
        np.testing.assert_array_equal(result["specobjid"], h5["specobjid"][()][rows])
    knn = np.median(metrics.mse(result["knn"], observed, mask))
    mean = np.median(metrics.mse(result["mean"], observed, mask))
    assert knn < 0.003 and mean > 30 * knn
    # the same spectrum for every galaxy: the mean of the training spectra in linear flux
    assert np.allclose(result["mean"], result["mean"][0]) and result["mean_lowres"].shape == (rows.size, 563)


def test_truth_baseline_is_the_noise_floor(tiny_dataset, mock_dir, tmp_path):
    """The noiseless spectra, preprocessed like the observed ones, scatter about them by the noise the
    observed inverse variance states: χ²/N ≈ 1 (a little more for the mock's flux-calibration error)."""
    truth = truth_spectra(tiny_dataset, mock_dir / "spectra", PreprocessingSettings(), split="train")
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["train"])
        observed, mask, ivar = (h5[key][()][rows] for key in ("flux", "mask", "ivar"))
    chi2 = metrics.chi2_per_pixel(truth["truth"], observed, ivar, mask)
    assert 0.85 < np.median(chi2) < 1.4
    summary = baseline_summary(
        tiny_dataset,
        BaselineSettings(k=3),
        tmp_path / "b.h5",
        tmp_path / "b.json",
        spectra_root=mock_dir / "spectra",
        preprocessing=PreprocessingSettings(),
    )
    assert json.loads((tmp_path / "b.json").read_text()) == summary
    deviation = {name: values["median_mean_relative_deviation"] for name, values in summary["baselines"].items()}
    assert deviation["truth"] < deviation["knn"] and deviation["truth"] < deviation["mean"]
    with h5py.File(tmp_path / "b.h5") as h5:
        assert list(h5.attrs["baselines"]) == ["mean", "knn", "truth"] and h5["truth"].shape == (summary["n"], 4500)
