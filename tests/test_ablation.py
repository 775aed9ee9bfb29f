"""Image ablation variants (issue 8): information removed, shape and flux kept."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from img2spec.ablation import collect, rest_frame_mse, transform_images, variant_dataset
from img2spec.dag import TABLE3_BAND_VARIANTS, parse_variant, variants
from img2spec.dataset import SPLITS

from tests.workflow_rules import rule_outputs


def test_block_averaging_conserves_flux_and_keeps_the_field_of_view():
    rng = np.random.default_rng(0)
    images = rng.gamma(2.0, 1.0, (3, 5, 64, 64)).astype(np.float32)
    band_mean = images.mean(axis=(0, 2, 3))
    assert np.array_equal(transform_images(images, 64, "ugriz", band_mean), images)
    for resolution in (32, 8, 1):
        out = transform_images(images, resolution, "ugriz", band_mean)
        assert out.shape == images.shape
        assert np.allclose(out.sum(axis=(2, 3)), images.sum(axis=(2, 3)), rtol=1e-5)
        assert np.unique(out[0, 0]).size <= resolution**2
    one = transform_images(images, 1, "ugriz", band_mean)
    assert np.allclose(one[:, :, 0, 0], images.mean(axis=(2, 3)), rtol=1e-5)


def test_band_variants_remove_colour():
    rng = np.random.default_rng(1)
    images = rng.gamma(2.0, 1.0, (2, 5, 64, 64)).astype(np.float32)
    band_mean = np.arange(5.0)
    gri = transform_images(images, 64, "gri", band_mean)
    assert np.all(gri[:, 0] == 0.0) and np.all(gri[:, 4] == 4.0) and np.array_equal(gri[:, 1:4], images[:, 1:4])
    g = transform_images(images, 64, "g", band_mean)
    assert np.array_equal(g[:, 1], images[:, 1]) and np.all(g[:, 2] == 2.0)
    mean = transform_images(images, 64, "mean", band_mean)
    assert np.allclose(mean[:, 0], images.mean(axis=1)) and np.allclose(mean[:, 3], mean[:, 0])


def test_variant_names():
    assert variants([64, 8], ["64px_ugriz", "1px_g"]) == ["64px_ugriz", "8px_ugriz", "1px_g"]
    assert variants([64], list(TABLE3_BAND_VARIANTS)) == ["64px_ugriz", "32px_gri", "16px_gri", "1px_mean", "1px_g"]
    assert parse_variant("16px_mean") == (16, "mean")
    for bad in ("12px_ugriz", "16px_uv", "16_ugriz"):
        with pytest.raises(ValueError, match=bad):
            parse_variant(bad)


def test_variant_dataset_statistics_and_scores(tiny_dataset, tmp_path):
    summary = variant_dataset(tiny_dataset, tmp_path / "g.h5", "64px_g")
    with h5py.File(tmp_path / "g.h5") as h5, h5py.File(tiny_dataset) as original:
        std = h5["images"].attrs["train_std"]
        assert std[0] == 1.0 and std[1] == pytest.approx(original["images"].attrs["train_std"][1], rel=1e-5)
        assert np.array_equal(h5["flux"][()], original["flux"][()]) and h5["images"].attrs["ablation"] == "64px_g"
        test = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids, flux = h5["specobjid"][()][test], h5["flux"][()][test]
    assert summary["bands"] == "g"
    with h5py.File(tmp_path / "pred.h5", "w") as pred:
        pred["specobjid"] = ids
        pred["flux"] = flux + 0.1
    scores = rest_frame_mse(tmp_path / "pred.h5", tiny_dataset)
    assert np.allclose(scores["mse"], 0.01)


def test_collect_writes_the_files_the_rule_declares_and_refuses_other_galaxies(tmp_path):
    scores = {}
    for name, mse in (("64px_ugriz", [0.01, 0.03]), ("1px_g", [0.02, 0.06])):
        scores[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"specObjID": [7, 8], "mse": mse}).to_csv(scores[name], index=False)
    outputs = rule_outputs("ablation", tmp_path / "ablation")
    table = collect(scores, **outputs)
    assert table.set_index("variant")["mean_mse"].to_dict() == pytest.approx({"64px_ugriz": 0.02, "1px_g": 0.04})
    assert json.loads(outputs["summary"].read_text())["variants"][1]["resolution"] == 1
    assert outputs["figure"].stat().st_size > 0 and len(pd.read_csv(outputs["table"])) == 2
    pd.DataFrame({"specObjID": [7, 9], "mse": [0.1, 0.1]}).to_csv(scores["1px_g"], index=False)
    with pytest.raises(ValueError, match="1px_g.csv: variant 1px_g was scored on other test galaxies"):
        collect(scores, **outputs)
