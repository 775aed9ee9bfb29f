"""Evaluation targets: each reads predictions and observations and writes a summary, tables and figures.

One module per target: :mod:`.quality`, :mod:`.redshift`, :mod:`.fitting` (the fits every other target
reads), :mod:`.populations`, :mod:`.indices`, :mod:`.lines` (lines and BPT classes), :mod:`.headline`
(the reported numbers) and :mod:`.report` (their Markdown); :mod:`.inputs` reads what they share and
:mod:`.settings` holds the workflow's ``evaluation`` section.

Observed and predicted spectra go through the same code; the predicted ones are weighted with the
observed spectrum's inverse variance (the noise a real spectrum of that galaxy would have).  Each
spectrum is analysed at its own redshift, as the paper does (Sect. 5.1 and 5.3): :func:`redshift`
runs first and measures it on every kind of spectrum; the observed spectra stay at the catalog
redshift.  :func:`quality` compares a prediction with the observation after moving it from its
measured redshift to the observed one, and the fits of :func:`fit_chunk` put each spectrum in the
rest frame of its own redshift.
"""

from .fitting import fit_chunk, fit_galaxy, gather_fits
from .headline import HEADLINES, OBSERVED_NOISE_POWER, PLAUSIBILITY_ROWS, TRUTH_ROWS, headline_numbers
from .indices import indices
from .inputs import PREDICTOR_LABELS, PREDICTORS
from .lines import bpt, lines
from .populations import comparisons, stellar_populations
from .quality import quality
from .redshift import redshift
from .report import headline_summary, render_markdown
from .settings import EvaluationSettings, FireflySettings, LinesSettings, PpxfSettings, RedshiftSettings

__all__ = [
    "HEADLINES",
    "OBSERVED_NOISE_POWER",
    "PLAUSIBILITY_ROWS",
    "PREDICTORS",
    "PREDICTOR_LABELS",
    "TRUTH_ROWS",
    "EvaluationSettings",
    "FireflySettings",
    "LinesSettings",
    "PpxfSettings",
    "RedshiftSettings",
    "bpt",
    "comparisons",
    "fit_chunk",
    "fit_galaxy",
    "gather_fits",
    "headline_numbers",
    "headline_summary",
    "indices",
    "lines",
    "quality",
    "redshift",
    "render_markdown",
    "stellar_populations",
]
