"""Real SDSS data: spectra downloaded from the Science Archive Server (SAS).

Downloads are concurrent and polite (a shared request-rate limit), retried with exponential
back-off and jitter on transient failures (timeouts, connection errors, HTTP 429/5xx, truncated
or invalid bodies; ``Retry-After`` is honoured), resumable (a complete valid file is never fetched
again), atomic (written to a temporary name, validated, then renamed) and confined to the
destination folder (paths are built from the catalog's integer plate/mjd/fiber only).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from ..download import RateLimiter, RetryPolicy, clear_partial_downloads, fetch_with_retries
from ..io import InputError, atomic_output, read_sdss_spectrum, spectrum_path
from ..settings import Settings

MANIFEST_COLUMNS = ["specObjID", "path", "size", "sha256", "url"]
FAILURE_COLUMNS = ["specObjID", "url", "reason", "attempts"]


class TooManyFailures(RuntimeError):
    """More downloads failed than the configured fraction allows."""


@dataclass(frozen=True, kw_only=True)
class DownloadSettings(Settings):
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

    SECTION: ClassVar[str] = "sdss.download"

    base_url: str
    run2d: str
    concurrency: int
    requests_per_second: float
    retries: int
    backoff: float
    max_backoff: float
    timeout: float
    deadline: float
    max_failure_fraction: float

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
