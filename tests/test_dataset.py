"""The dataset layer: preprocessing a catalog's spectra, joining with cubes, splitting (issue 2)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from img2spec.catalog import TooManyRejects, preprocess_catalog_spectra, read_catalog
from img2spec.cubes import open_cube_file, write_cube_file
from img2spec.dataset import SPLITS, DatasetSettings, assign_splits, build_dataset
from img2spec.io import InputError, spectrum_path
from img2spec.preprocessing import PreprocessingSettings


@pytest.fixture()
def damaged_survey(mock_dir, tmp_path):
    """A copy of the mock survey with one object broken in each way the dataset must survive."""
    root = tmp_path / "survey"
    shutil.copytree(mock_dir, root)
    catalog = read_catalog(root / "catalog.csv")
    rows = catalog.iloc
    broken = {}

    path = spectrum_path(root / "spectra", rows[0].plate, rows[0].mjd, rows[0].fiberID)
    path.write_bytes(path.read_bytes()[:5000])
    broken[int(rows[0].specObjID)] = "corrupt"

    path = spectrum_path(root / "spectra", rows[1].plate, rows[1].mjd, rows[1].fiberID)
    with fits.open(path) as hdul:
        hdul["COADD"].data["ivar"][:] = 0
        hdul.writeto(path, overwrite=True)
    broken[int(rows[1].specObjID)] = "every pixel is bad"

    with np.load(root / "cubes.npz") as archive:
        cubes, labels = archive["cube"].copy(), archive["labels"]
    cubes[2, 10, 10, 3] = np.nan
    broken[int(rows[2].specObjID)] = "non-finite pixels in band(s) i"
    cubes[3, :, :, 0] = 0.0
    broken[int(rows[3].specObjID)] = "band(s) u all zero"
    write_cube_file(root / "cubes.npz", cubes, labels)

    for row, z_spec, expected in ((6, np.nan, "Z = nan is not finite"), (7, 3.0, "Z = 3.00000 outside 0.05–0.15")):
        path = spectrum_path(root / "spectra", rows[row].plate, rows[row].mjd, rows[row].fiberID)
        with fits.open(path) as hdul:
            hdul["SPECOBJ"].data["Z"][:] = z_spec
            hdul.writeto(path, overwrite=True)
        broken[int(rows[row].specObjID)] = expected
    path = spectrum_path(root / "spectra", rows[10].plate, rows[10].mjd, rows[10].fiberID)
    with fits.open(path) as hdul:
        hdul["SPECOBJ"].data["Z"][:] += 0.01
        hdul.writeto(path, overwrite=True)
    broken[int(rows[10].specObjID)] = "disagrees with catalog z"
    catalog = catalog.astype({"z": object, "plate": object})
    catalog.loc[8, "z"] = "abc"
    broken[int(rows[8].specObjID)] = "row 8: z = 'abc' is not a finite number"
    catalog.loc[9, "plate"] = "../x"
    broken[int(rows[9].specObjID)] = "row 9: plate = '../x' is not a positive integer"

    extra = catalog.iloc[[4]].copy()  # duplicate row
    ghost = catalog.iloc[[5]].copy()
    ghost["specObjID"] = 123456789
    ghost["fiberID"] = 999
    broken[123456789] = "file not found"
    catalog = pd.concat([catalog, extra, ghost], ignore_index=True)
    catalog.to_csv(root / "catalog.csv", index=False)
    return root, broken


def _build(root, tmp_path, **settings):
    catalog = read_catalog(root / "catalog.csv")
    spectra_rejects = preprocess_catalog_spectra(
        catalog,
        root / "spectra",
        PreprocessingSettings.defaults(),
        tmp_path / "spectra.h5",
        chunk_size=16,
        log=lambda _: None,
    )
    with open_cube_file(root / "cubes.npz") as cubes:
        return build_dataset(
            catalog,
            tmp_path / "spectra.h5",
            cubes,
            DatasetSettings.defaults(**({"n_val": 4, "n_test": 6} | settings)),
            tmp_path / "dataset.h5",
            prior_rejects=spectra_rejects,
            log=lambda _: None,
        )


def test_bad_objects_are_rejected_with_reasons_and_the_rest_goes_on(damaged_survey, tmp_path):
    root, broken = damaged_survey
    summary, rejects = _build(root, tmp_path, max_reject_fraction=0.3)
    reasons = dict(zip(rejects["specObjID"], rejects["reason"]))
    for sid, expected in broken.items():
        assert expected in reasons[sid], (sid, reasons.get(sid))
    duplicated = rejects.loc[rejects["reason"].str.contains("duplicate specObjID"), "specObjID"]
    assert len(duplicated) == 1
    assert set(rejects.loc[rejects["stage"] == "spectrum", "file"].str.len() > 0) == {True}
    n_good = 48 - (
        len(broken) - 1
    )  # broken objects among the 48 originals (not the ghost); the duplicate keeps its first row
    assert summary["n_objects"] == n_good and summary["n_rejected"] == len(broken)
    assert summary["splits"] == {"train": n_good - 10, "val": 4, "test": 6}
    assert summary["rejects_by_reason"]["catalog: duplicate specObjID (catalog row #; the first row is kept)"] == 1
    with h5py.File(tmp_path / "dataset.h5") as h5:
        ids = set(h5["specobjid"][()].tolist())
        assert not ids & set(broken)
        assert int(duplicated.iloc[0]) in ids
        assert np.isfinite(h5["images"][()]).all()


def test_too_many_rejects_fail_loudly_and_write_nothing(damaged_survey, tmp_path):
    root, _ = damaged_survey
    with pytest.raises(TooManyRejects, match="10 of 49 objects rejected .* allowed.*'spectrum: every pixel is bad"):
        _build(root, tmp_path, max_reject_fraction=0.02)
    assert not (tmp_path / "dataset.h5").exists()
    assert not list(tmp_path.glob(".dataset.h5*"))


def test_dataset_contents_match_the_contract(mock_dir, tmp_path):
    _summary, rejects = _build(mock_dir, tmp_path)
    assert rejects.empty
    catalog = read_catalog(mock_dir / "catalog.csv").set_index("specObjID")
    with h5py.File(tmp_path / "dataset.h5") as h5:
        n = h5["specobjid"].shape[0]
        assert h5["images"].shape == (n, 5, 64, 64) and h5["images"].chunks == (1, 5, 64, 64)
        assert h5["flux"].shape == (n, 4500) and h5["flux_lowres"].shape == (n, 563)
        assert h5["mask"].dtype == bool and h5["wave"].shape == (4500,) and h5["wave_lowres"].shape == (563,)
        assert h5["specobjid"].dtype == np.int64
        assert {h5["split"].attrs[k] for k in SPLITS} == {0, 1, 2}
        ids = h5["specobjid"][()]
        np.testing.assert_allclose(h5["z"][()], catalog.loc[ids, "z"])
        np.testing.assert_allclose(h5["catalog/fiberMag_r"][()], catalog.loc[ids, "fiberMag_r"])
        window = (h5["wave"][()] >= 6900) & (h5["wave"][()] <= 6950)
        np.testing.assert_allclose(np.exp(h5["flux"][:, window].astype(float)).mean(1), 1.0, atol=1e-5)
        # the same spectra in the rest frame, on a grid that covers the observed one at every training z
        rest_wave, z = h5["wave_rest"][()], h5["z_spec"][()]
        z_low, z_high = h5.attrs["rest_z_range"]
        train_z = z[h5["split"][()] == SPLITS["train"]]
        assert (z_low, z_high) == (train_z.min(), train_z.max())
        assert rest_wave[0] <= 4000 / (1 + z_high) and rest_wave[-1] >= 8499 / (1 + z_low)
        assert h5["flux_rest"].shape == (n, rest_wave.size) and h5["mask_rest"].shape == (n, rest_wave.size)
        assert h5["flux_lowres_rest"].shape == (n, h5["wave_lowres_rest"].size)
        rest_window = (rest_wave >= 6900) & (rest_wave <= 6950)
        np.testing.assert_allclose(np.exp(h5["flux_rest"][:, rest_window].astype(float)).mean(1), 1.0, atol=1e-5)
        unreached = (rest_wave[None] * (1 + z[:, None]) < 4000) | (rest_wave[None] * (1 + z[:, None]) > 8499)
        assert h5["mask_rest"][()][unreached].all()
        # image statistics from the training split only
        train = h5["images"][()][h5["split"][()] == SPLITS["train"]].astype(np.float64)
        np.testing.assert_allclose(h5["images"].attrs["train_mean"], train.mean(axis=(0, 2, 3)), rtol=1e-6)
        np.testing.assert_allclose(h5["images"].attrs["train_std"], train.std(axis=(0, 2, 3)), rtol=1e-5)
        everything = h5["images"][()].astype(np.float64).mean(axis=(0, 2, 3))
        assert not np.allclose(h5["images"].attrs["train_mean"], everything, rtol=1e-9)
        # the images are the cube file's, band-first
        with open_cube_file(mock_dir / "cubes.npz") as cubes:
            row = int(np.flatnonzero(cubes.specobjid == ids[7])[0])
            np.testing.assert_array_equal(h5["images"][7], cubes.read(np.array([row]))[0])


def test_split_is_seeded_and_independent_of_input_order():
    ids = np.random.default_rng(0).choice(10**15, 500, replace=False)
    split = assign_splits(ids, 20, 30, seed=4)
    assert np.bincount(split).tolist() == [450, 20, 30]
    shuffled = np.random.default_rng(1).permutation(500)
    again = assign_splits(ids[shuffled], 20, 30, seed=4)
    np.testing.assert_array_equal(again, split[shuffled])
    assert not np.array_equal(assign_splits(ids, 20, 30, seed=5), split)
    with pytest.raises(ValueError, match="cannot give"):
        assign_splits(ids[:40], 20, 30, seed=4)


def test_dataset_file_checks_its_layout_and_names_missing_ids(tiny_dataset, tmp_path):
    from img2spec.dataset import DatasetFile

    with DatasetFile(tiny_dataset) as data:
        test = data.rows("test")
        assert data.rows_of(data.specobjid[test[::-1]]).tolist() == test[::-1].tolist()
        with pytest.raises(ValueError, match=r"1 galaxies missing .*specObjID \[12345\]"):
            data.rows_of(np.array([12345]))
        assert set(data.morphology(test)) <= {"elliptical", "spiral", "uncertain"}
        assert np.array_equal(data.read("flux", test[::-1]), data.h5["flux"][()][test[::-1]])
    old = tmp_path / "old.h5"
    shutil.copyfile(tiny_dataset, old)
    with h5py.File(old, "r+") as h5:
        del h5.attrs["layout_version"]
    with pytest.raises(InputError, match="old.h5: dataset layout version None.*rebuild"):
        DatasetFile(old)
