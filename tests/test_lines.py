"""Emission lines, the BPT classification and its scores (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest
from img2spec import metrics
from img2spec.spectral import BPT_CLASSES
from img2spec.toolbox.lines import LINES, _profiles, bpt_class, lines_measured, measure_lines

WAVE = np.arange(4700.0, 6800.0, 0.9)


def hand_made(log_nii_ha: float, log_oiii_hb: float, halpha: float, snr: float = 100.0, seed: int = 0):
    """Continuum of 1 with the four lines at the given ratios (Balmer decrement 2.86) and Gaussian noise."""
    fluxes = {"Halpha": halpha, "Hbeta": halpha / 2.86, "NII_6584": halpha * 10**log_nii_ha}
    fluxes["OIII_5007"] = fluxes["Hbeta"] * 10**log_oiii_hb
    continuum = np.ones_like(WAVE)
    flux = continuum + np.array([fluxes[name] for name in LINES]) @ _profiles(WAVE, 20.0, 70.0, 1500.0)
    flux += np.random.default_rng(seed).normal(0, 1 / snr, WAVE.size)
    return flux, np.full(WAVE.size, snr**2), continuum, fluxes


def test_line_fluxes_and_ew_are_recovered():
    flux, ivar, continuum, truth = hand_made(-0.4, 0.1, 12.0)
    found = measure_lines(WAVE, flux, ivar, continuum)
    for name in LINES:
        assert found[f"flux_{name}"] == pytest.approx(truth[name], abs=4 * found[f"flux_err_{name}"]), name
        assert found[f"flux_err_{name}"] < 0.1 * truth[name]
    assert found["gas_velocity"] == pytest.approx(20.0, abs=10.0)
    # EW of Hα on a continuum of 1 is its flux (the ±8 Å window holds >99% of the line)
    assert found["ew_Halpha"] == pytest.approx(truth["Halpha"], rel=0.03)


def test_an_halpha_on_a_masked_sky_line_keeps_its_flux_and_ew():
    """Issue 25: at z ≈ 0.055 Hα falls on the 6923 Å sky line, whose pixels are masked and which
    to_rest_frame interpolates across, erasing the line's core.  Its flux (from the wings, with the
    velocity of the other lines) and EW stay those of the line, not of the interpolated hole."""
    flux, ivar, continuum, truth = hand_made(-0.4, 0.1, 12.0)
    core = np.abs(WAVE - LINES["Halpha"]) < 3.0
    ivar = np.where(core, 0.0, ivar)
    flux = np.where(core, np.interp(WAVE, WAVE[~core], flux[~core]), flux)
    found = measure_lines(WAVE, flux, ivar, continuum)
    assert found["flux_Halpha"] == pytest.approx(truth["Halpha"], abs=4 * found["flux_err_Halpha"])
    assert found["flux_err_Halpha"] < 0.1 * truth["Halpha"]
    assert found["ew_Halpha"] == pytest.approx(truth["Halpha"], rel=0.05)


@pytest.mark.parametrize(
    "log_nii_ha, log_oiii_hb, halpha, expected",
    [
        (-0.5, -0.3, 12.0, "star-forming"),
        (-0.6, 0.3, 12.0, "star-forming"),
        (0.1, 0.7, 12.0, "AGN"),
        (-0.2, 0.5, 12.0, "AGN"),
        (-0.5, -0.3, 0.5, "passive"),
    ],
)
def test_hand_made_spectra_land_in_their_class(log_nii_ha, log_oiii_hb, halpha, expected):
    flux, ivar, continuum, _ = hand_made(log_nii_ha, log_oiii_hb, halpha)
    found = measure_lines(WAVE, flux, ivar, continuum)
    fluxes = {name: np.array([found[f"flux_{name}"]]) for name in LINES}
    errors = {name: np.array([found[f"flux_err_{name}"]]) for name in LINES}
    measured = lines_measured(fluxes, errors)
    assert bpt_class(fluxes, np.array([found["ew_Halpha"]]), measured)[0] == expected


def test_a_line_lost_in_the_noise_makes_a_galaxy_passive():
    _flux, _ivar, _continuum, _ = hand_made(-0.5, -0.3, 12.0, snr=100.0)
    fluxes = {
        "Hbeta": np.array([4.0]),
        "OIII_5007": np.array([0.1]),
        "Halpha": np.array([12.0]),
        "NII_6584": np.array([3.0]),
    }
    errors = {name: np.array([0.2]) for name in LINES}  # [O III] at S/N 0.5
    assert bpt_class(fluxes, np.array([12.0]), lines_measured(fluxes, errors, rule="snr"))[0] == "passive"
    # the paper's rule has no S/N threshold: a weak but positive line keeps the galaxy on the diagram
    assert bpt_class(fluxes, np.array([12.0]), lines_measured(fluxes, errors, rule="positive"))[0] == "star-forming"
    fluxes["OIII_5007"] = np.array([-0.1])  # nothing left after the continuum
    assert bpt_class(fluxes, np.array([12.0]), lines_measured(fluxes, errors, rule="positive"))[0] == "passive"


def test_confusion_matrix_of_identical_classes_is_diagonal():
    rng = np.random.default_rng(2)
    labels = rng.choice(BPT_CLASSES, 300)
    matrix = metrics.confusion_matrix(labels, labels, BPT_CLASSES)
    assert np.array_equal(matrix, np.diag(np.diag(matrix))) and matrix.sum() == 300
    scores = metrics.classification_scores(labels, labels)
    assert scores["accuracy"] == scores["AGN_precision"] == scores["AGN_recall"] == 1.0
    swapped = np.where(labels == "AGN", "star-forming", labels)
    assert metrics.classification_scores(labels, swapped)["AGN_recall"] == 0.0


def test_monte_carlo_spread_shrinks_with_the_assumed_errors():
    rng = np.random.default_rng(3)
    n = 400
    x = rng.uniform(-1.0, 0.3, n)
    y = rng.uniform(-0.8, 1.0, n)
    fluxes = {"Halpha": np.full(n, 10.0), "NII_6584": 10 * 10**x, "Hbeta": np.full(n, 3.5), "OIII_5007": 3.5 * 10**y}
    inputs = {"fluxes": fluxes, "ew": np.full(n, 10.0)}
    measured = np.ones(n, bool)

    def classify(f, ew):
        return bpt_class(f, ew, measured)

    spreads = []
    for scale in (1.0, 0.1):
        errors = {"Hbeta": 0.15 * scale, "OIII_5007": 0.15 * scale, "Halpha": 0.2 * scale, "NII_6584": 0.3 * scale}
        result = metrics.monte_carlo_scores(classify, classify, inputs, inputs, errors, 1.0 * scale, draws=200, seed=0)
        spreads.append(result["AGN_accuracy"]["std"])
        assert result["AGN_accuracy"]["mean"] < 1.0
    assert spreads[1] < 0.5 * spreads[0]
