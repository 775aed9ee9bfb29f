"""Evaluation: spectral-agreement metrics and the quality target (issue 7)."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pandas as pd
import pytest
from img2spec import metrics
from img2spec.dag import n_chunks
from img2spec.dataset import SPLITS
from img2spec.evaluation import (
    EvaluationSettings,
    FireflySettings,
    PpxfSettings,
    bpt,
    comparisons,
    fit_chunk,
    gather_fits,
    indices,
    lines,
    quality,
    redshift,
    stellar_populations,
)
from img2spec.fitresults import FIT_COLUMNS
from img2spec.templates import library_from_wheel, load_library

from tests.workflow_rules import rule_outputs


def test_metrics_on_known_differences():
    rng = np.random.default_rng(0)
    observed = np.log(1 + rng.random((3, 500)))
    assert np.allclose(metrics.mean_relative_deviation(observed, observed), 0)
    assert np.allclose(metrics.mean_relative_deviation(observed + np.log(1.1), observed), 0.1)
    assert np.allclose(metrics.mse(observed + 0.2, observed), 0.04)
    mask = np.zeros_like(observed, bool)
    mask[:, :250] = True
    shifted = observed.copy()
    shifted[:, :250] += 5.0  # only masked pixels differ
    assert np.allclose(metrics.mean_relative_deviation(shifted, observed, mask), 0)
    # χ²/N ≈ 1 for the true spectrum against noisy observations with the right ivar
    truth = np.full((1, 200_000), 1.0)
    sigma = 0.05
    noisy = truth + rng.normal(0, sigma, truth.shape)
    chi2 = metrics.chi2_per_pixel(np.log(truth), np.log(noisy), np.full(truth.shape, 1 / sigma**2))
    assert chi2[0] == pytest.approx(1.0, rel=0.01)
    lower, upper = np.log(truth) - 0.1, np.log(truth) + 0.1
    assert metrics.band_coverage(lower, upper, np.log(noisy)) == pytest.approx(np.mean(np.abs(np.log(noisy)) <= 0.1))


def test_plausibility_metrics_find_known_side_lobes_noise_and_biases():
    from img2spec import metrics
    from img2spec.spectral import EMISSION_LINES_VACUUM

    wave = np.arange(4000.0, 8500.0)
    z = np.array([0.1, 0.1, 0.1])
    halpha = EMISSION_LINES_VACUUM["Halpha"] * 1.1
    spike = np.exp(-0.5 * ((wave - halpha) / 2.0) ** 2)
    flux = np.ones((3, wave.size)) + spike
    for offset in (-12.0, 12.0):  # troughs of depth 0.5 at ±12 Å observed (±10.9 Å rest)
        flux[1] -= 0.5 * np.exp(-0.5 * ((wave - halpha - offset) / 2.0) ** 2)
    flux[2] -= 0.2 * np.exp(-0.5 * ((wave - halpha - 12.0) / 2.0) ** 2)
    depth = metrics.side_lobe_depth(wave, np.log(flux), np.zeros_like(flux, bool), z, EMISSION_LINES_VACUUM["Halpha"])
    np.testing.assert_allclose(depth, [1.0, 0.5, 0.8], atol=0.01)

    rng = np.random.default_rng(0)
    sigma = 0.05
    noisy = np.log(1 + 0.3 * np.sin(wave / 400.0))[None, :] + rng.normal(0, sigma, (2, wave.size))
    ivar = np.full(noisy.shape, 1.0) / (sigma * np.exp(noisy)) ** 2
    mask = np.zeros(noisy.shape, bool)
    mask[:, 100:120] = True
    # the running median removes the smooth shape; the residual power is the noise variance (×≈0.95 for width 31)
    assert metrics.fine_structure_power(noisy, mask) == pytest.approx(np.full(2, sigma**2), rel=0.1)
    np.testing.assert_allclose(metrics.noise_power(noisy, ivar, mask), sigma**2, rtol=1e-9)

    ew_observed = np.array([0.2, 0.5, 0.8, 0.9, 10.0, 20.0, 30.0, np.nan])
    ew_predicted = np.array([4.0, 0.1, 2.9, 0.3, 0.5, 25.0, 31.0, 5.0])
    rates = metrics.emission_plausibility(ew_observed, ew_predicted, passive_ew=1.0)
    assert rates == {
        "n_passive_observed": 4,
        "false_emission_rate": 0.25,
        "n_emitting_observed": 3,
        "missed_emission_rate": pytest.approx(1 / 3),
    }
    observed = 10 ** rng.normal(0, 0.5, 400)
    bias = metrics.line_flux_bias(observed * 10**-0.1 * 10 ** rng.normal(0, 0.05, 400), observed)
    assert bias["median_log_ratio"] == pytest.approx(-0.1, abs=0.01) and 0 < bias["bootstrap_std"] < 0.01


def test_quality_target_on_a_known_prediction(tiny_dataset, mock_dir, tmp_path):
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids = h5["specobjid"][()][rows]
        observed = h5["flux"][()][rows]
    with h5py.File(tmp_path / "pred.h5", "w") as pred:
        pred["specobjid"] = ids[::-1]  # any order
        pred["flux"] = (observed + np.log(1.2))[::-1]
    summary = quality(
        tmp_path / "pred.h5",
        tiny_dataset,
        **rule_outputs("evaluation_quality", tmp_path / "quality"),
        truth_parquet=mock_dir / "truth.parquet",
    )
    assert summary["all"]["n"] == ids.size
    assert summary["all"]["median_mean_relative_deviation"] == pytest.approx(0.2, rel=1e-4)
    assert summary["all"]["fraction_below_10pct"] == 0.0
    # a scaled copy has the observed spectrum's shape: its side-lobes and its fine structure
    shape = summary["plausibility"]
    assert shape["predicted"]["fine_structure_power_ratio_median"] == pytest.approx(1.0, rel=1e-6)
    assert shape["predicted"]["side_lobe_fraction"] == shape["observed"]["side_lobe_fraction"]
    assert 0 < shape["observed"]["noise_over_observed_power_median"] < 1.5
    assert set(summary["truth_morphology"]) <= {"elliptical", "spiral"}
    table = pd.read_csv(tmp_path / "quality" / "galaxies.csv")
    assert set(table["specObjID"]) == set(ids) and (tmp_path / "quality" / "histograms.png").stat().st_size > 0
    assert json.loads((tmp_path / "quality" / "summary.json").read_text()) == summary


@pytest.fixture(scope="module")
def perfect_predictions(tiny_dataset, tmp_path_factory):
    """Predictions equal to the observed test spectra, and a dataset copy where one galaxy has no usable pixel."""
    out = tmp_path_factory.mktemp("perfect")
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids = h5["specobjid"][()][rows]
        observed = h5["flux"][()][rows]
    with h5py.File(out / "pred.h5", "w") as pred:
        pred["specobjid"] = ids
        pred["flux"] = observed
    damaged = out / "dataset.h5"
    damaged.write_bytes(tiny_dataset.read_bytes())
    with h5py.File(damaged, "r+") as h5:
        h5["ivar"][rows[-1]] = 0.0
    return out / "pred.h5", damaged, ids


@pytest.fixture(scope="module")
def m11_npz(mangadap_wheel, tmp_path_factory):
    path = tmp_path_factory.mktemp("templates") / "m11_miles.npz"
    library_from_wheel(mangadap_wheel, "m11_miles").save(path)
    return path


def test_fit_chunks_of_identical_spectra_agree_and_failures_are_listed(
    perfect_predictions, m11_npz, mock_dir, tmp_path
):
    predictions, dataset, ids = perfect_predictions
    settings = EvaluationSettings.defaults(
        resolving_power=1500.0,
        chunk_size=3,
        ppxf=PpxfSettings.defaults(regul=10.0, bootstrap=2),
        firefly=FireflySettings.defaults(bootstrap=2, hpf_width=100.0, beam=4, max_components=4),
    )
    count = n_chunks(ids.size, settings.chunk_size)
    paths = [tmp_path / f"chunk{c}.parquet" for c in range(count + 1)]  # one chunk past the end is empty
    for chunk, path in enumerate(paths):
        fit_chunk(predictions, dataset, m11_npz, settings, chunk, path)
    fits = gather_fits(paths)
    assert len(fits) == 2 * ids.size and set(fits["specObjID"]) == set(ids)
    assert tuple(pd.read_parquet(paths[-1]).columns) == FIT_COLUMNS  # an empty chunk has the schema too
    renamed = tmp_path / "renamed.parquet"
    pd.read_parquet(paths[0]).rename(columns={"ppxf_sigma_star": "ppxf_sigma"}).to_parquet(renamed)
    with pytest.raises(
        ValueError, match=r"renamed.parquet: .*missing \['ppxf_sigma_star'\], unexpected \['ppxf_sigma'\]"
    ):
        gather_fits([renamed, *paths[1:]])
    failed = fits[fits["error"] != ""]
    assert set(failed["specObjID"]) == {ids[-1]} and failed["error"].str.contains(f"specObjID {ids[-1]}").all()
    assert failed["error"].str.contains("no pixel with positive inverse variance").all()
    ok = fits[fits["error"] == ""]
    assert ok["ppxf_sigma_star"].between(20, 500).all() and ok["Dn4000"].between(0.8, 2.5).all()

    def outputs(rule: str, **wildcards: str) -> dict:
        return rule_outputs(rule, tmp_path / wildcards.get("code", rule.removeprefix("evaluation_")), **wildcards)

    truth = mock_dir / "truth.parquet"
    ppxf = stellar_populations(
        fits, "ppxf", **outputs("evaluation_stellar_populations", code="ppxf"), truth_parquet=truth
    )
    assert ppxf["failed_fits"] == 2 and ppxf["fitted"] == 2 * ids.size - 2
    # identical observed and predicted spectra: identical fits
    assert ppxf["metallicity"]["all"]["fraction_within_0.1"] == 1.0
    assert ppxf["sigma_star"]["all"]["median_offset"] == pytest.approx(0.0, abs=1e-9)
    assert abs(ppxf["fit_minus_truth"]["observed"]["log_age"]["median_offset"]) < 0.5
    assert pd.read_csv(tmp_path / "ppxf" / "failures.csv")["specObjID"].tolist() == [ids[-1]] * 2
    firefly = stellar_populations(
        fits, "firefly", **outputs("evaluation_stellar_populations", code="firefly"), truth_parquet=truth
    )
    assert firefly["log_age"]["all"]["scatter_mad"] == pytest.approx(0.0, abs=1e-9)
    summary = indices(fits, **outputs("evaluation_indices"))
    assert summary["Dn4000"]["median_offset"] == pytest.approx(0.0, abs=1e-12)
    comparisons(fits, dataset, **outputs("evaluation_comparisons"))
    side_by_side = pd.read_csv(tmp_path / "comparisons" / "galaxies.csv")
    assert len(side_by_side) == ids.size and np.allclose(
        side_by_side["observed_Dn4000"], side_by_side["predicted_Dn4000"], equal_nan=True
    )
    line_summary = lines(fits, settings, **outputs("evaluation_lines"))
    assert line_summary["ew_Halpha"]["median_difference"] == pytest.approx(0.0, abs=1e-12)
    classes = bpt(
        fits,
        dataclasses.replace(settings, lines=dataclasses.replace(settings.lines, draws=20)),
        **outputs("evaluation_bpt"),
        truth_parquet=truth,
    )
    matrix = np.array(classes["confusion_matrix"]["counts"])
    assert np.array_equal(matrix, np.diag(np.diag(matrix))) and matrix.sum() == ids.size
    assert classes["scores"]["accuracy"] == 1.0 and set(classes["versus_truth"]) == {"observed", "predicted"}
    assert classes["predictors"]["predicted"]["confusion_counts"] == matrix.tolist()
    for figure in (
        "ppxf/differences.png",
        "firefly/differences.png",
        "indices/indices.png",
        "comparisons/bimodality.png",
        "comparisons/degeneracy.png",
        "comparisons/mass_metallicity.png",
        "lines/lines.png",
        "bpt/bpt.png",
        "bpt/confusion.png",
    ):
        assert (tmp_path / figure).stat().st_size > 0, figure


def test_redshift_target_recovers_the_catalog_redshift(perfect_predictions, tiny_dataset, miuscat, tmp_path):
    predictions, _, _ids = perfect_predictions
    library = tmp_path / "miuscat.npz"
    miuscat.save(library)
    summary = redshift(
        predictions,
        tiny_dataset,
        library,
        EvaluationSettings.defaults(resolving_power=1500.0),
        **rule_outputs("evaluation_redshift", tmp_path / "z"),
    )
    assert summary["predicted"]["outlier_fraction"] == 0.0
    assert summary["predicted"]["sigma_mad"] < 2e-4
    table = pd.read_csv(tmp_path / "z" / "galaxies.csv")
    assert np.allclose(table["predicted_z"], table["z_spec"], atol=5e-4)


def test_quality_scores_every_predictor_on_the_same_galaxies(tiny_dataset, mock_dir, tmp_path):
    from img2spec.baselines import BaselineSettings, baseline_summary
    from img2spec.preprocessing import PreprocessingSettings

    baseline_summary(
        tiny_dataset,
        BaselineSettings.defaults(k=3),
        tmp_path / "b.h5",
        tmp_path / "b.json",
        mock_dir / "spectra",
        PreprocessingSettings.defaults(),
    )
    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids, observed = h5["specobjid"][()][rows], h5["flux"][()][rows]
    with h5py.File(tmp_path / "pred.h5", "w") as pred:
        pred["specobjid"] = ids[::-1]
        pred["flux"] = (observed + np.log(1.2))[::-1]
        pred["flux_p50"] = (observed + np.log(1.05))[::-1]
        pred["flux_contrastive_best"] = (observed + np.log(1.1))[::-1]
    summary = quality(
        tmp_path / "pred.h5",
        tiny_dataset,
        **rule_outputs("evaluation_quality", tmp_path / "q"),
        truth_parquet=mock_dir / "truth.parquet",
        baselines_h5=tmp_path / "b.h5",
    )
    assert list(summary["predictors"]) == [
        "predicted",
        "contrastive_best",
        "median",
        "mean",
        "knn",
        "knn_rest",
        "truth",
    ]
    deviation = {name: s["all"]["median_mean_relative_deviation"] for name, s in summary["predictors"].items()}
    for name, factor in (("predicted", 1.2), ("contrastive_best", 1.1), ("median", 1.05)):
        assert deviation[name] == pytest.approx(factor - 1, rel=1e-4), name
    assert summary["predictors"]["predicted"]["all"] == summary["all"]
    assert deviation["truth"] < min(deviation["mean"], deviation["knn"])  # the noise floor
    table = pd.read_csv(tmp_path / "q" / "galaxies.csv")
    assert {"knn_mse", "truth_chi2_per_pixel", "mean_mean_relative_deviation"} <= set(table.columns)


def _with_every_entry(summaries: dict, predictors: tuple[str, ...]) -> dict:
    """``summaries`` with None (not measurable) at every headline and plausibility entry they leave out."""
    from img2spec.evaluation import HEADLINES, OBSERVED_NOISE_POWER, PLAUSIBILITY_ROWS

    complete = json.loads(json.dumps(summaries))
    paths = [row[-1] for row in HEADLINES] + [row[2] for row in PLAUSIBILITY_ROWS] + [OBSERVED_NOISE_POWER]
    for path in paths:
        for predictor in predictors:
            node = complete
            *parents, leaf = (key.format(p=predictor) for key in path)
            for key in parents:
                node = node.setdefault(key, {})
            node.setdefault(leaf, None)
    return complete


def _summary_files(summaries: dict, folder) -> dict:
    paths = {}
    for name, content in summaries.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(content))
    return paths


def test_headline_summary_puts_predictors_side_by_side_and_says_who_wins(tmp_path):
    from img2spec.evaluation import headline_summary

    def predictors(**values):
        return {
            name: {
                "all": {
                    "n": 10,
                    "median_mean_relative_deviation": v[0],
                    "fraction_below_10pct": 0.5,
                    "median_mse": v[1],
                    "median_chi2_per_pixel": 1.0,
                }
            }
            for name, v in values.items()
        }

    summaries = {
        "quality": {
            "all": {"n": 10},
            "predictors": predictors(predicted=(0.08, 0.03), median=(0.07, 0.02), knn=(0.09, 0.02), mean=(0.14, 0.05)),
        },
        "redshift": {
            "predicted": {"sigma_mad": 0.01, "outlier_fraction": 0.0},
            "knn": {"sigma_mad": 0.02, "outlier_fraction": 0.1},
        },
        "ppxf": {
            "predictors": {
                "predicted": {"metallicity": {"fraction_within_0.1": 0.6}},
                "knn": {"metallicity": {"fraction_within_0.1": 0.4}},
            }
        },
        "indices": {"predictors": {}},
        "bpt": {
            "predictors": {
                "predicted": {"accuracy": 0.5, "AGN_accuracy": 0.7},
                "knn": {"accuracy": 0.6, "AGN_accuracy": 0.8},
            }
        },
        "lines": {
            "plausibility": {
                "predicted": {
                    "false_emission_rate": 0.3,
                    "missed_emission_rate": 0.1,
                    "line_flux_bias": {"Halpha": {"median_log_ratio": -0.09}},
                },
                "knn": {"false_emission_rate": 0.05},
            }
        },
        "predictions": {
            "coverage_of_16_84_band": 0.66,
            "coverage_of_16_84_band_at_predicted_redshift": 0.58,
            "coverage_of_16_84_band_as_drawn": 0.51,
            "band_scale": 1.37,
            "coverage_of_16_84_band_by_morphology": {"elliptical": 0.7, "spiral": 0.63},
        },
    }
    paths = _summary_files(_with_every_entry(summaries, ("observed", "predicted", "median", "knn", "mean")), tmp_path)
    summary = headline_summary(paths, "sdss", tmp_path / "s.json", tmp_path / "s.md")
    verdict = summary["predicted_beats_knn"]
    assert verdict["median mean relative deviation Δ̄"] == "wins" and verdict["median MSE of ln flux"] == "loses"
    assert verdict["redshift σ_MAD of Δz/(1+z)"] == "wins" and verdict["AGN accuracy"] == "loses"
    assert verdict["fraction with Δ̄ < 10%"] == "tie" and verdict["Dn4000 Pearson ρ (no spirals)"] is None
    markdown = (tmp_path / "s.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| quantity"))
    assert "selected candidate" in header and "median of candidates" in header and "nearest neighbours" in header
    assert "| median mean relative deviation Δ̄ | 0.08 | 0.07 | 0.14 | 0.09 | 0.055 |" in markdown
    assert (
        "beats the nearest-neighbour baseline on 4 of 9 rows; it loses on: median MSE of ln flux, BPT class accuracy, "
        "AGN accuracy; ties on: fraction with Δ̄ < 10%, median χ²/N."
    ) in markdown
    assert (
        "moved to the observed redshift, the 16–84% band of the candidates holds 0.66 of the test galaxies' observed "
        "pixels (nominal 0.68; elliptical 0.70, spiral 0.63); at the predicted redshift 0.58; as drawn, before its "
        "calibration on validation galaxies (× 1.37), 0.51."
    ) in markdown
    plausibility = markdown.split("## Plausibility of the lines")[1].split("##")[0]
    assert "| false emission: EW(Hα) > 3 Å where observed < 1 Å | — | 0.3 | — | — | 0.05 |" in plausibility
    assert "| Hα flux bias, median log10(pred/obs), observed EW(Hα) > 5 Å | — | -0.09 |" in plausibility
    methods = markdown.split("## How each number is computed")[1]
    from img2spec.evaluation import HEADLINES

    assert all(f"| {label} |" in methods for label, *_ in HEADLINES)  # every headline row says how it was computed

    incomplete = _with_every_entry(summaries, ("observed", "predicted", "median", "knn", "mean"))
    del incomplete["ppxf"]["predictors"]["knn"]  # a target that forgot a predictor (or renamed a key)
    with pytest.raises(KeyError, match="the ppxf summary has no entry 'predictors.knn' \\(for 'knn'\\)"):
        headline_summary(_summary_files(incomplete, tmp_path), "sdss", tmp_path / "s.json", tmp_path / "s.md")


def test_a_prediction_at_another_redshift_is_scored_and_fitted_in_its_own_frame(tiny_dataset, m11_npz, tmp_path):
    """The paper's alignment (Sect. 5.1, 5.3): a prediction 3,000 km/s redder than the observation is
    moved back before Δ̄ is computed, and fitted in its own rest frame, so it scores and fits like
    the unmoved prediction."""
    from img2spec.evaluation import fit_galaxy
    from img2spec.preprocessing import shift_to_redshift
    from img2spec.toolbox import prepare_templates
    from img2spec.units import C_KMS
    from scipy.ndimage import gaussian_filter1d

    with h5py.File(tiny_dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])
        ids, observed, z = h5["specobjid"][()][rows], h5["flux"][()][rows].astype(np.float64), h5["z_spec"][()][rows]
        wave, ivar = h5["wave"][()], h5["ivar"][()][rows]
    unmoved = gaussian_filter1d(observed, 1.5, axis=1)  # a noiseless-looking prediction at the right redshift
    z_moved = (1 + z) * (1 + 3000.0 / C_KMS) - 1
    moved, uncovered = shift_to_redshift(wave, unmoved, z, z_moved)
    moved = np.nan_to_num(moved, nan=float(np.log(0.5)))  # the network fills every pixel
    for name, flux in (("unmoved", unmoved), ("moved", moved)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as pred:
            pred["specobjid"], pred["flux"] = ids, flux
        pd.DataFrame({"specObjID": ids, "predicted_z": z if name == "unmoved" else z_moved}).to_csv(
            tmp_path / f"{name}_z.csv", index=False
        )
    score = {
        name: pd.read_csv(tmp_path / name / "galaxies.csv")
        for name in ("unmoved", "moved")
        if quality(
            tmp_path / f"{name}.h5",
            tiny_dataset,
            **rule_outputs("evaluation_quality", tmp_path / name),
            redshift_csv=tmp_path / f"{name}_z.csv",
        )
    }
    assert np.allclose(
        score["moved"]["mean_relative_deviation"], score["unmoved"]["mean_relative_deviation"], rtol=0.03
    )
    assert np.allclose(
        score["unmoved"]["mean_relative_deviation"], score["unmoved"]["mean_relative_deviation_as_predicted"], rtol=1e-3
    )
    assert (
        score["moved"]["mean_relative_deviation_as_predicted"] > 1.5 * score["moved"]["mean_relative_deviation"]
    ).all()

    settings = EvaluationSettings.defaults(resolving_power=1500.0)
    templates = prepare_templates(load_library(m11_npz), settings.resolving_power, ages_gyr=settings.ages_gyr)
    # both fitted over the same rest-frame range: the moved one has no source blueward, the unmoved one loses its red end
    weights = {
        "unmoved": np.where(wave > wave[-1] * (1 + z[0]) / (1 + z_moved[0]), 0.0, ivar[0]),
        "moved": np.where(uncovered[0], 0.0, ivar[0]),
    }
    fits = {
        name: fit_galaxy(wave, np.exp(flux[0]), weights[name], redshift, templates, settings, 0, name, bootstrap=False)
        for name, flux, redshift in (("unmoved", unmoved, z[0]), ("moved", moved, z_moved[0]))
    }
    assert fits["moved"]["ppxf_sigma_star"] == pytest.approx(fits["unmoved"]["ppxf_sigma_star"], rel=0.05)
    # (Mg b of this galaxy lies on a masked observed pixel in one frame only, so it is not compared)
    for key, tolerance in (
        ("ppxf_log_age", 0.05),
        ("ppxf_metallicity", 0.05),
        ("ppxf_velocity", 30.0),
        ("Dn4000", 0.02),
        ("H_beta", 0.15),
    ):
        assert fits["moved"][key] == pytest.approx(fits["unmoved"][key], abs=tolerance), key
