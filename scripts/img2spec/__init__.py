"""img2spec: optical galaxy spectra predicted from ugriz images, and the toolbox to measure them."""

__version__ = "0.1.0"
