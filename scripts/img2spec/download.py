"""HTTP downloads that survive a flaky server: retries with back-off, rate limiting, validation.

Used by the SDSS acquisition (:mod:`img2spec.sdss`) and by optional template downloads
(:mod:`img2spec.templates`); standard library only.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_output

TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a download is retried.

    Attributes
    ----------
    retries : int
        Attempts after the first for transient failures.
    backoff, max_backoff : float
        First back-off and its cap [s]; each retry doubles it, with ±50% jitter.
    timeout : float
        Socket timeout of each read [s]: the longest the server may stay silent.
    deadline : float
        Longest a whole request may take [s], however steadily the server trickles bytes.
    """

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0
    deadline: float = 600.0


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


def _fetch_once(
    url: str, target: Path, validate: Callable[[Path], str | None], timeout: float, deadline: float
) -> None:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            with atomic_output(target) as tmp:
                with open(tmp, "wb") as fh:
                    received = 0
                    while chunk := response.read1(1 << 16):  # read1: what has arrived, so the deadline is checked often
                        fh.write(chunk)
                        received += len(chunk)
                        if time.monotonic() - started > deadline:
                            raise _Transient(f"no complete body within the {deadline:g} s deadline ({received} bytes)")
                if expected is not None and received != int(expected):
                    raise _Transient(f"truncated body ({received} of {expected} bytes)")
                problem = validate(tmp)
                if problem:
                    raise _Transient(f"invalid content: {problem}")
    except urllib.error.HTTPError as err:
        if err.code in TRANSIENT_HTTP:
            retry_after = err.headers.get("Retry-After") if err.headers else None
            raise _Transient(
                f"HTTP {err.code}", float(retry_after) if retry_after and retry_after.isdigit() else None
            ) from err
        raise _Permanent(f"HTTP {err.code}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from err


def clear_partial_downloads(root: str | Path) -> int:
    """Remove the temporary files that a killed run left below ``root`` (:func:`img2spec.io.atomic_output`'s
    ``.<name>.<pid>.<thread>.part``); returns how many.  Safe because Snakemake refuses a second run in the folder."""
    stale = list(Path(root).rglob(".*.part")) if Path(root).exists() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def fetch_with_retries(
    url: str,
    target: Path,
    validate: Callable[[Path], str | None],
    settings: RetryPolicy,
    limiter: RateLimiter,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str | None, int]:
    """Download ``url`` to ``target`` (atomically, validated); returns (failure reason or None, requests made).

    Transient failures are retried with exponential back-off and jitter (``Retry-After`` honoured);
    permanent ones (e.g. HTTP 404) are not; ``settings`` says how often and how patiently.
    """
    delay = settings.backoff
    for attempt in range(1, settings.retries + 2):
        limiter.acquire()
        try:
            _fetch_once(url, target, validate, settings.timeout, settings.deadline)
            return None, attempt
        except _Permanent as err:
            return str(err), attempt
        except _Transient as err:
            if attempt > settings.retries:
                return str(err), attempt
            wait = err.retry_after if err.retry_after is not None else delay * random.uniform(0.5, 1.5)
            sleep(min(wait, settings.max_backoff))
            delay = min(2 * delay, settings.max_backoff)
    raise AssertionError("unreachable")
