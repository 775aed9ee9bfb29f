"""Image cubes built from the real SDSS frames of field 2583-2-136 (issue 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from img2spec.io import InputError
from img2spec.sdss import build_cube, read_frame
from scipy import ndimage

from .conftest import SHARED_DATA

FIELD = SHARED_DATA / "sdss_frames" / "2583-2-136"
pytestmark = pytest.mark.skipif(not FIELD.exists(), reason="needs ../shared/data/sdss_frames")
YY, XX = np.mgrid[:64, :64]


@pytest.fixture(scope="module")
def frames():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frames' deprecated RADECSYS keyword
        return {band: read_frame(FIELD / f"frame-{band}-002583-2-0136.fits.bz2") for band in "ugriz"}


def _centroid(image, x0=31.5, y0=31.5, sigma=2.0):
    """Iterative Gaussian-weighted centroid after subtracting the median of the outer region."""
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    image = image - np.median(image[np.hypot(xs - x0, ys - y0) > 24])
    cx, cy = x0, y0
    for _ in range(30):
        weight = image * np.exp(-0.5 * ((xs - cx) ** 2 + (ys - cy) ** 2) / sigma**2)
        cx, cy = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
    return cx, cy


def _bright_star(frames):
    """The brightest compact, unsaturated r-band source away from the frame edges."""
    image, wcs = frames["r"]
    peaks = np.argwhere((image == ndimage.maximum_filter(image, size=25)) & (image > 100) & (image < 2000))
    for y, x in sorted(peaks, key=lambda p: -image[tuple(p)]):
        if 100 < y < image.shape[0] - 100 and 100 < x < image.shape[1] - 100:
            core = image[y - 3 : y + 4, x - 3 : x + 4].sum() - 49 * np.median(image[y - 30 : y + 30, x - 30 : x + 30])
            wide = image[y - 10 : y + 11, x - 10 : x + 11].sum() - 441 * np.median(
                image[y - 30 : y + 30, x - 30 : x + 30]
            )
            if core / wide > 0.8:  # a point source
                return [float(v) for v in wcs.pixel_to_world_values(x, y)]
    raise AssertionError("no bright star found")


def test_resampled_bands_are_aligned_as_the_sky_is(frames):
    ra, dec = _bright_star(frames)
    cube = build_cube(frames, ra, dec)
    assert cube.shape == (5, 64, 64) and cube.dtype == np.float32
    cube_centroids = np.array([_centroid(cube[b]) for b in range(5)])
    for b, band in enumerate("ugriz"):
        # the same star measured on the raw frame, in its own pixels, carried through the WCS
        image, wcs = frames[band]
        x, y = (round(float(v)) for v in wcs.world_to_pixel_values(ra, dec))
        cx, cy = _centroid(image[y - 32 : y + 32, x - 32 : x + 32])
        star_ra, star_dec = wcs.pixel_to_world_values(x - 32 + cx, y - 32 + cy)
        expected = (
            31.5 - (star_ra - ra) * 3600 * np.cos(np.radians(dec)) / 0.396,
            31.5 + (star_dec - dec) * 3600 / 0.396,
        )
        np.testing.assert_allclose(cube_centroids[b], expected, atol=0.05, err_msg=band)
    # the raw frames offset u and g from r/i/z by up to 0.09″ (0.22 px; likely differential chromatic
    # refraction); the red bands, whose raw frames agree, agree after resampling within 0.1 px
    red = cube_centroids[2:]
    assert np.ptp(red[:, 0]) < 0.1 and np.ptp(red[:, 1]) < 0.1
    # the raw frames' band offsets carry over: all five agree within 0.3 px
    assert np.ptp(cube_centroids[:, 0]) < 0.3 and np.ptp(cube_centroids[:, 1]) < 0.3


def test_resampling_conserves_flux(frames):
    ra, dec = _bright_star(frames)
    cube = build_cube(frames, ra, dec)
    radius = 20
    for b, band in enumerate("ugriz"):
        image, wcs = frames[band]
        x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
        ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
        near = np.hypot(xs - x, ys - y)
        background = np.median(image[(near > 40) & (near < 60)])
        frame_flux = (image - background)[near < radius].sum()
        # the same sky level for both: the cube is the frame resampled, pixel areas agree within 0.1%
        cube_flux = (cube[b] - background)[np.hypot(XX - 31.5, YY - 31.5) < radius].sum()
        assert cube_flux == pytest.approx(frame_flux, rel=0.01), band


def test_objects_near_the_edge_are_rejected(frames):
    _image, wcs = frames["r"]
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(10, 700))
    with pytest.raises(InputError, match="too near the edge of the u-band frame|too near the edge"):
        build_cube(frames, ra, dec)
    with pytest.raises(InputError, match="no z-band frame"):
        build_cube({band: frames[band] for band in "ugri"}, *_bright_star(frames))


def test_frames_are_downloaded_once_per_field_and_cubes_built(frames, tmp_path):
    import shutil

    import pandas as pd
    from img2spec.cubes import open_cube_file
    from img2spec.sdss import DownloadSettings, cubes_from_frames, download_frames, frame_path

    from .test_sdss_download import FakeSAS

    sas_root = tmp_path / "sas"
    for band in "ugriz":
        target = frame_path(sas_root / "dr17" / "eboss" / "photoObj" / "frames", 301, 2583, 2, 136, band)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIELD / f"frame-{band}-002583-2-0136.fits.bz2", target)
    star = _bright_star(frames)
    edge = [float(v) for v in frames["r"][1].pixel_to_world_values(5, 700)]
    catalog = pd.DataFrame(
        {
            "specObjID": [11, 12],
            "ra": [star[0], edge[0]],
            "dec": [star[1], edge[1]],
            "rerun": 301,
            "run": 2583,
            "camcol": 2,
            "field": 136,
        }
    )
    with FakeSAS(sas_root) as sas:
        base = sas.base_url.replace("/dr17/sdss/spectro/redux", "/dr17/eboss/photoObj/frames")
        sas.faults["dr17/eboss/photoObj/frames/301/2583/2/frame-g-002583-2-0136.fits.bz2"] = ["503"]
        settings = DownloadSettings.defaults(base_url=base, requests_per_second=50, backoff=0.0)
        counts = download_frames(
            pd.concat([catalog, catalog]), tmp_path / "frames", settings, log=lambda _: None, sleep=lambda _: None
        )
        assert counts["fetched"] == 5 and counts["requests"] == 6 and counts["failed"] == 0
        again = download_frames(catalog, tmp_path / "frames", settings, log=lambda _: None, sleep=lambda _: None)
        assert again["already_present"] == 5 and again["requests"] == 0
    rejects = cubes_from_frames(catalog, tmp_path / "frames", tmp_path / "cubes.npz")
    assert rejects["specObjID"].tolist() == [12] and "edge" in rejects["reason"][0]
    with open_cube_file(tmp_path / "cubes.npz") as cubes:
        assert cubes.specobjid.tolist() == [11]
        np.testing.assert_allclose(cubes.read(np.array([0]))[0], build_cube(frames, *star), rtol=1e-6)
