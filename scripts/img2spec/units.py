"""Physical constants and unit conversions used across img2spec."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

C_KMS = 299792.458
C_ANGSTROM_PER_S = 2.99792458e18
L_SUN_ERG_S = 3.828e33
MPC_CM = 3.0856775814913673e24
#: SDSS spectra are in units of 1e-17 erg s⁻¹ cm⁻² Å⁻¹.
SDSS_FLUX_UNIT = 1e-17
#: AB zero point [erg s⁻¹ cm⁻² Hz⁻¹]: 3631 Jy.
AB_ZERO_POINT_FNU = 3631e-23
G_KPC_KMS2_PER_MSUN = 4.30091e-6


def air_to_vacuum(wave_air: ArrayLike) -> np.ndarray:
    """Vacuum wavelength [Å] of air wavelength [Å] (Ciddor 1996, as in the SDSS idlutils ``airtovac``)."""
    wave_air = np.asarray(wave_air, dtype=np.float64)
    sigma2 = (1e4 / wave_air) ** 2
    factor = 1.0 + 5.792105e-2 / (238.0185 - sigma2) + 1.67917e-3 / (57.362 - sigma2)
    return wave_air * factor


def vacuum_to_air(wave_vacuum: ArrayLike) -> np.ndarray:
    """Air wavelength [Å] of vacuum wavelength [Å]: :func:`air_to_vacuum` inverted by iteration."""
    wave_vacuum = np.asarray(wave_vacuum, dtype=np.float64)
    wave_air = wave_vacuum.copy()
    for _ in range(4):
        wave_air = wave_vacuum / (air_to_vacuum(wave_air) / wave_air)
    return wave_air
