from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from img2spec import cubes as cube_files
from img2spec import io


def test_reader_matches_specobj_row_of_real_spectrum(ngc3522_path):
    spec = io.read_sdss_spectrum(ngc3522_path)
    with fits.open(ngc3522_path) as hdul:
        row = hdul["SPECOBJ"].data[0]
        loglam = hdul["COADD"].data["loglam"]
        ivar = hdul["COADD"].data["ivar"]
    assert spec.meta["z"] == pytest.approx(float(row["Z"]), rel=1e-7)
    assert spec.meta["vdisp"] == pytest.approx(float(row["VDISP"]), rel=1e-7)
    assert spec.meta["specobjid"] == int(row["SPECOBJID"])
    assert spec.meta["class"] == "GALAXY"
    np.testing.assert_allclose(spec.wave, 10.0 ** loglam.astype(np.float64))
    assert spec.wave[0] == pytest.approx(3826.5, abs=0.1)
    np.testing.assert_array_equal(spec.bad[ivar <= 0], True)
    assert spec.ivar[spec.bad].max() == 0


def test_specobjid_encoding_matches_real_spectra(ngc3522_path, ngc3073_path):
    for path in (ngc3522_path, ngc3073_path):
        meta = io.read_sdss_spectrum(path).meta
        decoded = io.decode_specobjid(meta["specobjid"])
        assert (decoded["plate"], decoded["mjd"], decoded["fiberid"]) == (
            meta["plate"],
            meta["mjd"],
            meta["fiberid"],
        )
        assert io.encode_specobjid(meta["plate"], meta["fiberid"], meta["mjd"], decoded["run2d"]) == meta["specobjid"]


def test_spec_lite_round_trip(tmp_path):
    loglam = 3.58 + 1e-4 * np.arange(500)
    flux = np.linspace(1, 2, 500)
    ivar = np.full(500, 4.0)
    mask = np.zeros(500, int)
    mask[10] = io.NODATA_BIT
    sid = io.encode_specobjid(3000, 12, 55000)
    path = io.spectrum_path(tmp_path, 3000, 55000, 12)
    io.write_spec_lite(path, loglam, flux, ivar, mask, {"SPECOBJID": sid, "Z": 0.1, "VDISP": 150.0, "CLASS": "GALAXY"})
    spec = io.read_sdss_spectrum(path)
    assert path.name == "spec-3000-55000-0012.fits" and path.parent.name == "3000"
    assert spec.meta["specobjid"] == sid and spec.meta["vdisp"] == 150.0
    assert spec.bad.sum() == 1 and spec.bad[10]
    np.testing.assert_allclose(spec.flux, flux, rtol=1e-6)
    assert not list(path.parent.glob(".*part")), "temporary file left behind"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "corrupt"),
        ("garbage", "corrupt"),
        ("no_coadd", "no COADD HDU"),
        ("missing", "not found"),
        ("all_bad", "every pixel is bad"),
    ],
)
def test_reader_rejects_bad_files_naming_them(tmp_path, ngc3522_path, damage, message):
    path = tmp_path / f"spec-{damage}.fits"
    raw = ngc3522_path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 3])
    elif damage == "garbage":
        path.write_bytes(b"SIMPLE  = nonsense" + bytes(5000))
    elif damage == "no_coadd":
        with fits.open(ngc3522_path) as hdul:
            fits.HDUList([hdul[0], hdul["SPECOBJ"]]).writeto(path)
    elif damage == "all_bad":
        with fits.open(ngc3522_path) as hdul:
            hdul["COADD"].data["ivar"][:] = 0
            hdul.writeto(path)
    with pytest.raises(io.InputError, match=message) as info:
        io.read_sdss_spectrum(path)
    assert path.name in str(info.value)


def _labels(ids):
    return np.rec.fromarrays([np.asarray(ids, np.int64), np.zeros(len(ids))], names="specObjID,z")


def test_cube_file_is_memory_mapped_and_band_first(tmp_path):
    rng = np.random.default_rng(1)
    cubes = rng.normal(size=(7, 64, 64, 5)).astype(np.float32)
    path = tmp_path / "cubes.npz"
    cube_files.write_cube_file(path, cubes, _labels(range(100, 107)))
    cube_file = cube_files.open_cube_file(path)
    assert isinstance(cube_file._pixels, np.memmap)
    np.testing.assert_array_equal(cube_file.specobjid, np.arange(100, 107))
    block = cube_file.read(np.array([5, 1, 3]))
    assert block.shape == (3, 5, 64, 64)
    np.testing.assert_array_equal(block[0, 2], cubes[5, :, :, 2])
    np.testing.assert_array_equal(block[1], np.moveaxis(cubes[1], -1, 0))


def test_compressed_and_hdf5_cube_files(tmp_path):
    import h5py

    cubes = np.arange(2 * 64 * 64 * 5, dtype=np.float32).reshape(2, 64, 64, 5)
    npz = tmp_path / "c.npz"
    np.savez_compressed(npz, cube=cubes, labels=_labels([1, 2]))
    np.testing.assert_array_equal(
        cube_files.open_cube_file(npz, cache_dir=tmp_path / "cache").read(slice(0, 2))[1, 4], cubes[1, :, :, 4]
    )
    before = sorted(tmp_path.iterdir())
    with cube_files.open_cube_file(
        npz
    ) as cube_file:  # no cache given: unpacked into a temporary folder, not beside the input
        np.testing.assert_array_equal(cube_file.read(slice(1, 2))[0, 2], cubes[1, :, :, 2])
        scratch = Path(cube_file._scratch.name)
        assert scratch.exists() and sorted(tmp_path.iterdir()) == before
    assert not scratch.exists()
    h5 = tmp_path / "c.h5"
    with h5py.File(h5, "w") as f:
        f["cube"] = cubes
        f["specObjID"] = np.array([1, 2])
    with cube_files.open_cube_file(h5) as cube_file:
        np.testing.assert_array_equal(cube_file.read(np.array([1, 0]))[0, 0], cubes[1, :, :, 0])


@pytest.mark.parametrize(
    "cube_shape, bands, message",
    [
        ((2, 64, 64, 4), None, "expected \\(N, 64, 64, 5\\)"),
        ((2, 5, 64, 64), None, "expected \\(N, 64, 64, 5\\)"),
        ((2, 64, 64, 5), ["g", "r", "i", "z", "u"], "expected \\['u', 'g'"),
        ((2, 32, 32, 5), None, "has shape \\(2, 32, 32, 5\\); expected \\(N, 64, 64, 5\\)"),
        ((0, 64, 64, 5), None, "holds no cubes"),
    ],
)
def test_cube_file_rejects_wrong_shape_or_band_order(tmp_path, cube_shape, bands, message):
    import h5py

    path = tmp_path / "bad.npz"
    extra = {} if bands is None else {"bands": np.array(bands)}
    np.savez(path, cube=np.zeros(cube_shape, np.float32), labels=_labels([1, 2][: cube_shape[0]]), **extra)
    with pytest.raises(io.InputError, match=message) as info:
        cube_files.open_cube_file(path)
    assert "bad.npz" in str(info.value)
    if bands is None:  # the same shape in an HDF5 file
        with h5py.File(tmp_path / "bad.h5", "w") as h5:
            h5["cube"], h5["specObjID"] = np.zeros(cube_shape, np.float32), np.arange(cube_shape[0])
        with pytest.raises(io.InputError, match=message) as info:
            cube_files.open_cube_file(tmp_path / "bad.h5")
        assert "bad.h5" in str(info.value)


def test_a_file_that_is_not_hdf5_gets_an_error_naming_it(tmp_path):
    path = tmp_path / "cubes.h5"
    path.write_text("specObjID,u,g,r,i,z\n")
    with pytest.raises(io.InputError, match="cubes.h5: not a readable HDF5 file"):
        cube_files.open_cube_file(path)
