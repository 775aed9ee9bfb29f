"""Prediction files (``results/predictions/<name>.h5``): the one owner of their layout.

:class:`PredictionWriter` writes them (:func:`img2spec.inference.predict_dataset` and
``predict_cube_file``), :class:`PredictionFile` reads them; nothing else names their datasets;
:func:`write_prediction_fits` writes one prediction as a FITS table for other tools.
Per galaxy, in the order of ``specobjid``: ``flux`` (N, 4500), the selected candidate, natural log of
flux normalised to mean 1 in 6900–6950 Å, observed frame; ``flux_contrastive_best`` (N, 4500), the
candidate contrastive_sr alone scores best (the paper's selection; older files lack it); ``flux_p{p}`` (:func:`band_key`), the
per-pixel percentiles of the pooled candidates (``flux_p50``, :data:`MEDIAN`, their median);
``flux_lowres`` (N, 563); ``flux_drawn`` (N, L), the selected candidate as the networks drew it
(grid ``wave_drawn``); ``z``, the redshift the spectra are placed at (NaN for observed-frame
networks); the networks' scores and choices and the out-of-distribution score and flag.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import h5py
import numpy as np
from astropy.io import fits

from .io import InputError, ReadOnlyH5, atomic_output
from .preprocessing import FLUX_UNIT

if TYPE_CHECKING:
    from .inference import InferenceSettings, SpectrumGrids

SPECOBJID = "specobjid"
FLUX = "flux"
FLUX_LOWRES = "flux_lowres"
FLUX_DRAWN = "flux_drawn"
FLUX_CONTRASTIVE_BEST = "flux_contrastive_best"
REDSHIFT = "z"
WAVE = "wave"
WAVE_LOWRES = "wave_lowres"
WAVE_DRAWN = "wave_drawn"
_BAND_PREFIX = "flux_p"


def band_key(percentile: float) -> str:
    """Name of the band at ``percentile`` (per cent), e.g. ``flux_p16``."""
    return f"{_BAND_PREFIX}{percentile:g}"


#: The candidates' per-pixel median.
MEDIAN = band_key(50)


class PredictionWriter:
    """Writes a prediction file (HDF5) batch by batch.

    The file appears under its name only when the ``with`` block ends without an error
    (:func:`img2spec.io.atomic_output`); each :meth:`append` adds galaxies to every dataset, so a cube
    file of any size is predicted in bounded memory.
    """

    def __init__(self, path: str | Path, grids: SpectrumGrids, settings: InferenceSettings, band_factor: float) -> None:
        self.path, self.grids, self.settings, self.band_factor = Path(path), grids, settings, band_factor
        self.n_written = 0
        self._stack = ExitStack()
        self._h5: h5py.File | None = None

    def __enter__(self) -> Self:
        tmp = self._stack.enter_context(atomic_output(self.path))
        h5 = self._h5 = self._stack.enter_context(h5py.File(tmp, "w"))
        h5.create_dataset(SPECOBJID, (0,), np.int64, maxshape=(None,), chunks=(1024,))
        h5[WAVE] = self.grids.wave
        h5[WAVE_LOWRES] = self.grids.wave_lowres
        h5[WAVE_DRAWN] = self.grids.network_wave
        h5.attrs.update({k: v for k, v in vars(self.settings).items() if not isinstance(v, tuple)})
        h5.attrs["percentiles"] = self.settings.percentiles
        h5.attrs["band_scale"] = self.band_factor
        h5.attrs["flux_unit"] = FLUX_UNIT
        h5.attrs["frame_drawn"] = self.grids.frame
        return self

    def append(self, ids: np.ndarray, result: dict[str, np.ndarray]) -> None:
        """Add galaxies ``ids`` with their arrays ``result`` (each of leading length ``len(ids)``)."""
        assert self._h5 is not None, "PredictionWriter.append outside its with block"
        h5, n, stop = self._h5, len(ids), self.n_written + len(ids)
        for key, value in {SPECOBJID: np.asarray(ids, np.int64), **result}.items():
            if key not in h5:
                h5.create_dataset(
                    key, (0, *value.shape[1:]), value.dtype, maxshape=(None, *value.shape[1:]), chunks=True
                )
            h5[key].resize(stop, axis=0)
            h5[key][self.n_written : stop] = value
        self.n_written += n

    def h5_attrs(self, **values: float) -> None:
        """Set file attributes (e.g. the outlier threshold)."""
        assert self._h5 is not None, "PredictionWriter.h5_attrs outside its with block"
        self._h5.attrs.update(values)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stack.__exit__(kind, error, trace)


class PredictionFile(ReadOnlyH5):
    """Read access to a prediction file written by :class:`PredictionWriter`.

    Per-galaxy arrays are read for a range ``start:stop`` of galaxies (all by default).  Use as a
    context manager: ``with PredictionFile(path) as predictions: flux = predictions.flux()``.
    """

    kind = "prediction"

    def _check(self) -> None:
        missing = [key for key in (SPECOBJID, FLUX) if key not in self.h5]
        if missing:
            raise InputError(f"{self.path}: not a prediction file (no {', '.join(missing)})")

    def specobjid(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.h5[SPECOBJID][start:stop]

    def flux(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The selected candidates (N, 4500), natural log of normalised flux, observed frame."""
        return self.h5[FLUX][start:stop]

    def contrastive_best(self, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        """The candidates contrastive_sr alone scores best (N, 4500), the paper's selection; None in older files."""
        return self.h5[FLUX_CONTRASTIVE_BEST][start:stop] if FLUX_CONTRASTIVE_BEST in self.h5 else None

    def lowres(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The selected low-resolution candidates (N, 563), natural log, observed frame."""
        return self.h5[FLUX_LOWRES][start:stop]

    def drawn(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The selected candidates as the networks drew them (N, L), on :attr:`wave_drawn`, in their frame."""
        return self.h5[FLUX_DRAWN][start:stop]

    @property
    def wave_drawn(self) -> np.ndarray:
        """Wavelength grid [Å] of :meth:`drawn`, in the networks' frame."""
        return self.h5[WAVE_DRAWN][()]

    @property
    def percentiles(self) -> list[float]:
        """Percentiles [%] of the bands the file holds, ascending."""
        return sorted(float(key.removeprefix(_BAND_PREFIX)) for key in self.h5 if key.startswith(_BAND_PREFIX))

    def band(self, percentile: float, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The candidates' per-pixel ``percentile`` (N, 4500), natural log."""
        return self.h5[band_key(percentile)][start:stop]

    def median(self, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        """The candidates' per-pixel median, None when the file holds no 50th percentile."""
        return self.h5[MEDIAN][start:stop] if MEDIAN in self.h5 else None

    def redshift(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The redshift each spectrum is placed at; NaN where none (observed-frame networks, older files)."""
        if REDSHIFT in self.h5:
            return self.h5[REDSHIFT][start:stop]
        return np.full(len(self.h5[SPECOBJID][start:stop]), np.nan)


def write_prediction_fits(
    path: str | Path,
    specobjid: int,
    wave: np.ndarray,
    flux_ln: np.ndarray,
    others: dict[str, np.ndarray],
    meta: dict | None = None,
) -> None:
    """One predicted spectrum as a FITS binary table readable by any spectroscopic tool.

    Columns: ``WAVELENGTH`` [Å, vacuum, observed frame], ``FLUX`` (normalised to mean 1 in
    6900–6950 Å, linear), and one column per spectrum of ``others`` (natural log, e.g. ``flux_p16``,
    ``flux_contrastive_best``), named in upper case (``FLUX_P16``).
    """
    columns = [
        fits.Column("WAVELENGTH", "D", unit="Angstrom", array=wave),
        fits.Column("FLUX", "E", unit="normalised", array=np.exp(flux_ln)),
    ]
    for name, values in others.items():
        columns.append(fits.Column(name.upper(), "E", unit="normalised", array=np.exp(values)))
    table = fits.BinTableHDU.from_columns(columns, name="PREDICTION")
    header = fits.Header()
    header["SPECOBJ"] = (str(int(specobjid)), "specObjID of the galaxy")
    header["CREATOR"] = "img2spec"
    for key, value in (meta or {}).items():
        header[key[:8].upper()] = value
    with atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(tmp)
