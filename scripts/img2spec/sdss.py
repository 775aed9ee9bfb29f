"""Real SDSS data: spectra downloaded from the Science Archive Server (SAS).

Downloads are concurrent and polite (a shared request-rate limit), retried with exponential
back-off and jitter on transient failures (timeouts, connection errors, HTTP 429/5xx, truncated
or invalid bodies; ``Retry-After`` is honoured), resumable (a complete valid file is never fetched
again), atomic (written to a temporary name, validated, then renamed) and confined to the
destination folder (paths are built from the catalog's integer plate/mjd/fiber only).
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from .cubes import CUBE_SIZE, PIXEL_ARCSEC
from .download import RateLimiter, RetryPolicy, clear_partial_downloads, fetch_with_retries
from .io import BANDS, InputError, atomic_output, encode_specobjid, read_sdss_spectrum, spectrum_path

MANIFEST_COLUMNS = ["specObjID", "path", "size", "sha256", "url"]
FAILURE_COLUMNS = ["specObjID", "url", "reason", "attempts"]


class TooManyFailures(RuntimeError):
    """More downloads failed than the configured fraction allows."""


@dataclass(frozen=True)
class DownloadSettings:
    """How spectra are fetched.

    Attributes
    ----------
    base_url : str
        SAS root of the reduction, e.g. ``<SAS>/dr17/sdss/spectro/redux``; files are read from
        ``{base_url}/{run2d}/spectra/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits``.
    run2d : str
        Reduction version used when the catalog has no ``run2d`` column (26 for SDSS-I/II).
    concurrency : int
        Parallel downloads.
    requests_per_second : float
        Upper bound on the rate of requests of all workers together.
    retries, backoff, max_backoff, timeout, deadline
        As in :class:`img2spec.download.RetryPolicy`.
    max_failure_fraction : float
        The run fails when more of the catalog could not be fetched.
    """

    base_url: str
    run2d: str = "26"
    concurrency: int = 4
    requests_per_second: float = 5.0
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0
    deadline: float = 600.0
    max_failure_fraction: float = 0.05

    @property
    def retry(self) -> RetryPolicy:
        """The retry part of these settings."""
        return RetryPolicy(self.retries, self.backoff, self.max_backoff, self.timeout, self.deadline)


def spectrum_url(base_url: str, run2d: str, plate: int, mjd: int, fiberid: int) -> str:
    """SAS URL of a spec-lite file."""
    plate, mjd, fiberid = int(plate), int(mjd), int(fiberid)
    return f"{base_url.rstrip('/')}/{run2d}/spectra/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _valid(path: Path, specobjid: int) -> str | None:
    """Why the file is not the spectrum of ``specobjid``, or None if it is."""
    try:
        found = read_sdss_spectrum(path).meta["specobjid"]
    except InputError as err:
        return str(err).split(": ", 1)[-1]
    return None if found == specobjid else f"file holds specObjID {found}, expected {specobjid}"


def download_spectra(
    catalog: pd.DataFrame,
    dest_root: str | Path,
    settings: DownloadSettings,
    manifest_path: str | Path,
    failures_path: str | Path,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Fetch the spec-lite file of every catalog row below ``dest_root``; write manifest and failures.

    Returns counts: ``fetched``, ``already_present``, ``failed``, ``requests``.

    Raises
    ------
    TooManyFailures
        If the failed fraction exceeds ``settings.max_failure_fraction`` (after writing both tables).
    """
    dest_root = Path(dest_root).resolve()
    if removed := clear_partial_downloads(dest_root):
        log(f"removed {removed} partial file(s) an interrupted run left in {dest_root}")
    limiter = RateLimiter(settings.requests_per_second)
    lock = threading.Lock()
    counts = {"fetched": 0, "already_present": 0, "failed": 0, "requests": 0}
    manifest, failures = [], []

    def job(row) -> None:
        try:
            sid = int(row.specObjID)
            given = getattr(row, "run2d", None)
            run2d = settings.run2d if given is None or pd.isna(given) else str(given)
            url = spectrum_url(settings.base_url, run2d, row.plate, row.mjd, row.fiberID)
        except (TypeError, ValueError):
            reason = (
                f"malformed catalog row: specObjID={row.specObjID!r}, plate={row.plate!r}, mjd={row.mjd!r}, "
                f"fiberID={row.fiberID!r} are not all integers"
            )
            with lock:
                counts["failed"] += 1
                failures.append([str(row.specObjID), "", reason, 0])
            log(reason)
            return
        target = spectrum_path(dest_root, row.plate, row.mjd, row.fiberID).resolve()
        if dest_root not in target.parents:
            raise InputError(f"specObjID {sid}: path {target} escapes {dest_root}")
        if target.exists() and _valid(target, sid) is None:
            with lock:
                counts["already_present"] += 1
                manifest.append([sid, str(target.relative_to(dest_root)), target.stat().st_size, _sha256(target), url])
            return
        failure, attempts = fetch_with_retries(
            url, target, lambda path: _valid(path, sid), settings.retry, limiter, sleep
        )
        with lock:
            counts["requests"] += attempts
            if failure is None:
                counts["fetched"] += 1
                manifest.append([sid, str(target.relative_to(dest_root)), target.stat().st_size, _sha256(target), url])
            else:
                counts["failed"] += 1
                failures.append([sid, url, failure, attempts])
        if failure is not None:
            log(f"specObjID {sid}: giving up after {attempts} attempt(s): {failure}")

    rows = list(catalog.itertuples(index=False))
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        for done, _ in enumerate(pool.map(job, rows), start=1):
            if done % 500 == 0 or done == len(rows):
                log(f"spectra {done}/{len(rows)}: {counts}")
    with atomic_output(manifest_path) as tmp:
        pd.DataFrame(sorted(manifest), columns=MANIFEST_COLUMNS).to_csv(tmp, index=False)
    with atomic_output(failures_path) as tmp:
        pd.DataFrame(sorted(failures, key=lambda f: str(f[0])), columns=FAILURE_COLUMNS).to_csv(tmp, index=False)
    if counts["failed"] > settings.max_failure_fraction * max(len(rows), 1):
        reasons = pd.Series([f[2] for f in failures]).value_counts().head(5).to_dict()
        raise TooManyFailures(f"{counts['failed']} of {len(rows)} spectra could not be fetched; reasons: {reasons}")
    return counts


# ---------------------------------------------------------------------------------------------
# image cubes from SDSS frames


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


# ---------------------------------------------------------------------------------------------
# the sample query

CATALOG_COLUMNS = ("specObjID", "plate", "mjd", "fiberID", "z")


@dataclass(frozen=True)
class QuerySettings:
    """Sample definition and how the query is split and retried.

    Attributes
    ----------
    z_min, z_max : float
        Redshift range, z_min ≤ z ≤ z_max as the Appendix B query (its text says 0.05 < z ≤ 0.15).
    petro_rad_max : float
        Upper limit of the Petrosian radius and of petroR90 in every band [″] (the paper's Appendix B: 20).
    petro_mag_max : float
        Upper limit of the dereddened Petrosian r magnitude, the selection of the Pasquet et al. (2019)
        cubes that stands in for the paper's private object list (17.8).
    plate_min, plate_max, plates_per_chunk : int
        Plates covered and plates per query: each chunk is a specObjID range of whole plates (at
        most 640 fibers each), far below SkyServer's row limit.
    data_release : int
    retries, backoff, max_backoff : int, float
        Retries of a failed chunk with exponential back-off [s] and its cap.
    min_interval : float
        Seconds between queries (SkyServer allows about one per second).
    backend : str
        ``skyserver`` (astroquery) or ``casjobs`` (batch jobs; long queries, needs a SciServer token).
    casjobs_url, casjobs_context, token_env : str
        CasJobs REST root, the catalog context, and the environment variable holding the token.
    """

    z_min: float = 0.05
    z_max: float = 0.15
    petro_rad_max: float = 20.0
    petro_mag_max: float = 17.8
    plate_min: int = 266
    plate_max: int = 3000
    plates_per_chunk: int = 100
    data_release: int = 17
    retries: int = 5
    backoff: float = 5.0
    max_backoff: float = 120.0
    min_interval: float = 1.0
    backend: str = "skyserver"
    casjobs_url: str = "https://skyserver.sdss.org/CasJobs/RestApi"
    casjobs_context: str = "DR17"
    token_env: str = "SCISERVER_TOKEN"


def render_query(template: str, **values: float) -> str:
    """Fill the SQL template's placeholders; only finite numbers are accepted, never strings."""
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(value)
        ):
            raise InputError(f"SQL parameter {name}={value!r} is not a finite number")
    return template.format(
        **{k: repr(int(v)) if isinstance(v, (int, np.integer)) else repr(float(v)) for k, v in values.items()}
    )


def chunk_query(template: str, settings: QuerySettings, plates: tuple[int, int]) -> str:
    """The sample query (Appendix B cuts from ``settings``) of the spectra on plates ``plates`` (first, last)."""
    first, last = plates
    return render_query(
        template,
        z_min=settings.z_min,
        z_max=settings.z_max,
        petro_rad_max=settings.petro_rad_max,
        petro_mag_max=settings.petro_mag_max,
        specobjid_min=encode_specobjid(first, 0, 50000, 0),
        specobjid_max=encode_specobjid(last + 1, 0, 50000, 0) - 1,
    )


def plate_chunks(settings: QuerySettings) -> list[tuple[int, int]]:
    """(first plate, last plate) of each query chunk."""
    return [
        (lo, min(lo + settings.plates_per_chunk - 1, settings.plate_max))
        for lo in range(settings.plate_min, settings.plate_max + 1, settings.plates_per_chunk)
    ]


def skyserver_runner(data_release: int, timeout: float = 600.0) -> Callable[[str], pd.DataFrame]:
    """Run SQL on SkyServer through astroquery (base URL from astroquery's ``sdss.conf``)."""
    from astroquery.sdss import SDSS

    def run(sql: str) -> pd.DataFrame:
        table = SDSS.query_sql(sql, data_release=data_release, timeout=timeout, cache=False)
        return pd.DataFrame(columns=list(CATALOG_COLUMNS)) if table is None else table.to_pandas()

    return run


def query_catalog(
    template: str,
    settings: QuerySettings,
    cache_dir: str | Path,
    run: Callable[[str], pd.DataFrame],
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """The sample catalog, queried chunk by chunk; each chunk's result is cached in ``cache_dir``.

    Raises
    ------
    InputError
        If a chunk still fails after all retries (earlier chunks stay cached), or the result lacks
        the catalog's columns.
    """

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for lo, hi in plate_chunks(settings):
        cached = cache_dir / f"chunk-{lo:05d}-{hi:05d}.csv"
        if cached.exists():
            parts.append(pd.read_csv(cached))
            continue
        sql = chunk_query(template, settings, (lo, hi))
        delay = settings.backoff
        for attempt in range(1, settings.retries + 2):
            sleep(settings.min_interval)
            try:
                result = run(sql)
                break
            except Exception as err:
                if attempt > settings.retries:
                    raise InputError(f"plates {lo}-{hi}: query failed after {attempt} attempts: {err}") from err
                log(f"plates {lo}-{hi}: attempt {attempt} failed ({err}); retrying in {delay:.0f} s")
                sleep(delay * random.uniform(0.5, 1.5))
                delay = min(2 * delay, settings.max_backoff)
        with atomic_output(cached) as tmp:
            result.to_csv(tmp, index=False)
        log(f"plates {lo}-{hi}: {len(result)} galaxies")
        parts.append(pd.read_csv(cached))  # read back, so fresh and cached runs give identical tables
    catalog = pd.concat(parts, ignore_index=True)
    missing = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise InputError(f"query result lacks column(s) {missing}")
    catalog["specObjID"] = catalog["specObjID"].astype(np.int64)  # astroquery gives uint64; ids are < 2**63
    return catalog.drop_duplicates("specObjID").sort_values("specObjID").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# frames → cubes for a catalog


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
    from .cubes import write_cube_file

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


# ---------------------------------------------------------------------------------------------
# CasJobs (SciServer) backend

CASJOBS_STATUS = {0: "ready", 1: "started", 2: "canceling", 3: "cancelled", 4: "failed", 5: "finished"}


def casjobs_runner(
    base_url: str,
    token: str,
    context: str = "DR17",
    poll: float = 5.0,
    max_poll: float = 60.0,
    max_wait: float = 8 * 3600,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> Callable[[str], pd.DataFrame]:
    """Run SQL as a CasJobs batch job (SciServer REST API) and return its result table.

    The query is submitted into a MyDB table (``PUT {base}/contexts/{context}/jobs``), its status
    polled with growing intervals (``GET {base}/jobs/{id}``: 0 ready, 1 started, 2 canceling,
    3 cancelled, 4 failed, 5 finished), and the table read back as CSV
    (``POST {base}/contexts/MyDB/query``).  The token goes only into the ``X-Auth-Token`` header;
    it is never logged.  A failed job raises with CasJobs' own message (e.g. the SQL error).
    """
    import json

    if not token:
        raise InputError("CasJobs needs a SciServer token (set the environment variable named in sdss.query.token_env)")
    headers = {"X-Auth-Token": token, "Content-Type": "application/json"}

    def call(method: str, path: str, body: dict | None = None, accept: str = "application/json") -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{base_url.rstrip('/')}/{path}", data=data, method=method, headers=headers | {"Accept": accept}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.read()

    def run(sql: str) -> pd.DataFrame:
        table = "img2spec_" + hashlib.sha256(sql.encode()).hexdigest()[:16]
        wrapped = f"SELECT * INTO MyDB.{table} FROM ({sql}) AS sample"
        job = (
            call("PUT", f"contexts/{context}/jobs", {"Query": wrapped, "TaskName": "img2spec"})
            .decode()
            .strip()
            .strip('"')
        )
        log(f"CasJobs job {job} submitted")
        waited, interval = 0.0, poll
        while True:
            status = json.loads(call("GET", f"jobs/{job}"))
            state = CASJOBS_STATUS.get(int(status.get("Status", -1)), "unknown")
            if state == "finished":
                break
            if state in ("failed", "cancelled", "unknown"):
                raise InputError(f"CasJobs job {job} {state}: {status.get('Message', '').strip()}")
            if waited > max_wait:
                raise InputError(f"CasJobs job {job} still {state} after {waited:.0f} s")
            sleep(interval)
            waited += interval
            interval = min(2 * interval, max_poll)
        text = call(
            "POST",
            "contexts/MyDB/query",
            {"Query": f"SELECT * FROM {table}", "TaskName": "img2spec"},
            accept="text/plain",
        )
        lines = text.decode().splitlines()
        if lines and lines[0].startswith("#"):
            lines = lines[1:]
        return pd.read_csv(io.StringIO("\n".join(lines)))

    return run
