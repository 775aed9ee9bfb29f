"""The sample query: SQL template, chunking, retries and caching, through astroquery against a local server (issue 4)."""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from img2spec.io import InputError, decode_specobjid, encode_specobjid
from img2spec.sdss import QuerySettings, chunk_query, query_catalog, render_query, skyserver_runner

from .conftest import REPO

TEMPLATE = (REPO / "resources" / "sql" / "sample.sql").read_text()


def _sky_table() -> pd.DataFrame:
    rows = []
    for plate in range(3000, 3006):
        for fiber in (1, 2, 3):
            rows.append(
                {
                    "specObjID": encode_specobjid(plate, fiber, 55000),
                    "objID": 1237660000000000000 + plate * 10 + fiber,
                    "plate": plate,
                    "mjd": 55000,
                    "fiberID": fiber,
                    "run2d": 26,
                    "ra": 150.0,
                    "dec": 2.0,
                    "z": 0.1,
                    "zErr": 1e-5,
                    "velDisp": 150.0,
                    "petroMag_r": 17.0,
                    "elliptical": 1,
                    "spiral": 0,
                    "uncertain": 0,
                }
            )
    return pd.DataFrame(rows)


class FakeSkyServer:
    """Answers SkyServer SqlSearch requests from a table, selecting rows by the query's specObjID range."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self.failures: Counter = Counter()  # (first plate) → how many more times to fail with HTTP 500
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, query: str) -> None:
                sql = urllib.parse.parse_qs(query).get("cmd", [""])[0]
                server.requests.append(sql)
                lo, hi = (int(v) for v in re.search(r"specObjID BETWEEN (\d+) AND (\d+)", sql).groups())
                plate = decode_specobjid(lo)["plate"]
                if server.failures[plate] > 0:
                    server.failures[plate] -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                rows = server.table[(server.table["specObjID"] >= lo) & (server.table["specObjID"] <= hi)]
                body = ("#Table1\n" + rows.to_csv(index=False)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._answer(urllib.parse.urlsplit(self.path).query)

            def do_POST(self):
                self._answer(self.rfile.read(int(self.headers["Content-Length"])).decode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


SETTINGS = QuerySettings.defaults(
    plate_min=3000, plate_max=3005, plates_per_chunk=2, retries=3, backoff=0.0, min_interval=0.0
)


def test_chunks_are_retried_cached_and_joined(tmp_path):
    from astroquery.sdss import conf

    server = FakeSkyServer(_sky_table())
    with server as url, conf.set_temp("skyserver_baseurl", url):
        server.failures[3002] = 2
        catalog = query_catalog(
            TEMPLATE, SETTINGS, tmp_path / "cache", skyserver_runner(17), log=lambda _: None, sleep=lambda _: None
        )
        assert len(server.requests) == 3 + 2
        assert "S.z >= 0.05" in server.requests[0] and "S.z <= 0.15" in server.requests[0]
        assert len(catalog) == 18 and catalog["specObjID"].is_monotonic_increasing
        assert {"specObjID", "plate", "mjd", "fiberID", "z", "velDisp", "elliptical"} <= set(catalog.columns)
        assert catalog["specObjID"].dtype.kind == "i" and sorted(catalog["plate"].unique()) == list(range(3000, 3006))
        assert len(list((tmp_path / "cache").glob("chunk-*.csv"))) == 3
        server.requests.clear()
        again = query_catalog(
            TEMPLATE, SETTINGS, tmp_path / "cache", skyserver_runner(17), log=lambda _: None, sleep=lambda _: None
        )
        assert server.requests == [] and again.equals(catalog)


def test_a_chunk_that_keeps_failing_is_reported_and_the_others_stay_cached(tmp_path):
    from astroquery.sdss import conf

    server = FakeSkyServer(_sky_table())
    with server as url, conf.set_temp("skyserver_baseurl", url):
        server.failures[3004] = 10
        with pytest.raises(InputError, match="plates 3004-3005: query failed after 4 attempts"):
            query_catalog(
                TEMPLATE, SETTINGS, tmp_path / "cache", skyserver_runner(17), log=lambda _: None, sleep=lambda _: None
            )
    assert sorted(p.name for p in (tmp_path / "cache").glob("chunk-*.csv")) == [
        "chunk-03000-03001.csv",
        "chunk-03002-03003.csv",
    ]


@pytest.mark.parametrize("bad", ["0.1; DROP TABLE SpecObj", None, float("nan"), True])
def test_only_numbers_reach_the_sql(bad):
    with pytest.raises(InputError, match="not a finite number"):
        render_query(
            TEMPLATE, z_min=bad, z_max=0.15, specobjid_min=1, specobjid_max=2, petro_rad_max=20, petro_mag_max=17.8
        )


class FakeCasJobs:
    """Loopback server speaking the CasJobs REST job protocol: submit, poll (ready/started/finished|failed), fetch."""

    TOKEN = "s3cret-token-value"

    def __init__(self, table: pd.DataFrame, fail_with: str | None = None) -> None:
        import json

        self.table, self.fail_with = table, fail_with
        self.jobs: dict[str, dict] = {}
        self.calls: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body: bytes, content_type="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self):
                if self.headers.get("X-Auth-Token") != FakeCasJobs.TOKEN:
                    self._send(401, b'{"Message": "bad token"}')
                    return False
                return True

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

            def do_PUT(self):
                server.calls.append(f"PUT {self.path}")
                if not self._authorised():
                    return
                query = self._body()["Query"]
                job = str(1000 + len(server.jobs))
                server.jobs[job] = {"query": query, "polls": 0}
                self._send(200, job.encode(), "text/plain")

            def do_GET(self):
                server.calls.append(f"GET {self.path}")
                if not self._authorised():
                    return
                job = server.jobs[self.path.rsplit("/", 1)[-1]]
                job["polls"] += 1
                status = {1: 0, 2: 1}.get(job["polls"], 4 if server.fail_with else 5)
                message = server.fail_with if status == 4 else "Query complete"
                self._send(200, json.dumps({"Status": status, "Message": message}).encode())

            def do_POST(self):
                server.calls.append(f"POST {self.path}")
                if not self._authorised():
                    return
                self._body()
                self._send(200, ("#Table1\n" + server.table.to_csv(index=False)).encode(), "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_port}/CasJobs/RestApi"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_casjobs_submits_polls_and_fetches_without_leaking_the_token(tmp_path):
    from img2spec.sdss import casjobs_runner

    table = _sky_table()
    server = FakeCasJobs(table)
    messages = []
    with server as url:
        run = casjobs_runner(url, FakeCasJobs.TOKEN, "DR17", poll=0.0, sleep=lambda _: None, log=messages.append)
        settings = QuerySettings.defaults(plate_min=3000, plate_max=3001, plates_per_chunk=2, min_interval=0.0)
        catalog = query_catalog(TEMPLATE, settings, tmp_path / "cache", run, log=messages.append, sleep=lambda _: None)
    assert server.calls[0] == "PUT /CasJobs/RestApi/contexts/DR17/jobs"
    assert [c for c in server.calls if c.startswith("GET")] == [
        "GET /CasJobs/RestApi/jobs/1000"
    ] * 3  # ready, started, finished
    assert server.calls[-1] == "POST /CasJobs/RestApi/contexts/MyDB/query"
    assert server.jobs["1000"]["query"].startswith("SELECT * INTO MyDB.img2spec_")
    assert len(catalog) == len(table) and catalog["specObjID"].dtype.kind == "i"
    written = "".join(messages) + "".join(p.read_text() for p in (tmp_path / "cache").glob("*"))
    assert FakeCasJobs.TOKEN not in written


def test_casjobs_sql_errors_reach_the_user(tmp_path):
    from img2spec.sdss import casjobs_runner

    error = "Invalid column name 'petroRad_x'."
    with FakeCasJobs(_sky_table(), fail_with=error) as url:
        run = casjobs_runner(url, FakeCasJobs.TOKEN, poll=0.0, sleep=lambda _: None, log=lambda _: None)
        with pytest.raises(InputError, match="CasJobs job 1000 failed: Invalid column name 'petroRad_x'"):
            run("SELECT 1")
        with pytest.raises(Exception, match="401"):
            casjobs_runner(url, "wrong", sleep=lambda _: None, log=lambda _: None)("SELECT 1")
    with pytest.raises(InputError, match="needs a SciServer token"):
        casjobs_runner("http://127.0.0.1:9", "")


#: Every cut of the paper's Appendix B, as printed there (column prefixes and spaces aside).
APPENDIX_B_CUTS = (
    "S.class = 'GALAXY'",
    "P.mode = 1",
    "S.instrument = 'SDSS'",
    "(flags_r & 0x20) = 0",
    "(flags_r & 0x80000) = 0",
    "((flags_r & 0x400000000000) = 0 OR P.psfmagerr_r <= 0.2)",
    "(flags_r & 0x800000000000) = 0",
    "(flags_r & 0x100000000000) = 0",
    "((flags_r & 0x100000000000) = 0 OR (flags_r & 0x1000) = 0)",
    "(flags_r & 0x10000000) != 0",
    "(flags_r & 0x40000) = 0",
    "(flags_r & 0x80) = 0",
    *(
        f"P.{quantity}_{band}>0"
        for quantity in ("petroRad", "petroR90", "fiberMag", "modelMag", "cmodelMag")
        for band in "ugriz"
    ),
    *(f"P.{quantity}_{band}<20" for quantity in ("petroRad", "petroR90") for band in "ugriz"),
    "S.z >= 0.05",
    "S.z <= 0.15",
)
APPENDIX_B_TABLES = (
    "SpecObj",
    "PhotoObjAll",
    "zooSpec",
    "stellarMassFSPSGranWideDust",
    "stellarMassFSPSGranWideNoDust",
    "stellarMassPassivePort",
)


def _normalised(sql: str) -> str:
    """Comments dropped, table prefixes dropped, no spaces, lower case."""
    text = " ".join(line.split("--")[0] for line in sql.splitlines())
    return re.sub(r"\b[A-Z]{1,3}\.", "", text).replace(" ", "").lower()


def test_the_query_is_appendix_b_column_for_column_with_every_cut():
    from img2spec.io import FRAME_COLUMNS, SAMPLE_COLUMNS

    sql = chunk_query(TEMPLATE, QuerySettings.defaults(), (3000, 3001))
    flat = " ".join(line.split("--")[0] for line in sql.splitlines())
    select = re.search(r"SELECT(.*?)FROM", flat, re.DOTALL).group(1)
    names = [re.split(r"\s+AS\s+|\.", item.strip())[-1] for item in select.split(",")]
    assert names == [*SAMPLE_COLUMNS, *FRAME_COLUMNS]
    for cut in APPENDIX_B_CUTS:
        assert _normalised(cut) in _normalised(sql), cut
    joined = re.findall(r"(?:FROM|JOIN)\s+(\w+)", flat)
    assert sorted(joined) == sorted(APPENDIX_B_TABLES)
    assert "{" not in sql
