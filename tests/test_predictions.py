"""Prediction files: written batch by batch and read back through their one owner (issue 27)."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from img2spec.io import InputError
from img2spec.predictions import MEDIAN, PredictionFile, PredictionWriter, band_key


def _write(path, with_redshift: bool = True):
    grids = SimpleNamespace(wave=np.arange(10.0), wave_lowres=np.arange(3.0), network_wave=np.arange(8.0), frame="rest")
    settings = SimpleNamespace(sampler="ddim", steps=2, percentiles=(16.0, 50.0, 84.0))
    flux = np.arange(50, dtype=np.float32).reshape(5, 10)
    with PredictionWriter(path, grids, settings, band_factor=1.5) as writer:
        for start in (0, 3):  # two batches
            rows = slice(start, min(start + 3, 5))
            result = {"flux": flux[rows]} | {band_key(p): flux[rows] + p / 100 for p in settings.percentiles}
            if with_redshift:
                result["z"] = np.full(len(flux[rows]), 0.1, np.float32)
            writer.append(np.arange(100, 105)[rows], result)
    return flux


def test_what_the_writer_writes_in_batches_the_reader_reads_back(tmp_path):
    flux = _write(tmp_path / "p.h5")
    with PredictionFile(tmp_path / "p.h5") as predictions:
        assert predictions.specobjid().tolist() == [100, 101, 102, 103, 104]
        np.testing.assert_array_equal(predictions.flux(1, 4), flux[1:4])
        assert predictions.percentiles == [16.0, 50.0, 84.0] and MEDIAN == "flux_p50"
        np.testing.assert_allclose(predictions.band(84), flux + 0.84)
        np.testing.assert_allclose(predictions.median(2), flux[2:] + 0.5)
        np.testing.assert_allclose(predictions.redshift(), 0.1)
        assert predictions.h5.attrs["band_scale"] == 1.5


def test_a_file_without_redshifts_or_median_reads_as_nan_and_none(tmp_path):
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        h5["specobjid"], h5["flux"] = np.arange(3), np.zeros((3, 10))
    with PredictionFile(tmp_path / "p.h5") as predictions:
        assert np.isnan(predictions.redshift()).all() and predictions.median() is None


def test_files_that_are_not_predictions_are_refused_by_name(tmp_path):
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="broken.h5: not a readable prediction file"):
        PredictionFile(tmp_path / "broken.h5")
    with h5py.File(tmp_path / "dataset.h5", "w") as h5:
        h5["specobjid"] = np.arange(3)
    with pytest.raises(InputError, match=r"dataset.h5: not a prediction file \(no flux\)"):
        PredictionFile(tmp_path / "dataset.h5")
