"""Shared fixtures (real SDSS spectra shipped with ppxf, the template wheel, a small mock survey) and the test tiers.

Tiers: ``pytest --quick`` runs only what needs neither a Snakemake run (marker ``workflow``), nor the
template wheel that ``pip download`` fetches (marker ``download``, given to every test that uses the
``mangadap_wheel`` fixture, directly or through another), nor minutes (marker ``slow``).  A test not
marked ``workflow`` that starts Snakemake fails, so the markers cannot go stale.  Plain ``pytest``
runs every tier.
"""

from __future__ import annotations

import importlib.resources
import subprocess
from pathlib import Path

import pytest
from img2spec.templates import pinned_wheel

from tests.tiny_dag import REPO, TEMPLATE_CACHE, TinyRun, run_tiny_dag

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


#: Markers of the tiers that ``--quick`` leaves out.
OUTSIDE_QUICK_TIER = ("slow", "workflow", "download")


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="the quick tier: no Snakemake run, no download, nothing slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "mangadap_wheel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.download)
    if config.getoption("--quick"):
        left_out = [item for item in items if any(item.get_closest_marker(m) for m in OUTSIDE_QUICK_TIER)]
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


def _starts_snakemake(args) -> bool:
    words = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    return any(
        (w == "snakemake" and (i == 0 or words[i - 1] == "-m")) or w.endswith("/snakemake") for i, w in enumerate(words)
    )


@pytest.fixture(autouse=True)
def _workflow_tier_guard(request, monkeypatch):
    """Refuse a Snakemake run from a test that is not marked ``workflow``."""
    if request.node.get_closest_marker("workflow"):
        return

    class Guarded(subprocess.Popen):
        def __init__(self, args, *rest, **options):
            if _starts_snakemake(args):
                raise RuntimeError(f"{request.node.nodeid} starts Snakemake; mark it @pytest.mark.workflow")
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", Guarded)


MANGADAP = pinned_wheel()


@pytest.fixture(scope="session")
def mangadap_wheel() -> Path:
    """The pinned sdss-mangadap wheel, fetched once with pip into the repository's download cache."""
    from img2spec.templates import fetch_wheel

    return fetch_wheel(*MANGADAP, TEMPLATE_CACHE)


@pytest.fixture(scope="session")
def tiny_run(mangadap_wheel, tmp_path_factory) -> TinyRun:
    """The tiny mock DAG run once on 2 cores (:data:`tests.tiny_dag.TINY`), shared by the tests that check it."""
    return run_tiny_dag(tmp_path_factory.mktemp("tiny_dag"))


@pytest.fixture(scope="session")
def miuscat(mangadap_wheel):
    from img2spec.templates import library_from_wheel

    return library_from_wheel(mangadap_wheel, "miuscat")


@pytest.fixture(scope="session")
def mock_survey(miuscat):
    from img2spec.mock.survey import MockSettings, MockSurvey

    return MockSurvey.from_library(miuscat, MockSettings.defaults(n_galaxies=48, seed=3, batch_size=48))


@pytest.fixture(scope="session")
def mock_dir(mock_survey, tmp_path_factory) -> Path:
    """A small mock survey on disk (48 galaxies), shared read-only by the tests."""
    from img2spec.io import SurveyFiles
    from img2spec.mock.products import generate

    out = tmp_path_factory.mktemp("mock")
    generate(mock_survey, SurveyFiles.in_folder(out))
    return out


@pytest.fixture(scope="session")
def tiny_dataset(mock_dir, tmp_path_factory) -> Path:
    """dataset.h5 of the small mock survey: 40 train, 4 val, 4 test."""
    from img2spec.catalog import preprocess_catalog_spectra, read_catalog
    from img2spec.cubes import open_cube_file
    from img2spec.dataset import DatasetSettings, build_dataset
    from img2spec.preprocessing import PreprocessingSettings

    out = tmp_path_factory.mktemp("dataset")
    catalog = read_catalog(mock_dir / "catalog.csv")
    rejects = preprocess_catalog_spectra(
        catalog, mock_dir / "spectra", PreprocessingSettings.defaults(), out / "spectra.h5", log=lambda _: None
    )
    with open_cube_file(mock_dir / "cubes.npz") as cubes:
        build_dataset(
            catalog,
            out / "spectra.h5",
            cubes,
            DatasetSettings.defaults(n_val=4, n_test=4),
            out / "dataset.h5",
            prior_rejects=rejects,
            log=lambda _: None,
        )
    return out / "dataset.h5"


@pytest.fixture(scope="session")
def trained_checkpoints(tiny_dataset, tmp_path_factory) -> dict:
    """The four networks trained for two steps on the small mock dataset (enough to exercise inference)."""
    from img2spec.train import CheckpointFiles, train_network

    from tests.smoke_networks import two_step_networks

    run = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "auto", "num_workers": 0, "seed": 0}
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, hp in two_step_networks().items():
        train_network(str(tiny_dataset), name, hp, run, CheckpointFiles.in_folder(root / name), progress=False)
        paths[name] = root / name / "last.ckpt"
    return paths
