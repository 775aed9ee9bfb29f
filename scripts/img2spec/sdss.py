"""Real SDSS data: spectra downloaded from the Science Archive Server (SAS).

Downloads are concurrent and polite (a shared request-rate limit), retried with exponential
back-off and jitter on transient failures (timeouts, connection errors, HTTP 429/5xx, truncated
or invalid bodies; ``Retry-After`` is honoured), resumable (a complete valid file is never fetched
again), atomic (written to a temporary name, validated, then renamed) and confined to the
destination folder (paths are built from the catalog's integer plate/mjd/fiber only).
"""

from __future__ import annotations

import hashlib
import http.client
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .io import InputError, atomic_output, read_sdss_spectrum, spectrum_path

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
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
    retries : int
        Attempts after the first for transient failures.
    backoff, max_backoff : float
        First back-off and its cap [s]; each retry doubles it, with ±50% jitter.
    timeout : float
        Socket timeout per request [s].
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
    max_failure_fraction: float = 0.05


def spectrum_url(base_url: str, run2d: str, plate: int, mjd: int, fiberid: int) -> str:
    """SAS URL of a spec-lite file."""
    plate, mjd, fiberid = int(plate), int(mjd), int(fiberid)
    return f"{base_url.rstrip('/')}/{run2d}/spectra/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits"


class RateLimiter:
    """At most ``rate`` acquisitions per second across threads (evenly spaced)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_time = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            wait = self.next_time - now
            self.next_time = max(now, self.next_time) + self.interval
        if wait > 0:
            time.sleep(wait)


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


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


def _fetch_once(url: str, target: Path, specobjid: int, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            with atomic_output(target) as tmp:
                with open(tmp, "wb") as fh:
                    received = 0
                    while chunk := response.read(1 << 16):
                        fh.write(chunk)
                        received += len(chunk)
                if expected is not None and received != int(expected):
                    raise _Transient(f"truncated body ({received} of {expected} bytes)")
                problem = _valid(tmp, specobjid)
                if problem:
                    raise _Transient(f"invalid content: {problem}")
    except urllib.error.HTTPError as err:
        if err.code in TRANSIENT_HTTP:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            raise _Transient(f"HTTP {err.code}", float(retry_after) if retry_after and retry_after.isdigit() else None) from err
        raise _Permanent(f"HTTP {err.code}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from err


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
    limiter = RateLimiter(settings.requests_per_second)
    lock = threading.Lock()
    counts = {"fetched": 0, "already_present": 0, "failed": 0, "requests": 0}
    manifest, failures = [], []

    def job(row) -> None:
        sid = int(row.specObjID)
        run2d = str(getattr(row, "run2d", settings.run2d))
        url = spectrum_url(settings.base_url, run2d, row.plate, row.mjd, row.fiberID)
        target = spectrum_path(dest_root, row.plate, row.mjd, row.fiberID).resolve()
        if dest_root not in target.parents:
            raise InputError(f"specObjID {sid}: path {target} escapes {dest_root}")
        if target.exists() and _valid(target, sid) is None:
            with lock:
                counts["already_present"] += 1
                manifest.append([sid, str(target.relative_to(dest_root)), target.stat().st_size, _sha256(target), url])
            return
        delay = settings.backoff
        for attempt in range(1, settings.retries + 2):
            limiter.acquire()
            with lock:
                counts["requests"] += 1
            try:
                _fetch_once(url, target, sid, settings.timeout)
            except _Permanent as err:
                reason = str(err)
            except _Transient as err:
                reason = str(err)
                if attempt <= settings.retries:
                    wait = err.retry_after if err.retry_after is not None else delay * random.uniform(0.5, 1.5)
                    sleep(min(wait, settings.max_backoff))
                    delay = min(2 * delay, settings.max_backoff)
                    continue
            else:
                with lock:
                    counts["fetched"] += 1
                    manifest.append([sid, str(target.relative_to(dest_root)), target.stat().st_size, _sha256(target), url])
                return
            with lock:
                counts["failed"] += 1
                failures.append([sid, url, reason, attempt])
            log(f"specObjID {sid}: giving up after {attempt} attempt(s): {reason}")
            return

    rows = list(catalog.itertuples(index=False))
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        for done, _ in enumerate(pool.map(job, rows), start=1):
            if done % 500 == 0 or done == len(rows):
                log(f"spectra {done}/{len(rows)}: {counts}")
    with atomic_output(manifest_path) as tmp:
        pd.DataFrame(sorted(manifest), columns=MANIFEST_COLUMNS).to_csv(tmp, index=False)
    with atomic_output(failures_path) as tmp:
        pd.DataFrame(sorted(failures), columns=FAILURE_COLUMNS).to_csv(tmp, index=False)
    if counts["failed"] > settings.max_failure_fraction * max(len(rows), 1):
        reasons = pd.Series([f[2] for f in failures]).value_counts().head(5).to_dict()
        raise TooManyFailures(f"{counts['failed']} of {len(rows)} spectra could not be fetched; reasons: {reasons}")
    return counts
