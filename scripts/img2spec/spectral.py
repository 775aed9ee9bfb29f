"""Spectral constants shared by the mock survey, the toolbox and the plots.

One owner for: the Gaussian FWHM/σ factor, the SDSS pixel, the emission-line table (air and vacuum rest
wavelengths under one set of names), and the BPT [N II] diagram: its demarcation lines and the
passive / star-forming / AGN rule that labels both the mock's truth and the measured spectra
(Sect. 5.7 of the paper).  Nothing here imports another img2spec module but :mod:`img2spec.units`.
"""

from __future__ import annotations

import numpy as np

from .units import C_KMS, air_to_vacuum

#: FWHM of a Gaussian in units of its σ, 2√(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: SDSS coadd pixel size in log10 wavelength.
LOG10_STEP = 1e-4
#: Velocity width of one SDSS pixel [km/s] (≈69 km/s).
PIXEL_KMS = C_KMS * np.log(10.0) * LOG10_STEP

#: Emission lines: name → rest wavelength in air [Å] (SDSS line list).
EMISSION_LINES_AIR = {
    "OII_3726": 3726.03,
    "OII_3729": 3728.82,
    "NeIII_3869": 3868.76,
    "Hdelta": 4101.74,
    "Hgamma": 4340.47,
    "Hbeta": 4861.33,
    "OIII_4959": 4958.92,
    "OIII_5007": 5006.84,
    "HeI_5876": 5875.67,
    "OI_6300": 6300.30,
    "NII_6548": 6548.03,
    "Halpha": 6562.80,
    "NII_6584": 6583.41,
    "SII_6717": 6716.47,
    "SII_6731": 6730.85,
}
#: The same lines' vacuum rest wavelengths [Å] (the SDSS spectra's frame).
EMISSION_LINES_VACUUM = {name: float(air_to_vacuum(wave)) for name, wave in EMISSION_LINES_AIR.items()}

#: Doublets at their atomic flux ratios: the stronger line → (the weaker one, strong/weak flux ratio).
DOUBLETS = {"OIII_5007": ("OIII_4959", 2.98), "NII_6584": ("NII_6548", 2.94)}

#: The four lines of the BPT [N II] diagram.
BPT_LINES = ("Hbeta", "OIII_5007", "Halpha", "NII_6584")
#: Classes of :func:`bpt_class`.
BPT_CLASSES = ("passive", "star-forming", "AGN")
#: EW(Hα) [Å, emission positive] below which a galaxy is passive (Sect. 5.7).
PASSIVE_EW_HALPHA = 1.0


def kauffmann03(log_nii_ha: np.ndarray) -> np.ndarray:
    """Kauffmann et al. (2003) SF/AGN demarcation, log [O III]/Hβ as a function of log [N II]/Hα."""
    return 0.61 / (np.asarray(log_nii_ha) - 0.05) + 1.3


def kewley01(log_nii_ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2001) maximum-starburst line, log [O III]/Hβ versus log [N II]/Hα."""
    return 0.61 / (np.asarray(log_nii_ha) - 0.47) + 1.19


def schawinski07(log_nii_ha: np.ndarray) -> np.ndarray:
    """Schawinski et al. (2007) Seyfert/LINER line in the [N II] diagram."""
    return 1.05 * np.asarray(log_nii_ha) + 0.45


def kewley01_sii(log_sii_ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2001) maximum-starburst line, log [O III]/Hβ versus log [S II]6717+6731/Hα."""
    return 0.72 / (np.asarray(log_sii_ha) - 0.32) + 1.30


def kewley01_oi(log_oi_ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2001) maximum-starburst line, log [O III]/Hβ versus log [O I]6300/Hα."""
    return 0.73 / (np.asarray(log_oi_ha) + 0.59) + 1.33


def kewley06_sii(log_sii_ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2006) Seyfert/LINER line in the [S II] diagram (Seyferts above)."""
    return 1.89 * np.asarray(log_sii_ha) + 0.76


def kewley06_oi(log_oi_ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2006) Seyfert/LINER line in the [O I] diagram (Seyferts above)."""
    return 1.18 * np.asarray(log_oi_ha) + 1.30


def bpt_ratios(fluxes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """log [N II] 6584/Hα and log [O III] 5007/Hβ of line fluxes named as in :data:`BPT_LINES` (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log10(np.asarray(fluxes["NII_6584"], float) / np.asarray(fluxes["Halpha"], float))
        y = np.log10(np.asarray(fluxes["OIII_5007"], float) / np.asarray(fluxes["Hbeta"], float))
    return x, y


def bpt_class(log_nii_ha: np.ndarray, log_oiii_hb: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Passive / star-forming / AGN: passive where not ``active``, star-forming below Kauffmann et al. (2003), else AGN.

    ``active`` is where EW(Hα) ≥ :data:`PASSIVE_EW_HALPHA` and the four lines are there; a galaxy
    right of the curve's asymptote (log [N II]/Hα ≥ 0.05) is an AGN.
    """
    x, y = np.asarray(log_nii_ha, float), np.asarray(log_oiii_hb, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        agn = (x >= 0.05) | (y >= kauffmann03(x))
    return np.where(~np.asarray(active, bool), "passive", np.where(agn, "AGN", "star-forming"))


def composite_or_agn(log_nii_ha: np.ndarray, log_oiii_hb: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """:func:`bpt_class` with its AGN split into composites (below Kewley et al. 2001) and AGN."""
    x, y = np.asarray(log_nii_ha, float), np.asarray(log_oiii_hb, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        composite = (x < 0.47) & (y < kewley01(x))
    return np.where(classes == "AGN", np.where(composite, "composite", "AGN"), classes)
