"""Image cubes from SDSS imaging: frames downloaded from the SAS and resampled onto 64×64 cubes around each galaxy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from ..cubes import CUBE_SIZE, PIXEL_ARCSEC
from ..download import RateLimiter, fetch_with_retries
from ..io import BANDS, InputError
from .spectra import DownloadSettings


def read_frame(path: str | Path) -> tuple[np.ndarray, WCS]:
    """Image [nanomaggies per pixel] and celestial WCS of an SDSS ``frame-*.fits(.bz2)`` file."""
    try:
        with fits.open(path) as hdul:
            image = np.asarray(hdul[0].data, dtype=np.float64)
            wcs = WCS(hdul[0].header).celestial
            unit = str(hdul[0].header.get("BUNIT", "")).lower()
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable frame ({err})") from err
    if image.ndim != 2:
        raise InputError(f"{path}: frame has shape {image.shape}, not an image")
    if unit and "nanomagg" not in unit:
        raise InputError(f"{path}: BUNIT is {unit!r}, expected nanomaggies")
    return image, wcs


def cube_wcs(ra: float, dec: float, size: int = CUBE_SIZE, pixel_arcsec: float = PIXEL_ARCSEC) -> WCS:
    """North-up TAN grid of ``size``² pixels of ``pixel_arcsec`` centred on (ra, dec) [deg]."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    wcs.wcs.cdelt = [-pixel_arcsec / 3600, pixel_arcsec / 3600]
    return wcs


def build_cube(
    frames: dict[str, tuple[np.ndarray, WCS]],
    ra: float,
    dec: float,
    size: int = 64,
    pixel_arcsec: float = PIXEL_ARCSEC,
    margin: int = 16,
) -> np.ndarray:
    """A (5, size, size) ugriz cube [nanomaggies per pixel] centred on (ra, dec).

    Each band is cut out around the position (with ``margin`` pixels to spare) and resampled onto
    one TAN grid with reproject's exact spherical-polygon overlap, which conserves flux; values are
    scaled by the ratio of output to input pixel area, so they stay fluxes per pixel.

    Raises
    ------
    InputError
        If the cube does not lie fully inside every band's frame (the object is too near an edge).
    """
    from reproject import reproject_exact

    target = cube_wcs(ra, dec, size, pixel_arcsec)
    out_area = proj_plane_pixel_area(target)
    cube = np.empty((len(BANDS), size, size))
    for b, band in enumerate(BANDS):
        if band not in frames:
            raise InputError(f"({ra:.5f}, {dec:.5f}): no {band}-band frame")
        image, wcs = frames[band]
        x, y = wcs.world_to_pixel_values(ra, dec)
        half = size / 2 * pixel_arcsec / (np.sqrt(proj_plane_pixel_area(wcs)) * 3600) + margin
        x0, x1 = int(np.floor(x - half)), int(np.ceil(x + half)) + 1
        y0, y1 = int(np.floor(y - half)), int(np.ceil(y + half)) + 1
        if x0 < 0 or y0 < 0 or x1 > image.shape[1] or y1 > image.shape[0]:
            raise InputError(f"({ra:.5f}, {dec:.5f}): too near the edge of the {band}-band frame")
        cutout_wcs = wcs.slice((slice(y0, y1), slice(x0, x1)))
        values, footprint = reproject_exact((image[y0:y1, x0:x1], cutout_wcs), target, shape_out=(size, size))
        if not np.all(footprint > 0.999):
            raise InputError(f"({ra:.5f}, {dec:.5f}): cube not fully covered by the {band}-band frame")
        cube[b] = values * out_area / proj_plane_pixel_area(wcs)
    return cube.astype(np.float32)


def frame_url(base_url: str, rerun: int, run: int, camcol: int, field: int, band: str) -> str:
    """SAS URL of a calibrated frame: ``{base}/{rerun}/{run}/{camcol}/frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2``."""
    run, camcol, field = int(run), int(camcol), int(field)
    return f"{base_url.rstrip('/')}/{int(rerun)}/{run}/{camcol}/frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2"


def frame_path(root: str | Path, rerun: int, run: int, camcol: int, field: int, band: str) -> Path:
    run, camcol, field = int(run), int(camcol), int(field)
    return (
        Path(root) / str(int(rerun)) / str(run) / str(camcol) / f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2"
    )


def _valid_frame(path: Path) -> str | None:
    try:
        read_frame(path)
    except InputError as err:
        return str(err).split(": ", 1)[-1]
    return None


def download_frames(
    catalog: pd.DataFrame,
    frames_root: str | Path,
    settings: DownloadSettings,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Fetch the five bands of every field in the catalog (columns rerun, run, camcol, field) once each.

    Returns counts; failed frames are listed under ``failures`` as (url, reason).
    """
    limiter = RateLimiter(settings.requests_per_second)
    fields = catalog[["rerun", "run", "camcol", "field"]].drop_duplicates().itertuples(index=False)
    jobs = [(f, band) for f in fields for band in BANDS]
    counts = {"fetched": 0, "already_present": 0, "failed": 0, "requests": 0}
    failures: list[tuple[str, str]] = []
    lock = threading.Lock()

    def job(item) -> None:
        (rerun, run, camcol, field), band = item
        target = frame_path(frames_root, rerun, run, camcol, field, band)
        if target.exists() and _valid_frame(target) is None:
            with lock:
                counts["already_present"] += 1
            return
        url = frame_url(settings.base_url, rerun, run, camcol, field, band)
        reason, attempts = fetch_with_retries(url, target, _valid_frame, settings.retry, limiter, sleep)
        with lock:
            counts["requests"] += attempts
            counts["fetched" if reason is None else "failed"] += 1
            if reason is not None:
                failures.append((url, reason))

    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        list(pool.map(job, jobs))
    log(f"frames: {counts}")
    return {**counts, "failures": failures}


def cubes_from_frames(
    catalog: pd.DataFrame,
    frames_root: str | Path,
    out_path: str | Path,
    size: int = CUBE_SIZE,
    pixel_arcsec: float = PIXEL_ARCSEC,
) -> pd.DataFrame:
    """Build every catalog object's cube from its field's frames; write a cube file; return rejects.

    Objects whose frames are missing or unreadable, or which lie too near a frame edge, are listed
    with their reason (the neighbouring-field fallback is not implemented).
    """
    from ..cubes import write_cube_file

    cubes, ids, rejects = [], [], []
    for field, group in catalog.groupby(["rerun", "run", "camcol", "field"]):
        rerun, run, camcol, number = field
        try:
            frames = {band: read_frame(frame_path(frames_root, rerun, run, camcol, number, band)) for band in BANDS}
        except (InputError, FileNotFoundError, OSError) as err:
            rejects += [{"specObjID": int(s), "reason": f"frames of field {field}: {err}"} for s in group["specObjID"]]
            continue
        for row in group.itertuples(index=False):
            try:
                cubes.append(np.moveaxis(build_cube(frames, row.ra, row.dec, size, pixel_arcsec), 0, -1))
                ids.append(int(row.specObjID))
            except InputError as err:
                rejects.append({"specObjID": int(row.specObjID), "reason": str(err)})
    if not cubes:
        raise InputError(f"no cube could be built for any of {len(catalog)} objects")
    write_cube_file(
        out_path,
        np.stack(cubes),
        np.rec.fromarrays([np.array(ids, np.int64)], dtype=np.dtype([("specObjID", np.int64)])),
    )
    return pd.DataFrame(rejects, columns=["specObjID", "reason"])
