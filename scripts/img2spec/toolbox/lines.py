"""Emission lines after subtracting a stellar continuum, and the BPT classification.

Hβ, [O III]4959,5007, Hα and [N II]6548,6584 are fitted as Gaussians with one velocity and one
intrinsic σ, the doublets at their atomic ratios (2.98 and 2.94), on the continuum-subtracted
spectrum convolved with the instrument.  EW(Hα) is measured with specutils on the spectrum divided
by the stellar continuum, masked pixels replaced by the fitted lines.  The classes follow Doorenbos,
Sextl et al. (2024), Sect. 5.7 and Figure 12: passive when EW(Hα) < 1 Å or any of the four lines is missing, otherwise star-forming below the
Kauffmann et al. (2003) line and AGN on or above it (composites count as AGN).  The paper calls a
line missing when no emission is left after subtracting the continuum, "independent of any S/N
ratio, which is not available in predicted spectra" (:data:`DETECTION_RULES` ``"positive"``); a
S/N threshold (``"snr"``) is the alternative.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from scipy.optimize import least_squares
from specutils import SpectralRegion, Spectrum
from specutils.analysis import equivalent_width

from ..fitresults import LINE_KEYS
from ..spectral import (
    BPT_LINES,
    DOUBLETS,
    EMISSION_LINES_AIR,
    FWHM_PER_SIGMA,
    PASSIVE_EW_HALPHA,
    bpt_ratios,
)
from ..spectral import bpt_class as classify
from ..units import C_KMS

#: Rest air wavelengths [Å] of the fitted lines; the weaker doublet members are tied to these.
LINES = {name: EMISSION_LINES_AIR[name] for name in BPT_LINES}
TIED = {name: (EMISSION_LINES_AIR[weak], 1 / ratio) for name, (weak, ratio) in DOUBLETS.items()}
#: Half-width [Å] of the Hα window for EW(Hα), clear of [N II] at R = 1500.
EW_HALF_WIDTH = 8.0


def _profiles(wave: np.ndarray, velocity: float, sigma_kms: float, resolving_power: float) -> np.ndarray:
    """Unit-flux Gaussian of each line (with its tied partner) at velocity and intrinsic σ, (n_lines, n_pix)."""
    out = []
    for name, centre in LINES.items():
        total = np.zeros_like(wave)
        for line_centre, ratio in [(centre, 1.0)] + ([TIED[name]] if name in TIED else []):
            mean = line_centre * (1 + velocity / C_KMS)
            sigma = mean * np.hypot(sigma_kms, C_KMS / (resolving_power * FWHM_PER_SIGMA)) / C_KMS
            total += ratio * np.exp(-0.5 * ((wave - mean) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
        out.append(total)
    return np.array(out)


def measure_lines(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, continuum: np.ndarray, resolving_power: float = 1500.0
) -> dict[str, float]:
    """Fluxes of Hβ, [O III]5007, Hα and [N II]6584 and EW(Hα) of a rest-frame spectrum.

    Parameters
    ----------
    wave : ndarray
        Rest-frame air wavelength [Å].
    flux, ivar : ndarray
        f_λ and inverse variance (0: no measurement; the fit leaves such pixels out, and the EW takes
        the fitted lines there).
    continuum : ndarray
        The stellar continuum model on ``wave`` (e.g. the FIREFLY-method best fit).
    resolving_power : float

    Returns
    -------
    dict
        ``flux_<line>`` and ``flux_err_<line>`` [f_λ × Å], ``gas_velocity`` and ``gas_sigma``
        [km/s], ``ew_Halpha`` [Å, positive in emission] (NaN where Hα is outside ``wave``).
    """
    near = np.zeros(wave.size, bool)
    for centre in list(LINES.values()) + [c for c, _ in TIED.values()]:
        near |= np.abs(wave - centre) < 30.0
    use = near & (ivar > 0)
    residual, weight = (flux - continuum)[use], np.sqrt(ivar[use])
    w = wave[use]

    def amplitudes(params):
        design = _profiles(w, *params, resolving_power).T
        coef, *_ = np.linalg.lstsq(design * weight[:, None], residual * weight, rcond=None)
        return design, coef

    def chi(params):
        design, coef = amplitudes(params)
        return (design @ coef - residual) * weight

    result = dict.fromkeys(LINE_KEYS, np.nan)
    if use.sum() < 20:
        return result
    best = min(
        (least_squares(chi, [0.0, s0], bounds=([-500.0, 5.0], [500.0, 500.0])) for s0 in (50.0, 200.0)),
        key=lambda r: r.cost,
    )
    design, coef = amplitudes(best.x)
    covariance = np.linalg.pinv((design * weight[:, None]).T @ (design * weight[:, None]))
    for i, name in enumerate(LINES):
        result[f"flux_{name}"] = float(coef[i])
        result[f"flux_err_{name}"] = float(np.sqrt(covariance[i, i]))
    result["gas_velocity"], result["gas_sigma"] = map(float, best.x)

    window = np.abs(wave - LINES["Halpha"]) < EW_HALF_WIDTH + 5
    if window.sum() > 5 and np.all(continuum[window] > 0):
        # a masked pixel holds no measurement (to_rest_frame interpolates across it, which erases a line on
        # a sky line): the fitted lines stand in for it, so a line's EW does not depend on where the sky falls
        fitted = continuum[window] + coef @ _profiles(wave[window], best.x[0], best.x[1], resolving_power)
        measured = np.where(ivar[window] > 0, flux[window], fitted)
        spectrum = Spectrum(
            flux=(measured / continuum[window]) * u.dimensionless_unscaled, spectral_axis=wave[window] * u.AA
        )
        region = SpectralRegion((LINES["Halpha"] - EW_HALF_WIDTH) * u.AA, (LINES["Halpha"] + EW_HALF_WIDTH) * u.AA)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["ew_Halpha"] = float(-equivalent_width(spectrum, continuum=1.0, regions=region).to_value(u.AA))
    return result


#: When a line counts as present: any emission left after the continuum (the paper), or S/N ≥ ``min_snr``.
DETECTION_RULES = ("positive", "snr")


def lines_measured(
    fluxes: dict[str, np.ndarray], errors: dict[str, np.ndarray], min_snr: float = 3.0, rule: str = "positive"
) -> np.ndarray:
    """True where all four lines are present: a positive flux (``rule="positive"``, the paper's) or,
    with ``rule="snr"``, a positive flux at least ``min_snr`` times its error."""
    if rule not in DETECTION_RULES:
        raise ValueError(f"line detection rule must be one of {DETECTION_RULES}, got {rule!r}")
    measured = []
    for name in LINES:
        f, e = np.asarray(fluxes[name], float), np.asarray(errors[name], float)
        ok = np.isfinite(f) & (f > 0)
        if rule == "snr":
            ok &= np.isfinite(e) & (f >= min_snr * e)
        measured.append(ok)
    return np.logical_and.reduce(measured)


def bpt_class(
    fluxes: dict[str, np.ndarray], ew_halpha: np.ndarray, measured: np.ndarray, min_ew: float = PASSIVE_EW_HALPHA
) -> np.ndarray:
    """Passive / star-forming / AGN class of each galaxy (:func:`img2spec.spectral.bpt_class`, as for the mock's truth).

    Parameters
    ----------
    fluxes : dict of ndarray
        Flux per line name of :data:`LINES`.
    ew_halpha : ndarray
        EW(Hα) [Å], positive in emission.
    measured : ndarray of bool
        Whether all four lines are measured (:func:`lines_measured`).
    min_ew : float
        EW(Hα) [Å] below which a galaxy is passive.
    """
    active = np.asarray(measured, bool) & (np.asarray(ew_halpha, float) >= min_ew)
    return classify(*bpt_ratios(fluxes), active)
