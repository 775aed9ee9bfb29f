"""The mock survey's report figures, read back from the files it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from .. import plots
from ..cubes import open_cube_file
from ..io import SurveyFiles, read_sdss_spectrum, spectrum_path
from ..spectral import BPT_CLASSES, BPT_LINES, bpt_ratios
from .population import SURVIVING_MASS_FRACTION, sdss_agn_fraction


def pick_examples(truth: pd.DataFrame) -> list[int]:
    """Rows showing the range of the mock: an elliptical, a spiral, an AGN and a passive galaxy."""
    picks = []
    for query in (
        "morphology == 'elliptical' and bpt_class == 'passive'",
        "morphology == 'spiral' and bpt_class == 'star-forming'",
        "bpt_class == 'AGN'",
        "morphology == 'spiral' and ebv > 0.15",
    ):
        rows = truth.query(query).index
        rows = [r for r in rows if r not in picks]
        if rows:
            picks.append(int(rows[0]))
    return picks


def class_fractions(truth: pd.DataFrame) -> dict[str, float]:
    """Fraction of the truth table's galaxies in each class of the paper's scheme, and of composites and LINER-like AGN."""
    fractions = {name: float(np.mean(truth["bpt_class"] == name)) for name in BPT_CLASSES}
    fractions.update({name: float(np.mean(truth["bpt_detail"] == name)) for name in ("composite",)})
    return fractions


def mock_figures(
    files: SurveyFiles,
    examples_png: str | Path,
    colour_mass_png: str | Path,
    bpt_png: str | Path,
    classes_png: str | Path,
) -> None:
    """Example galaxies, u − r against mass, the truth BPT diagram and the emission-line classes against
    stellar mass beside :func:`img2spec.mock.population.sdss_agn_fraction`, of the mock survey in ``files``."""
    catalog = pd.read_csv(files.catalog)
    truth = pd.read_parquet(files.truth)
    rows = pick_examples(truth)
    with open_cube_file(files.cubes) as cubes:
        images = cubes.read(np.array(rows))
    spectra = []
    for row in rows:
        entry = catalog.iloc[row]
        path = spectrum_path(files.spectra, entry.plate, entry.mjd, entry.fiberID)
        spec = read_sdss_spectrum(path)
        with fits.open(path) as hdul:
            model = np.asarray(hdul["COADD"].data["model"], float)
        spectra.append((spec.wave, spec.flux, model))
    plots.mock_examples(images, spectra, truth.iloc[rows], examples_png)
    plots.colour_mass(
        truth["logmass"].to_numpy(),
        (catalog["modelMag_u"] - catalog["modelMag_r"]).to_numpy(),
        truth["quenched"].to_numpy(bool),
        colour_mass_png,
    )
    x, y = bpt_ratios({name: truth[f"flux_{name}"].to_numpy() for name in BPT_LINES})
    plots.bpt_diagram(x, y, truth["bpt_detail"].to_numpy(), bpt_png, title="mock truth (fiber line fluxes)")
    log_mstar = truth["logmass"].to_numpy() + np.log10(SURVIVING_MASS_FRACTION)
    grid = np.linspace(9.5, 11.75, 100)
    plots.emission_classes(
        x,
        y,
        log_mstar,
        truth["bpt_class"].to_numpy(),
        (grid, sdss_agn_fraction(grid)),
        classes_png,
        relation_label="SDSS AGN fraction (Kauffmann+03 shape, paper's Table 2 level)",
    )
