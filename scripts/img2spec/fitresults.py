"""The fit tables' one column schema: what :func:`img2spec.evaluation.fit_chunk` writes and every target reads.

One row per galaxy and kind of spectrum; the columns are :data:`FIT_COLUMNS`, named through
:func:`fit_column` and :func:`line_column` by writer and readers alike, and checked when the
chunks are gathered (:func:`img2spec.evaluation.gather_fits`).
"""

from __future__ import annotations

from .spectral import BPT_LINES

#: Keys of :func:`img2spec.toolbox.lines.measure_lines`' result: flux and error of each BPT line
#: [f_λ × Å], the gas velocity and σ [km/s], EW(Hα) [Å].
LINE_KEYS = (
    *(f"{kind}_{name}" for name in BPT_LINES for kind in ("flux", "flux_err")),
    "gas_velocity",
    "gas_sigma",
    "ew_Halpha",
)

#: Per-galaxy values each fitter contributes to a chunk's table.
PPXF_COLUMNS = ("velocity", "sigma_star", "log_age", "metallicity", "ebv")
FIREFLY_COLUMNS = ("log_age", "metallicity", "ebv")
INDEX_COLUMNS = ("Mg_b", "Fe5270", "Fe5335", "H_beta", "MgFe_prime", "Dn4000")
#: Continua the emission lines are measured against.
LINE_CONTINUA = ("firefly", "ppxf")
#: Columns of a fit table that identify the spectrum and say whether its fit failed.
FIT_ID_COLUMNS = ("specObjID", "kind", "galaxy_zoo", "error")
#: The stellar-population fitters, in the order they run.
FITTERS = ("ppxf", "firefly")


def fit_column(fitter: str, key: str) -> str:
    """Fit-table column of ``fitter``'s (:data:`FITTERS`) result ``key``."""
    if fitter not in FITTERS:
        raise ValueError(f"unknown fitter {fitter!r}; one of {FITTERS}")
    return f"{fitter}_{key}"


def line_column(continuum: str, key: str) -> str:
    """Fit-table column of the emission-line result ``key`` (:data:`~img2spec.toolbox.lines.LINE_KEYS`) against ``continuum``."""
    return f"lines_{continuum}_{key}"


#: Every column of a fit table, in order: the one schema its writer and readers share.
FIT_COLUMNS = (
    *FIT_ID_COLUMNS,
    "z_fit",
    *(fit_column("ppxf", f"{key}{suffix}") for key in PPXF_COLUMNS for suffix in ("", "_err")),
    *(fit_column("ppxf", key) for key in ("chi2_per_pixel", "n_masked", "n_clipped", "seconds")),
    *(fit_column("firefly", f"{key}{suffix}") for key in FIREFLY_COLUMNS for suffix in ("", "_err")),
    *(fit_column("firefly", key) for key in ("chi2_per_pixel", "seconds")),
    *(line_column(continuum, key) for continuum in LINE_CONTINUA for key in LINE_KEYS),
    *INDEX_COLUMNS,
)
