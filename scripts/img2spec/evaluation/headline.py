"""The headline numbers: each reported row's value for every predictor, read from the targets' summaries.

The rows are declared once here (label, the paper's value, which way is better, where each value is
found); :mod:`img2spec.evaluation.report` renders them.  A row whose entry is missing fails loudly
(:func:`lookup`), so a renamed summary key cannot turn into an empty cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bands import COVERAGE, COVERAGE_KEYS
from .inputs import PREDICTOR_LABELS, PREDICTORS

HEADLINES = (
    (
        "median mean relative deviation Δ̄",
        0.055,
        True,
        ("quality", "predictors", "{p}", "all", "median_mean_relative_deviation"),
    ),
    ("fraction with Δ̄ < 10%", None, False, ("quality", "predictors", "{p}", "all", "fraction_below_10pct")),
    ("median MSE of ln flux", None, True, ("quality", "predictors", "{p}", "all", "median_mse")),
    ("median χ²/N", None, True, ("quality", "predictors", "{p}", "all", "median_chi2_per_pixel")),
    (
        "median Δ̄ without redshift alignment",
        None,
        True,
        ("quality", "predictors", "{p}", "all", "as_predicted", "median_mean_relative_deviation"),
    ),
    (
        "median MSE without redshift alignment",
        None,
        True,
        ("quality", "predictors", "{p}", "all", "as_predicted", "median_mse"),
    ),
    ("redshift σ_MAD of Δz/(1+z)", 0.0118, True, ("redshift", "{p}", "sigma_mad")),
    ("redshift outlier fraction", None, True, ("redshift", "{p}", "outlier_fraction")),
    ("pPXF [M/H] within 0.1 dex", 0.86, False, ("ppxf", "predictors", "{p}", "metallicity", "fraction_within_0.1")),
    ("pPXF log age scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "log_age", "scatter_mad")),
    ("pPXF E(B−V) scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "ebv", "scatter_mad")),
    ("pPXF σ* relative scatter (std)", 0.20, True, ("ppxf", "predictors", "{p}", "sigma_star", "scatter_std")),
    ("pPXF σ* relative scatter (MAD)", None, True, ("ppxf", "predictors", "{p}", "sigma_star", "scatter_mad")),
    (
        "Dn4000 Pearson ρ (no spirals)",
        None,
        False,
        ("indices", "predictors", "{p}", "Dn4000", "pearson_rho_without_spirals"),
    ),
    (
        "[MgFe]′ Pearson ρ (no spirals)",
        None,
        False,
        ("indices", "predictors", "{p}", "MgFe_prime", "pearson_rho_without_spirals"),
    ),
    ("BPT class accuracy", None, False, ("bpt", "predictors", "{p}", "accuracy")),
    ("AGN accuracy", 0.82, False, ("bpt", "predictors", "{p}", "AGN_accuracy")),
    ("AGN precision", 0.73, False, ("bpt", "predictors", "{p}", "AGN_precision")),
    ("AGN recall", 0.74, False, ("bpt", "predictors", "{p}", "AGN_recall")),
)
#: Plausibility of the predicted lines (issue 25): label, lower-is-better (None: closest to zero is best),
#: where each kind's value is found, and whether the observed spectra have a value of their own (the
#: line rows compare each prediction with them, so they have none).
PLAUSIBILITY_ROWS = (
    (
        "false emission: EW(Hα) > 3 Å where observed < 1 Å",
        True,
        ("lines", "plausibility", "{p}", "false_emission_rate"),
        False,
    ),
    (
        "missed emission: EW(Hα) < 1 Å where observed > 3 Å",
        True,
        ("lines", "plausibility", "{p}", "missed_emission_rate"),
        False,
    ),
    *(
        (
            f"{label} flux bias, median log10(pred/obs), observed EW(Hα) > 5 Å",
            None,
            ("lines", "plausibility", "{p}", "line_flux_bias", line, "median_log_ratio"),
            False,
        )
        for label, line in (
            ("Hβ", "Hbeta"),
            ("[O III] 5007", "OIII_5007"),
            ("Hα", "Halpha"),
            ("[N II] 6584", "NII_6584"),
        )
    ),
    (
        "side-lobes: trough < 0.7 of the continuum 4–25 Å from Hβ or Hα",
        True,
        ("quality", "plausibility", "{p}", "side_lobe_fraction"),
        True,
    ),
    (
        "fine-structure power over the observed spectrum's (median)",
        None,
        ("quality", "plausibility", "{p}", "fine_structure_power_ratio_median"),
        True,
    ),
)
#: Where the observed spectra's share of noise in their high-pass power is found.
OBSERVED_NOISE_POWER = ("quality", "plausibility", "observed", "noise_over_observed_power_median")
#: On the mock: every kind of spectrum (the observed one included) against the truth.
TRUTH_ROWS = (
    ("pPXF [M/H] − truth, scatter (MAD)", ("ppxf", "fit_minus_truth", "{p}", "metallicity", "scatter_mad")),
    ("pPXF log age − truth, scatter (MAD)", ("ppxf", "fit_minus_truth", "{p}", "log_age", "scatter_mad")),
    (
        "pPXF σ*, relative to truth, scatter (MAD)",
        ("ppxf", "fit_minus_truth", "{p}", "sigma_star_relative", "scatter_mad"),
    ),
    ("BPT class accuracy against the true class", ("bpt", "versus_truth", "{p}", "accuracy")),
)


#: The networks' products compared with the baselines, and the baselines they are compared with.
CHALLENGERS = ("predicted", "contrastive_best", "median")
REFERENCES = ("knn", "knn_rest")


def lookup(loaded: dict, path: tuple[str, ...], predictor: str) -> float:
    """The number at ``path`` (``{p}`` standing for ``predictor``) of the loaded summaries; NaN where the
    target wrote None (not measurable).

    Raises
    ------
    KeyError
        Naming the target and the path, when the summary has no such entry: a renamed or forgotten
        key fails here instead of showing as an empty cell.
    """
    value: Any = loaded
    for depth, key in enumerate(path):
        key = key.format(p=predictor)
        if not isinstance(value, dict) or key not in value:
            where = ".".join(part.format(p=predictor) for part in path[1 : depth + 1])
            raise KeyError(f"the {path[0]} summary has no entry {where!r} (for {predictor!r})")
        value = value[key]
    return float(value) if value is not None else float("nan")


def beats(summary: dict, challenger: str = "predicted", reference: str = "knn") -> dict[str, str | None]:
    """Per headline row: "wins", "loses" or "tie" for ``challenger`` against ``reference``; None where either is missing."""
    verdict: dict[str, str | None] = {}
    for row in summary["headlines"]:
        a, b = row["values"].get(challenger, np.nan), row["values"].get(reference, np.nan)
        if not (np.isfinite(a) and np.isfinite(b)):
            verdict[row["quantity"]] = None
        elif a == b:
            verdict[row["quantity"]] = "tie"
        else:
            verdict[row["quantity"]] = "wins" if (a < b) == row["lower_is_better"] else "loses"
    return verdict


def headline_numbers(loaded: dict[str, dict], survey: str, preset: str = "tiny") -> dict:
    """Every predictor's headline numbers side by side, with the paper's, labelled with the dataset they come from.

    ``loaded`` maps target names (quality, redshift, ppxf, indices, bpt; optionally lines and
    ``predictions``, the prediction summary with its uncertainty-band coverage) to their parsed
    summary.json.  Besides the rows of :data:`HEADLINES`, says per row whether each of the networks'
    products (:data:`CHALLENGERS`) beats each nearest-neighbour baseline (:func:`beats`), and
    gathers the AGN scores' Monte-Carlo spread, the band coverage, the plausibility rows and, on the
    mock, the rows against the truth.
    """
    present = [p for p in PREDICTORS if p in loaded["quality"].get("predictors", {"predicted": None})]
    dataset = "the embedded mock SDSS survey" if survey == "mock" else "SDSS"
    summary: dict[str, Any] = {
        "dataset": dataset,
        "survey": survey,
        "n_test": loaded["quality"]["all"]["n"],
        "preset": preset,
        "paper": "Doorenbos, Sextl et al. 2024, ApJ 977, 131 (SDSS DR12, 1,506 test galaxies)",
        "predictors": {p: PREDICTOR_LABELS[p] for p in present},
        "headlines": [
            {
                "quantity": label,
                "paper": paper,
                "lower_is_better": lower,
                "target": path[0],
                "values": {p: lookup(loaded, path, p) for p in present},
            }
            for label, paper, lower, path in HEADLINES
        ],
    }
    if "bpt" in loaded and "monte_carlo" in loaded["bpt"]:
        summary["agn_monte_carlo_spread"] = {
            k: loaded["bpt"]["monte_carlo"]["scores"][k]["std"] for k in ("AGN_accuracy", "AGN_precision", "AGN_recall")
        }
    if survey == "mock":
        summary["versus_truth"] = [
            {"quantity": label, "values": {k: lookup(loaded, path, k) for k in ("observed", *present)}}
            for label, path in TRUTH_ROWS
        ]
    for challenger in CHALLENGERS:
        for reference in REFERENCES:
            both = {challenger, reference} <= set(present)
            summary[f"{challenger}_beats_{reference}"] = beats(summary, challenger, reference) if both else {}
    if "predictions" in loaded and COVERAGE in loaded["predictions"]:
        summary["band_coverage"] = {key: loaded["predictions"].get(key) for key in COVERAGE_KEYS}
    if "lines" in loaded:
        summary["plausibility"] = [
            {
                "quantity": label,
                "lower_is_better": lower,
                "values": {"observed": lookup(loaded, path, "observed") if observed_has_one else float("nan")}
                | {k: lookup(loaded, path, k) for k in present},
            }
            for label, lower, path, observed_has_one in PLAUSIBILITY_ROWS
        ]
    return summary
