"""Evaluation: spectral-agreement metrics and the quality target (issue 7)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from img2spec import metrics
from img2spec.dataset import SPLITS
from img2spec.evaluation import quality


def test_metrics_on_known_differences():
    rng = np.random.default_rng(0)
    observed = np.log(1 + rng.random((3, 500)))
    assert np.allclose(metrics.mean_relative_deviation(observed, observed), 0)
    assert np.allclose(metrics.mean_relative_deviation(observed + np.log(1.1), observed), 0.1)
    assert np.allclose(metrics.mse(observed + 0.2, observed), 0.04)
    mask = np.zeros_like(observed, bool)
    mask[:, :250] = True
    shifted = observed.copy()
    shifted[:, :250] += 5.0  # only masked pixels differ
    assert np.allclose(metrics.mean_relative_deviation(shifted, observed, mask), 0)
    # χ²/N ≈ 1 for the true spectrum against noisy observations with the right ivar
    truth = np.full((1, 200_000), 1.0)
    sigma = 0.05
    noisy = truth + rng.normal(0, sigma, truth.shape)
    chi2 = metrics.chi2_per_pixel(np.log(truth), np.log(noisy), np.full(truth.shape, 1 / sigma**2))
    assert chi2[0] == pytest.approx(1.0, rel=0.01)
    lower, upper = np.log(truth) - 0.1, np.log(truth) + 0.1
    assert metrics.band_coverage(lower, upper, np.log(noisy)) == pytest.approx(np.mean(np.abs(np.log(noisy)) <= 0.1))


def test_quality_target_on_a_known_prediction(tiny_dataset, mock_dir, tmp_path):
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids = h5["specobjid"][()][rows]
        observed = h5["flux"][()][rows]
    with h5py.File(tmp_path / "pred.h5", "w") as pred:
        pred["specobjid"] = ids[::-1]  # any order
        pred["flux"] = (observed + np.log(1.2))[::-1]
    summary = quality(tmp_path / "pred.h5", tiny_dataset, tmp_path / "quality", mock_dir / "truth.parquet")
    assert summary["all"]["n"] == ids.size
    assert summary["all"]["median_mean_relative_deviation"] == pytest.approx(0.2, rel=1e-4)
    assert summary["all"]["fraction_below_10pct"] == 0.0
    assert set(summary["truth_morphology"]) <= {"elliptical", "spiral"}
    table = pd.read_csv(tmp_path / "quality" / "galaxies.csv")
    assert set(table["specObjID"]) == set(ids) and (tmp_path / "quality" / "histograms.png").stat().st_size > 0
    assert json.loads((tmp_path / "quality" / "summary.json").read_text()) == summary
