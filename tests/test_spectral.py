"""The spectral constants' single owner (issue 15): line tables, BPT rule shared by truth and measurement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from img2spec.spectral import (
    BPT_LINES,
    EMISSION_LINES_AIR,
    EMISSION_LINES_VACUUM,
    FWHM_PER_SIGMA,
    bpt_class,
    composite_or_agn,
    kauffmann03,
)
from img2spec.toolbox import lines as toolbox_lines


def test_vacuum_wavelengths_are_the_sdss_values():
    # SDSS (idlspec2d) vacuum rest wavelengths [Å]
    for name, vacuum in {"Halpha": 6564.61, "Hbeta": 4862.68, "OIII_5007": 5008.24, "NII_6584": 6585.23}.items():
        assert EMISSION_LINES_VACUUM[name] == pytest.approx(vacuum, abs=0.05)
    assert set(EMISSION_LINES_VACUUM) == set(EMISSION_LINES_AIR)
    assert FWHM_PER_SIGMA == pytest.approx(2.35482, abs=1e-5)


def test_one_bpt_rule_labels_truth_and_measurement_alike(mock_dir):
    """The mock's truth classes are what the toolbox's classifier gives for the truth's own line fluxes."""
    truth = pd.read_parquet(mock_dir / "truth.parquet")
    fluxes = {name: truth[f"flux_{name}"].to_numpy() for name in BPT_LINES}
    measured = np.ones(len(truth), bool)
    assert np.array_equal(
        toolbox_lines.bpt_class(fluxes, truth["ew_Halpha"].to_numpy(), measured), truth["bpt_class"].to_numpy()
    )


def test_bpt_rule_edges():
    x = np.array([-0.5, -0.5, 0.06, -0.5, 0.3])
    y = np.array([kauffmann03(-0.5) - 0.01, kauffmann03(-0.5) + 0.01, -1.0, 0.0, 0.2])
    active = np.array([True, True, True, False, True])
    classes = bpt_class(x, y, active)
    assert classes.tolist() == ["star-forming", "AGN", "AGN", "passive", "AGN"]
    assert composite_or_agn(x, y, classes).tolist() == ["star-forming", "composite", "composite", "passive", "AGN"]
