"""Optional E-MILES-style template download (pPXF sps_util format) over HTTP with injected faults."""

from __future__ import annotations

import numpy as np
import pytest
from img2spec.io import InputError
from img2spec.templates import fetch_sps_library, library_from_sps_npz, library_from_wheel, load_library

from .test_sdss_download import FakeSAS

ARCHIVE = "dr17/sdss/spectro/redux/spectra_emiles_9.0.npz"


@pytest.fixture()
def sps_server(mangadap_wheel, tmp_path):
    """Real MIUSCAT spectra written as a pPXF sps_util archive (the layout of the ppxf data repository's E-MILES)."""
    miuscat = library_from_wheel(mangadap_wheel, "miuscat")
    ages, metals = miuscat.ages, miuscat.metallicities
    cube = np.empty((miuscat.wave_air.size, ages.size, metals.size))
    for a, age in enumerate(ages):
        for m, metal in enumerate(metals):
            cube[:, a, m] = miuscat.flux[(miuscat.age_gyr == age) & (miuscat.metallicity == metal)][0]
    path = tmp_path / "sas" / ARCHIVE
    path.parent.mkdir(parents=True)
    np.savez(
        path,
        templates=cube,
        lam=miuscat.wave_air,
        fwhm=np.full(miuscat.wave_air.size, 2.51),
        ages=ages,
        metals=metals,
        masses=np.ones((ages.size, metals.size)),
    )
    with FakeSAS(tmp_path / "sas") as server:
        yield server, f"{server.base_url}/spectra_emiles_9.0.npz", miuscat


def test_sps_archive_survives_transient_faults(sps_server, tmp_path):
    server, url, miuscat = sps_server
    server.faults[ARCHIVE] = ["503", "truncate", "html"]
    library = fetch_sps_library(url, tmp_path / "emiles.npz", "emiles", retries=4, backoff=0.01)
    assert server.requests[ARCHIVE] == 4
    saved = load_library(tmp_path / "emiles.npz")
    assert saved.fwhm == 2.51 and saved.flux.shape == library.flux.shape
    assert saved.wave_air[0] >= 3500.0 and saved.wave_air[-1] <= 7500.0
    i = np.flatnonzero((miuscat.age_gyr == 10.0) & (miuscat.metallicity == 0.0))[0]
    j = np.flatnonzero((saved.age_gyr == 10.0) & (saved.metallicity == 0.0))[0]
    inside = (miuscat.wave_air >= 3500.0) & (miuscat.wave_air <= 7500.0)
    assert np.allclose(saved.flux[j], miuscat.flux[i][inside])
    assert not (tmp_path / "emiles.download.npz").exists()


def test_sps_archive_failures_name_the_url(sps_server, tmp_path):
    server, url, _ = sps_server
    with pytest.raises(InputError, match="HTTP 404"):
        fetch_sps_library(url.replace("emiles", "nothing"), tmp_path / "x.npz", "emiles", retries=1, backoff=0.01)
    server.faults[ARCHIVE] = ["html"] * 3
    with pytest.raises(InputError, match=r"spectra_emiles_9\.0\.npz: download failed after 3 attempt"):
        fetch_sps_library(url, tmp_path / "y.npz", "emiles", retries=2, backoff=0.01)
    assert not (tmp_path / "y.npz").exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, templates=np.ones((10, 2, 2)), lam=np.arange(11.0), fwhm=2.5, ages=np.ones(2), metals=np.ones(2))
    with pytest.raises(InputError, match="bad.npz: templates"):
        library_from_sps_npz(bad, "x")
