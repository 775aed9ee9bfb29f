"""The spectroscopic toolbox, for predicted and observed spectra alike.

Each public function takes one spectrum as observed-frame vacuum wavelength [Å], flux density, its
inverse variance and the redshift, and returns a plain dict.
"""

from .firefly import fit_firefly
from .indices import measure_indices
from .redshift import build_basis, measure_redshift
from .spectra import prepare_templates, to_rest_frame
from .stellar import fit_ppxf

__all__ = [
    "build_basis",
    "fit_firefly",
    "fit_ppxf",
    "measure_indices",
    "measure_redshift",
    "prepare_templates",
    "to_rest_frame",
]
