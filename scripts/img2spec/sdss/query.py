"""The sample query (the paper's Appendix B): plate-chunked SQL through SkyServer or CasJobs, retried and resumable."""

from __future__ import annotations

import hashlib
import io
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..io import InputError, atomic_output, encode_specobjid
from ..settings import Settings

CATALOG_COLUMNS = ("specObjID", "plate", "mjd", "fiberID", "z")


@dataclass(frozen=True, kw_only=True)
class QuerySettings(Settings):
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

    SECTION: ClassVar[str] = "sdss.query"

    z_min: float
    z_max: float
    petro_rad_max: float
    petro_mag_max: float
    plate_min: int
    plate_max: int
    plates_per_chunk: int
    data_release: int
    retries: int
    backoff: float
    max_backoff: float
    min_interval: float
    backend: str
    casjobs_url: str
    casjobs_context: str
    token_env: str


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
