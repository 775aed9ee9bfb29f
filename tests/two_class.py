"""A synthetic dataset.h5 of two galaxy classes whose spectra are a known function of their colours.

Red galaxies (bright in i and z) have a continuum rising to the red with a 4000 Å break; blue ones
(bright in u and g) a falling continuum with strong Hα (or, :func:`narrow_line_spectrum`, red ones a
plain continuum and blue ones one narrow emission line). Within a class the colour and the continuum
slope vary together, so the spectrum is a smooth function of colour that photometry alone can
recover.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from img2spec.dataset import LAYOUT_VERSION, SPLITS, write_rest_frame
from img2spec.preprocessing import PreprocessingSettings, lowres_bin_means

BAND_WEIGHTS = {"red": np.array([0.2, 0.5, 1.0, 1.4, 1.7]), "blue": np.array([1.2, 1.3, 1.0, 0.9, 0.8])}


def class_spectrum(kind: str, tilt: float, wave: np.ndarray) -> np.ndarray:
    """Natural-log normalised flux of a class member; ``tilt`` in [−1, 1] moves slope and colour together."""
    x = (wave - 6925.0) / 2250.0
    if kind == "red":
        linear = np.exp((0.6 + 0.25 * tilt) * x) * np.where(wave < 4500, 0.7, 1.0)
    else:
        linear = np.exp((-0.3 + 0.25 * tilt) * x) * (1 + 2.0 * np.exp(-0.5 * ((wave - 6620) / 4) ** 2))
    return np.log(linear / linear[(wave >= 6900) & (wave <= 6950)].mean())


#: The narrow line of :func:`narrow_line_spectrum`: rest wavelength, EW and Gaussian σ [Å] (R ≈ 1500 at Hα).
LINE_REST, LINE_EW, LINE_SIGMA = 6564.6, 10.0, 1.9


def narrow_line_spectrum(kind: str, tilt: float, wave: np.ndarray, line: bool | None = None) -> np.ndarray:
    """Like :func:`class_spectrum` without the 4000 Å break and the broad line: a blue galaxy has one narrow
    emission line (``LINE_EW`` Å at ``LINE_REST``, unresolved at R ≈ 1500), a red one none; ``line``
    overrides which."""
    x = (wave - 6925.0) / 2250.0
    slope = 0.6 + 0.25 * tilt if kind == "red" else -0.3 + 0.25 * tilt
    linear = np.exp(slope * x)
    if kind == "blue" if line is None else line:
        profile = np.exp(-0.5 * ((wave - LINE_REST) / LINE_SIGMA) ** 2) / (LINE_SIGMA * np.sqrt(2 * np.pi))
        linear = linear * (1 + LINE_EW * profile)
    return np.log(linear / linear[(wave >= 6900) & (wave <= 6950)].mean())


#: Fraction of the blue galaxies with the line in :func:`hidden_line_spectrum`.
HIDDEN_LINE_FRACTION = 0.3


def hidden_line_spectrum(kind: str, tilt: float, wave: np.ndarray) -> np.ndarray:
    """:func:`narrow_line_spectrum`, the line in only a fraction ``HIDDEN_LINE_FRACTION`` of the blue
    galaxies, chosen by the thousandths of ``tilt``: a line the image cannot tell, like [O III] in a
    galaxy whose image leaves it star-forming or AGN."""
    return narrow_line_spectrum(
        kind, tilt, wave, line=kind == "blue" and (1000 * (tilt + 1)) % 1 < HIDDEN_LINE_FRACTION
    )


def write_two_class_dataset(
    path: str | Path,
    n_train: int = 96,
    n_val: int = 16,
    n_test: int = 16,
    seed: int = 0,
    redshifted: bool = False,
    spectrum_of=class_spectrum,
    noise: float = 0.0,
) -> dict:
    """Write the dataset; returns the class ("red"/"blue"), tilt and redshift of every row.

    Redshifts are drawn uniformly in 0.05–0.15, independent of the images.  With ``redshifted``
    the class spectra (``spectrum_of(kind, tilt, wave)``, ln flux) are rest-frame spectra seen at
    that redshift (renormalised in the observed window); otherwise the same observed spectrum
    whatever the redshift.  ``noise``: Gaussian σ of ln flux per pixel, with the matching ivar.
    """
    rng = np.random.default_rng(seed)
    settings = PreprocessingSettings.defaults()
    wave, wave_lowres = settings.wave, settings.wave_lowres
    n = n_train + n_val + n_test
    kinds = np.where(np.arange(n) % 2 == 0, "red", "blue")
    tilts = rng.uniform(-1, 1, n)
    redshifts = rng.uniform(0.05, 0.15, n)
    window = (wave >= 6900) & (wave <= 6950)
    yy, xx = np.mgrid[:64, :64] - 31.5
    profile = np.exp(-0.5 * (yy**2 + xx**2) / 5.0**2)
    images = np.empty((n, 5, 64, 64), np.float32)
    flux = np.empty((n, wave.size), np.float32)
    for i, (kind, tilt) in enumerate(zip(kinds, tilts)):
        colour = BAND_WEIGHTS[kind] * np.exp(0.3 * tilt * np.linspace(-1, 1, 5))
        images[i] = colour[:, None, None] * profile[None] + rng.normal(0, 0.02, (5, 64, 64))
        spectrum = spectrum_of(kind, tilt, wave / (1 + redshifts[i]) if redshifted else wave)
        spectrum = spectrum + rng.normal(0.0, noise, wave.size) if noise > 0 else spectrum
        flux[i] = spectrum - np.log(np.exp(spectrum[window]).mean())
    lowres = np.log(lowres_bin_means(np.exp(flux.astype(np.float64)), settings.lowres_factor)).astype(np.float32)
    split = np.repeat([SPLITS["train"], SPLITS["val"], SPLITS["test"]], [n_train, n_val, n_test])
    with h5py.File(path, "w") as h5:
        h5["specobjid"] = np.arange(1, n + 1, dtype=np.int64)
        h5["split"] = split.astype(np.int8)
        h5["wave"], h5["wave_lowres"] = wave, wave_lowres
        h5["flux"], h5["flux_lowres"] = flux, lowres
        h5["mask"] = np.zeros(flux.shape, bool)
        h5["mask_lowres"] = np.zeros((n, wave_lowres.size), bool)
        h5["ivar"] = (1.0 / (noise * np.exp(flux)) ** 2 if noise > 0 else np.full(flux.shape, 1e4)).astype(np.float32)
        h5["images"] = images
        train = images[split == SPLITS["train"]]
        h5["images"].attrs["train_mean"] = train.mean(axis=(0, 2, 3))
        h5["images"].attrs["train_std"] = train.std(axis=(0, 2, 3))
        h5["z_spec"] = redshifts
        for key, value in vars(settings).items():
            h5.attrs[f"preprocessing_{key}"] = value
        write_rest_frame(h5, split, vars(settings), log=lambda message: None)
        h5.attrs["layout_version"] = LAYOUT_VERSION
    return {"kind": kinds, "tilt": tilts, "split": split, "z": redshifts}
