"""Helpers shared by the rules: where each survey's products live, and the default targets."""

from pathlib import Path


def survey_dir():
    """Folder holding the input survey's catalog, spectra and cubes (mock or sdss)."""
    return f"resources/{config['survey']}"


def survey_file(name):
    return f"{survey_dir()}/{name}"


def default_targets():
    targets = [
        "results/dataset/dataset.h5",
        "results/dataset/summary.json",
        "results/dataset/examples.png",
    ]
    if config["survey"] == "mock":
        targets.append("results/mock/summary.json")
    return targets
