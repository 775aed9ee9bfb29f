"""Shared fixtures: real SDSS spectra shipped with ppxf, and paths to shared data."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ppxf_spectra_dir() -> Path:
    return Path(str(importlib.resources.files("ppxf") / "spectra"))


@pytest.fixture(scope="session")
def ngc3522_path(ppxf_spectra_dir: Path) -> Path:
    return ppxf_spectra_dir / "NGC3522_SDSS_DR18.fits"


@pytest.fixture(scope="session")
def ngc3073_path(ppxf_spectra_dir: Path) -> Path:
    return ppxf_spectra_dir / "NGC3073_SDSS_DR18.fits"
