"""The headline report: :func:`img2spec.evaluation.headline.headline_numbers` as JSON and as Markdown.

The Markdown has one table per kind of row (headline, plausibility of the lines, on the mock the rows
against the truth), one column per predictor, the verdicts against the nearest-neighbour baselines,
and how each number is computed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from ..bands import BAND_SCALE, COVERAGE, COVERAGE_AS_DRAWN, COVERAGE_AT_PREDICTED_REDSHIFT, COVERAGE_BY_MORPHOLOGY
from ..io import atomic_output, write_json
from ..preprocessing import NORMALISATION_WINDOW
from .headline import CHALLENGERS, HEADLINES, OBSERVED_NOISE_POWER, REFERENCES, headline_numbers, lookup
from .inputs import PREDICTOR_LABELS

#: How each headline number is computed here, and where that differs from the paper's procedure.
HEADLINE_METHODS = {
    "median mean relative deviation Δ̄": (
        (
            "median over test galaxies of the mean over unmasked pixels of |F_pred − F_obs|/F_obs, linear normalised flux (eq. 9), "
            "after moving the prediction from the redshift measured on it to the observed one and renormalising it in "
            "{:g}–{:g} Å (Sect. 5.1)".format(*NORMALISATION_WINDOW)
        ),
        (
            "the paper does not say how the moved spectrum is renormalised; pixels the moved prediction does not cover "
            "are left out"
        ),
    ),
    "fraction with Δ̄ < 10%": ("as Δ̄; a prediction without a measured redshift counts as above 10%", "—"),
    "median MSE of ln flux": (
        "mean squared difference of ln flux over unmasked pixels, after the same move",
        "the paper's MSE (Table 3) is in the rest frame over 4000–7000 Å",
    ),
    "median χ²/N": ("Σ (F_pred − F_obs)² ivar_obs / N over unmasked pixels, after the same move", "—"),
    "median Δ̄ without redshift alignment": (
        "Δ̄ of the prediction as it comes, on the observed wavelength grid",
        "not in the paper; shows what the alignment changes",
    ),
    "median MSE without redshift alignment": ("MSE of the prediction as it comes", "not in the paper"),
    "redshift σ_MAD of Δz/(1+z)": (
        (
            "1.4826 × MAD of Δz/(1+z_spec), z from a χ² scan over principal components of the redshift "
            "library (evaluation.redshift), observed-spectrum noise"
        ),
        "the paper does not describe its redshift measurement",
    ),
    "redshift outlier fraction": (
        "|Δz|/(1+z_spec) > evaluation.redshift.outlier (0.05), a failed fit counted as an outlier",
        "—",
    ),
    "pPXF [M/H] within 0.1 dex": (
        (
            "|[M/H]_pred − [M/H]_obs| ≤ 0.1, light-weighted, each spectrum fitted in the rest frame of its "
            "own redshift (Sect. 5.3) with evaluation.library, regul, Calzetti dust, gas lines, "
            "interstellar/sky masks and 3σ clipping"
        ),
        "the paper uses E-MILES; the default here is BC03 (config/sdss.yaml uses E-MILES)",
    ),
    "pPXF log age scatter (MAD)": ("1.4826 × MAD of log age_obs − log age_pred (light-weighted)", "—"),
    "pPXF E(B−V) scatter (MAD)": ("1.4826 × MAD of the stellar E(B−V) difference (Calzetti, A_V/4.05)", "—"),
    "pPXF σ* relative scatter (std)": ("standard deviation of (σ*_obs − σ*_pred)/σ*_obs", "—"),
    "pPXF σ* relative scatter (MAD)": ("1.4826 × MAD of (σ*_obs − σ*_pred)/σ*_obs", "not in the paper"),
    "Dn4000 Pearson ρ (no spirals)": (
        (
            "Pearson ρ of Dn4000 (Balogh et al. 1999) of predicted and observed rest-frame spectra, "
            "Galaxy Zoo spirals excluded (Figure 7)"
        ),
        "—",
    ),
    "[MgFe]′ Pearson ρ (no spirals)": (
        "as Dn4000, [MgFe]′ from Lick indices corrected for σ* with the pPXF model",
        "—",
    ),
    "BPT class accuracy": (
        (
            "passive if EW(Hα) < 1 Å or a line missing (evaluation.lines.detection), else star-forming below "
            "Kauffmann et al. (2003), AGN above; lines after subtracting the FIREFLY-method continuum (Sect. 5.7)"
        ),
        "the paper also labels passive by visual inspection",
    ),
    "AGN accuracy": ("AGN against the rest, observed spectra's class as truth", "—"),
    "AGN precision": ("as AGN accuracy", "—"),
    "AGN recall": ("as AGN accuracy", "—"),
}

#: How the verdict sentences name the networks' products and the baselines they are compared with.
VERDICT_NAMES = {
    "predicted": "selected candidate",
    "contrastive_best": "choice by contrastive_sr alone (the paper's selection)",
    "median": "median of the candidates",
    "knn": "nearest-neighbour baseline",
    "knn_rest": "rest-frame nearest-neighbour baseline",
}


def _cell(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{value:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def render_markdown(summary: dict, loaded: dict[str, dict]) -> str:
    """The headline report of :func:`headline_numbers`' ``summary``; ``loaded`` gives the observed spectra's
    noise share of their fine structure and, on the mock, the band's coverage of the truth."""
    present = list(summary["predictors"])
    dataset, n_test, preset = summary["dataset"], summary["n_test"], summary["preset"]
    header = ["quantity", *(PREDICTOR_LABELS[p] for p in present), "paper (SDSS)"]
    lines = [
        f"# img2spec evaluation: headline numbers ({dataset})",
        "",
        f"Ours: {n_test} test galaxies of {dataset}, networks of the `{preset}` preset. Paper: {summary['paper']}.",
        "Every predictor goes through the same metrics and the same fits against the same observed spectra.",
        "",
    ]
    lines += _table(
        header,
        [
            [row["quantity"], *(_cell(row["values"][p]) for p in present)]
            + [_cell(row["paper"]) if row["paper"] is not None else "—"]
            for row in summary["headlines"]
        ],
    )
    for challenger, reference in itertools.product(CHALLENGERS, REFERENCES):
        who, whom = VERDICT_NAMES[challenger], VERDICT_NAMES[reference]
        verdict = summary[f"{challenger}_beats_{reference}"]
        if not verdict:
            continue
        won, lost, tied = ([q for q, v in verdict.items() if v == outcome] for outcome in ("wins", "loses", "tie"))
        lines += [
            "",
            f"The networks' {who} beats the {whom} on {len(won)} of "
            f"{len(won) + len(lost) + len(tied)} rows"
            + (f"; it loses on: {', '.join(lost)}" if lost else "")
            + (f"; ties on: {', '.join(tied)}" if tied else "")
            + ".",
        ]
    if "agn_monte_carlo_spread" in summary:
        spread = summary["agn_monte_carlo_spread"]
        lines += [
            "",
            "Monte-Carlo spread of the networks' AGN scores under the paper's line errors: "
            + ", ".join(f"{k.replace('AGN_', '')} ± {v:.2g}" for k, v in spread.items())
            + ".",
        ]
    if "band_coverage" in summary:
        band = summary["band_coverage"]
        by_morphology = ", ".join(f"{m} {v:.2f}" for m, v in band[COVERAGE_BY_MORPHOLOGY].items())
        truth_coverage = loaded.get("quality", {}).get("band_coverage_of_truth")
        lines += [
            "",
            (
                f"Uncertainty band: moved to the observed redshift, the 16–84% band of the candidates holds "
                f"{band[COVERAGE]:.2f} of the test galaxies' observed pixels (nominal 0.68; {by_morphology})"
                + (f" and {truth_coverage:.2f} of the noiseless truth's" if truth_coverage is not None else "")
                + f"; at the predicted redshift {_or_nan(band[COVERAGE_AT_PREDICTED_REDSHIFT]):.2f}; "
                f"as drawn, before its calibration on validation galaxies (× {band[BAND_SCALE] or 1.0:.2f}), "
                f"{_or_nan(band[COVERAGE_AS_DRAWN]):.2f}."
            ),
        ]
    if "plausibility" in summary:
        noise = lookup(loaded, OBSERVED_NOISE_POWER, "observed")
        lines += [
            "",
            "## Plausibility of the lines",
            "",
            "Each predictor's spectra against the observed ones of the same galaxies, at the observed redshift; the flux",
            "biases are medians over the galaxies whose observed EW(Hα) exceeds 5 Å (bootstrap spreads in",
            (
                "`lines/summary.json`). The observed spectra's high-pass power is "
                f"{noise:.2f} noise (median): a noiseless perfect prediction would have a fine-structure ratio of about "
                f"{1 - noise:.2f}."
            ),
            "",
        ]
        lines += _kinds_table(summary["plausibility"], present)
    if "versus_truth" in summary:
        lines += ["", "## Against the mock's truth", ""]
        lines += _kinds_table(summary["versus_truth"], present)
    lines += [
        "",
        "## How each number is computed",
        "",
        "Every row compares a predictor's spectrum with the observed spectrum of the same galaxy; fractions and scatters compare",
        "the fit of one with the fit of the other. Sources: `results/evaluation/<target>/summary.json`.",
        "",
    ]
    lines += _table(
        ["quantity", "how", "differs from the paper"],
        [[label, *HEADLINE_METHODS[label]] for label, *_ in HEADLINES],
    )
    return "\n".join(lines) + "\n"


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _kinds_table(rows: list[dict], present: list[str]) -> list[str]:
    """Rows with a value for the observed spectra and for every predictor."""
    header = ["quantity", "observed spectrum", *(PREDICTOR_LABELS[p] for p in present)]
    return _table(
        header, [[row["quantity"], *(_cell(row["values"][k]) for k in ("observed", *present))] for row in rows]
    )


def headline_summary(summaries: dict[str, str | Path], survey: str, out_json, out_md, preset: str = "tiny") -> dict:
    """Write the headline numbers of the targets' ``summaries`` (target name → summary.json) to ``out_json`` and
    ``out_md`` (:func:`headline_numbers`, :func:`render_markdown`); returns them."""
    loaded = {name: json.loads(Path(path).read_text()) for name, path in summaries.items()}
    summary = headline_numbers(loaded, survey, preset)
    write_json(summary, out_json)
    with atomic_output(out_md) as tmp:
        Path(tmp).write_text(render_markdown(summary, loaded))
    return summary
