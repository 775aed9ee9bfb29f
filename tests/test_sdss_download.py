"""SAS spectra download against a real HTTP server on 127.0.0.1 with injected faults (issue 4)."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from img2spec.io import read_sdss_spectrum, spectrum_path
from img2spec.sdss import DownloadSettings, TooManyFailures, download_spectra, spectrum_url

RUN2D = "26"


class FakeSAS:
    """Serves files of a folder as a SAS tree; ``faults`` maps a path to a list of faults to play in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults: dict[str, list[str]] = {}
        self.requests: Counter = Counter()
        sas = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("/sas/", 1)[-1]
                sas.requests[path] += 1
                fault = sas.faults.get(path, []).pop(0) if sas.faults.get(path) else None
                file = sas.root / path
                if fault in ("500", "503", "429", "404"):
                    self.send_response(int(fault))
                    if fault in ("503", "429"):
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if not file.is_file():
                    self.send_response(404)
                    self.end_headers()
                    return
                body = file.read_bytes()
                if fault == "slow":
                    time.sleep(1.5)
                if fault == "html":
                    body = b"<html><body>Service temporarily unavailable</body></html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "drip":  # a byte stream that never stalls long enough for a socket timeout
                    with contextlib.suppress(OSError):
                        for start in range(0, len(body), 256):
                            self.wfile.write(body[start : start + 256])
                            self.wfile.flush()
                            time.sleep(0.05)
                    return
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/sas/dr17/sdss/spectro/redux"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def sas_tree(mock_dir, ngc3522_path, ngc3073_path, tmp_path):
    """A SAS-like tree of real fixture files (two DR18 spectra) and mock spec-lite files, and its catalog."""
    root = tmp_path / "sas" / "dr17" / "sdss" / "spectro" / "redux" / RUN2D / "spectra" / "lite"
    rows = []
    for path in (ngc3522_path, ngc3073_path):
        meta = read_sdss_spectrum(path).meta
        target = spectrum_path(root, meta["plate"], meta["mjd"], meta["fiberid"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        rows.append(
            {"specObjID": meta["specobjid"], "plate": meta["plate"], "mjd": meta["mjd"], "fiberID": meta["fiberid"]}
        )
    catalog = pd.read_csv(mock_dir / "catalog.csv").head(10)
    for row in catalog.itertuples():
        source = spectrum_path(mock_dir / "spectra", row.plate, row.mjd, row.fiberID)
        target = spectrum_path(root, row.plate, row.mjd, row.fiberID)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        rows.append({"specObjID": row.specObjID, "plate": row.plate, "mjd": row.mjd, "fiberID": row.fiberID})
    return tmp_path / "sas", pd.DataFrame(rows)


def _key(base_url, row):
    return spectrum_url(base_url, RUN2D, row.plate, row.mjd, row.fiberID).split("/sas/", 1)[-1]


def _download(catalog: pd.DataFrame, dest: Path, settings: DownloadSettings, tmp_path: Path) -> dict:
    """download_spectra into ``dest`` with the manifest and failures at tmp_path/m.csv, f.csv, silently, no sleeping."""
    return download_spectra(
        catalog, dest, settings, tmp_path / "m.csv", tmp_path / "f.csv", log=lambda _: None, sleep=lambda _: None
    )


def test_faults_are_retried_and_every_file_ends_complete_and_valid(sas_tree, tmp_path):
    root, catalog = sas_tree
    with FakeSAS(root) as sas:
        settings = DownloadSettings.defaults(
            base_url=sas.base_url, concurrency=3, requests_per_second=200, retries=4, backoff=0.01, timeout=0.5
        )
        rows = list(catalog.itertuples())
        plan = {0: ["500", "503"], 1: ["truncate"], 2: ["html", "429"], 3: ["slow"], 4: ["truncate", "500"]}
        for i, faults in plan.items():
            sas.faults[_key(sas.base_url, rows[i])] = list(faults)
        dest = tmp_path / "spectra"
        counts = download_spectra(
            catalog,
            dest,
            settings,
            tmp_path / "manifest.csv",
            tmp_path / "failures.csv",
            log=lambda _: None,
            sleep=lambda _: None,
        )
    assert counts["fetched"] == len(catalog) and counts["failed"] == 0
    assert counts["requests"] == len(catalog) + sum(len(f) for f in plan.values())
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert sorted(manifest["specObjID"]) == sorted(catalog["specObjID"])
    for row in manifest.itertuples():
        path = dest / row.path
        assert read_sdss_spectrum(path).meta["specobjid"] == row.specObjID
        assert path.stat().st_size == row.size
    assert not list(dest.rglob("*.part")), "temporary files left behind"


def test_a_slow_drip_hits_the_request_deadline_and_is_retried(sas_tree, tmp_path):
    root, catalog = sas_tree
    with FakeSAS(root) as sas:
        settings = DownloadSettings.defaults(
            base_url=sas.base_url, requests_per_second=200, retries=2, backoff=0.01, timeout=0.5, deadline=1.0
        )
        row = next(catalog.itertuples())
        sas.faults[_key(sas.base_url, row)] = ["drip"]
        started = time.monotonic()
        counts = _download(catalog.head(1), tmp_path / "spectra", settings, tmp_path)
        assert time.monotonic() - started < 5.0  # the whole drip would take longer than 10 s
    assert counts == {"fetched": 1, "already_present": 0, "failed": 0, "requests": 2}


def test_malformed_rows_and_stale_partial_files(sas_tree, tmp_path):
    """A row whose plate is not a number is listed as a failure and the others go on; a kill's leftovers are removed."""
    root, catalog = sas_tree
    dest = tmp_path / "spectra"
    stale = dest / "0266" / ".spec-0266-51602-0001.fits.4242.1.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    bad = catalog.head(3).astype({"plate": object})
    bad.loc[bad.index[1], "plate"] = "12a"
    with FakeSAS(root) as sas:
        settings = DownloadSettings.defaults(
            base_url=sas.base_url, requests_per_second=200, backoff=0.01, max_failure_fraction=0.5
        )
        counts = _download(bad, dest, settings, tmp_path)
    assert counts["fetched"] == 2 and counts["failed"] == 1
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures["specObjID"].astype(str).tolist() == [str(bad.iloc[1].specObjID)]
    assert "malformed catalog row" in failures["reason"][0] and "plate='12a'" in failures["reason"][0]
    assert len(pd.read_csv(tmp_path / "m.csv")) == 2
    assert not stale.exists()


def test_permanent_failures_are_recorded_and_too_many_fail_the_run(sas_tree, tmp_path):
    root, catalog = sas_tree
    ghost = catalog.iloc[[0]].assign(specObjID=1, plate=9999)
    with FakeSAS(root) as sas:
        settings = DownloadSettings.defaults(
            base_url=sas.base_url, requests_per_second=200, backoff=0.01, max_failure_fraction=0.0
        )
        with pytest.raises(TooManyFailures, match="1 of 13 spectra could not be fetched"):
            _download(pd.concat([catalog, ghost]), tmp_path / "spectra", settings, tmp_path)
        assert sas.requests[_key(sas.base_url, ghost.iloc[0])] == 1  # a 404 is not retried
    failures = pd.read_csv(tmp_path / "f.csv")
    assert failures["specObjID"].tolist() == [1] and failures["reason"][0] == "HTTP 404"
    assert len(pd.read_csv(tmp_path / "m.csv")) == len(catalog)


def test_a_second_run_fetches_only_what_is_missing(sas_tree, tmp_path):
    root, catalog = sas_tree
    dest = tmp_path / "spectra"
    with FakeSAS(root) as sas:
        settings = DownloadSettings.defaults(base_url=sas.base_url, requests_per_second=200, retries=1, backoff=0.01)
        # an interrupted first run: the first half only, and one file whose transfer broke off
        first = catalog.iloc[:6]
        sas.faults[_key(sas.base_url, first.iloc[5])] = ["truncate", "truncate"]
        tolerant = DownloadSettings.defaults(
            base_url=sas.base_url, requests_per_second=200, retries=1, backoff=0.01, max_failure_fraction=1.0
        )
        _download(first, dest, tolerant, tmp_path)
        broken = spectrum_path(dest, first.iloc[5].plate, first.iloc[5].mjd, first.iloc[5].fiberID)
        assert not broken.exists(), "a half-written file was left under its final name"
        sas.requests.clear()
        counts = _download(catalog, dest, settings, tmp_path)
    assert counts["already_present"] == 5 and counts["fetched"] == len(catalog) - 5
    assert sum(sas.requests.values()) == len(catalog) - 5


@pytest.mark.workflow
def test_sdss_survey_downloads_and_builds_the_dataset_through_snakemake(sas_tree, mock_dir, tmp_path):
    import subprocess
    import sys

    import h5py
    import numpy as np
    import yaml
    from img2spec.cubes import open_cube_file, write_cube_file

    from .conftest import REPO

    root, catalog = sas_tree
    work = tmp_path / "work"
    shutil.copytree(REPO / "config", work / "config")
    (work / "resources" / "sdss").mkdir(parents=True)
    mock_catalog = pd.read_csv(mock_dir / "catalog.csv", dtype={"run2d": str}).set_index("specObjID")
    full = catalog.merge(
        mock_catalog.drop(columns=["plate", "mjd", "fiberID"]), left_on="specObjID", right_index=True, how="left"
    )
    full["z"] = full["z"].fillna(0.004)
    # the two real spectra have no run2d in this catalog: their downloads use sdss.download.run2d
    full.to_csv(work / "resources" / "sdss" / "catalog.csv", index=False)
    with open_cube_file(mock_dir / "cubes.npz") as cubes:
        rows = np.flatnonzero(np.isin(cubes.specobjid, catalog["specObjID"]))
        write_cube_file(
            work / "resources" / "sdss" / "cubes.npz",
            np.moveaxis(cubes.read(rows), 1, -1),
            np.rec.fromarrays([cubes.specobjid[rows]], names="specObjID"),
        )
    with FakeSAS(root) as sas:
        sas.faults[_key(sas.base_url, catalog.iloc[3])] = ["503", "truncate"]
        config = {
            "survey": "sdss",
            "dataset": {"n_val": 2, "n_test": 2, "max_reject_fraction": 0.5},
            "sdss": {"download": {"base_url": sas.base_url, "requests_per_second": 50, "backoff": 0.01}},
        }
        (work / "sdss.yaml").write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                str(REPO / "workflow" / "Snakefile"),
                "--cores",
                "1",
                "results/dataset/dataset.h5",
                "--configfile",
                "sdss.yaml",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_csv(work / "resources" / "sdss" / "spectra_manifest.csv")) == len(catalog)
    rejects = pd.read_csv(work / "results" / "dataset" / "rejects.csv")
    # the two real spectra (NGC 3522, NGC 3073) lie at z ≈ 0.004, outside the sample (and have no cube)
    assert (
        rejects["reason"].str.contains("spectrum redshift Z = 0.00[0-9]+ outside 0.05–0.15").all() and len(rejects) == 2
    )
    with h5py.File(work / "results" / "dataset" / "dataset.h5") as h5:
        assert h5["specobjid"].shape == (len(catalog) - 2,)
