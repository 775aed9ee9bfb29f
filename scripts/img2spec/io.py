"""File formats: SDSS spectra, the survey's catalog columns, atomic output writing and the HDF5 readers' base.

Spectra follow the SDSS ``spec``/``spec-lite`` layout (HDU ``COADD`` with ``flux`` [1e-17 erg/s/cm²/Å],
``loglam`` [log10 Å, vacuum], ``ivar``, ``and_mask``; HDU ``SPECOBJ`` with the pipeline's
measurements).  Image-cube files are :mod:`img2spec.cubes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

import h5py
import numpy as np
from astropy.io import fits

from .dag import SURVEY_FILES

#: Band order of every cube handled by img2spec.
BANDS = ("u", "g", "r", "i", "z")
#: Columns of a sample catalog, in order: those of the paper's Appendix B query
#: (``resources/sql/sample.sql``), then what img2spec adds (plate, mjd, fiberID name the spec-lite
#: file; petroMag_r is the cut that stands in for the paper's private object list).  The mock
#: survey writes exactly these.
SAMPLE_COLUMNS = (
    "specObjID",
    "objID",
    "ra",
    "dec",
    "firstRelease",
    "programname",
    "instrument",
    "run2d",
    "z",
    "zErr",
    "velDisp",
    "velDispErr",
    *(f"petroRad_{b}" for b in BANDS),
    *(f"petroR90_{b}" for b in BANDS),
    *(f"fiberMag_{b}" for b in BANDS),
    "extinction_r",
    "plateSN2",
    *(f"modelMag_{b}" for b in BANDS),
    *(f"cModelMag_{b}" for b in BANDS),
    "p_mg",
    "p_el_debiased",
    "p_cs_debiased",
    "spiral",
    "elliptical",
    "uncertain",
    "logMass_Maraston09",
    "logMass_ConroyDust",
    "logMass_ConroyNoDust",
    "plate",
    "mjd",
    "fiberID",
    "petroMag_r",
)
#: Columns the query adds for building cubes from SDSS frames (``sdss.cubes.source: frames``); the mock has no frames.
FRAME_COLUMNS = ("run", "rerun", "camcol", "field")

#: SDSS spectral pixel-mask bit that marks pixels without data.
NODATA_BIT = 1 << 24


class InputError(ValueError):
    """A file or object cannot be used; the message names it and says why."""


class Spectrum(NamedTuple):
    """One SDSS spectrum as read from disk.

    Attributes
    ----------
    wave : ndarray
        Vacuum wavelength of each pixel [Å].
    flux : ndarray
        Flux density [1e-17 erg s⁻¹ cm⁻² Å⁻¹].
    ivar : ndarray
        Inverse variance of ``flux`` [(1e-17 erg s⁻¹ cm⁻² Å⁻¹)⁻²].
    bad : ndarray of bool
        True where the pixel carries no usable measurement (ivar ≤ 0, non-finite values, or
        ``and_mask`` bits in ``bad_bits``).
    meta : dict
        ``specobjid`` (int), ``z``, ``z_err``, ``vdisp`` [km/s], ``vdisp_err``, ``class``, ``plate``,
        ``mjd``, ``fiberid``, ``ra``, ``dec`` where the file has them.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    bad: np.ndarray
    meta: dict[str, Any]


_SPECOBJ_COLUMNS = {
    "specobjid": "SPECOBJID",
    "z": "Z",
    "z_err": "Z_ERR",
    "vdisp": "VDISP",
    "vdisp_err": "VDISP_ERR",
    "class": "CLASS",
    "subclass": "SUBCLASS",
    "plate": "PLATE",
    "mjd": "MJD",
    "fiberid": "FIBERID",
    "ra": "PLUG_RA",
    "dec": "PLUG_DEC",
}


def _scalar(value: Any) -> Any:
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


_TFORM_DTYPES = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def _table_rows(path: Path, hdu: fits.BinTableHDU) -> np.ndarray:
    """The rows of a fixed-width binary table, read straight from the file as a numpy record array.

    astropy builds a Column object per field on first access, which dominates reading SDSS files
    (126 SPECOBJ columns); a dtype from the TFORM keywords reads the same bytes far faster.
    """
    header = hdu.header
    fields: list[tuple[str, str] | tuple[str, str, tuple[int]]] = []
    for i in range(1, header["TFIELDS"] + 1):
        match = re.fullmatch(r"(\d*)([A-Z])", str(header[f"TFORM{i}"]).strip())
        if not match or (match.group(2) != "A" and match.group(2) not in _TFORM_DTYPES):
            raise InputError(f"{path}: unsupported column format {header[f'TFORM{i}']!r} in {hdu.name}")
        count, code = int(match.group(1) or 1), match.group(2)
        if code == "A":
            fields.append((header[f"TTYPE{i}"], f"S{count}"))
        else:
            fields.append(
                (header[f"TTYPE{i}"], _TFORM_DTYPES[code], (count,))
                if count > 1
                else (header[f"TTYPE{i}"], _TFORM_DTYPES[code])
            )
    dtype = np.dtype(fields)
    if dtype.itemsize != header["NAXIS1"]:
        raise InputError(f"{path}: {hdu.name} rows are {header['NAXIS1']} bytes, columns add up to {dtype.itemsize}")
    info = hdu.fileinfo()
    with open(path, "rb") as fh:
        fh.seek(info["datLoc"])
        raw = fh.read(header["NAXIS1"] * header["NAXIS2"])
    if len(raw) < header["NAXIS1"] * header["NAXIS2"]:
        raise InputError(f"{path}: truncated in {hdu.name}")
    return np.frombuffer(raw, dtype=dtype, count=header["NAXIS2"])


def _named_hdu(hdul: fits.HDUList, index: int, name: str, path: Path):
    """HDU ``name``, looked for first at the index SDSS files use: touching only the HDUs needed
    keeps astropy from parsing the per-exposure HDUs of full spec files."""
    try:
        if hdul[index].name.upper() == name:
            return hdul[index]
    except IndexError:
        pass
    names = [hdu.name.upper() for hdu in hdul]
    if name not in names:
        raise InputError(f"{path}: no {name} HDU (found {names})")
    return hdul[name]


def read_sdss_spectrum(path: str | os.PathLike, bad_bits: int = 0xFFFFFFFF, flux_column: str = "flux") -> Spectrum:
    """Read an SDSS ``spec`` or ``spec-lite`` FITS file.

    Parameters
    ----------
    path : path-like
        The FITS file.
    bad_bits : int
        ``and_mask`` bits that make a pixel bad (default: any bit).
    flux_column : str
        COADD column read as the flux: ``flux``, or ``model`` (the SDSS pipeline's best fit; in the
        mock survey the noiseless spectrum).  ``ivar`` and the bad-pixel mask are the observation's.

    Returns
    -------
    Spectrum
        Wavelength [Å, vacuum], flux [1e-17 erg/s/cm²/Å], ivar, bad-pixel mask and metadata.

    Raises
    ------
    InputError
        If the file is missing, not FITS, truncated, lacks the COADD or SPECOBJ HDU or their
        columns, or has no usable pixel.  The message starts with the file name.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # astropy only warns about a short file; for us it is corrupt input
            warnings.filterwarnings("error", message="(?s).*(truncated|corrupted).*")
            with fits.open(path, memmap=False) as hdul:
                last = hdul[len(hdul) - 1].fileinfo()
                if last["datLoc"] + last["datSpan"] > path.stat().st_size:
                    raise InputError(f"{path}: truncated or corrupt FITS (file ends before its last HDU)")
                coadd = _table_rows(path, _named_hdu(hdul, 1, "COADD", path))
                specobj = _table_rows(path, _named_hdu(hdul, 2, "SPECOBJ", path))
                columns = {c.lower(): c for c in coadd.dtype.names or ()}
                missing = [c for c in (flux_column, "loglam", "ivar") if c not in columns]
                if missing:
                    raise InputError(f"{path}: COADD lacks column(s) {missing}")
                loglam = np.asarray(coadd[columns["loglam"]], dtype=np.float64)
                flux = np.asarray(coadd[columns[flux_column]], dtype=np.float64)
                ivar = np.asarray(coadd[columns["ivar"]], dtype=np.float64)
                and_mask = (
                    np.asarray(coadd[columns["and_mask"]], dtype=np.int64)
                    if "and_mask" in columns
                    else np.zeros(loglam.size, np.int64)
                )
                spec_columns = {c.upper(): c for c in specobj.dtype.names or ()}
                meta = {
                    key: _scalar(specobj[spec_columns[col]][0])
                    for key, col in _SPECOBJ_COLUMNS.items()
                    if col in spec_columns
                }
    except InputError:
        raise
    except FileNotFoundError as err:
        raise InputError(f"{path}: file not found") from err
    except (OSError, TypeError, ValueError, IndexError, KeyError, UserWarning) as err:
        raise InputError(f"{path}: unreadable or corrupt FITS ({err})") from err

    if "specobjid" not in meta:
        raise InputError(f"{path}: SPECOBJ has no SPECOBJID")
    try:
        meta["specobjid"] = int(meta["specobjid"])
    except ValueError as err:
        raise InputError(f"{path}: SPECOBJID {meta['specobjid']!r} is not an integer") from err
    if loglam.size < 2 or np.any(~np.isfinite(loglam)) or np.any(np.diff(loglam) <= 0):
        raise InputError(f"{path}: loglam is not a finite increasing grid")
    bad = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar <= 0) | ((and_mask & bad_bits) != 0)
    if bad.all():
        raise InputError(f"{path}: every pixel is bad (ivar = 0, masked or non-finite)")
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ivar = np.where(bad, 0.0, ivar)
    return Spectrum(10.0**loglam, flux, ivar, bad, meta)


_COADD_DTYPE = [
    ("flux", ">f4"),
    ("loglam", ">f4"),
    ("ivar", ">f4"),
    ("and_mask", ">i4"),
    ("or_mask", ">i4"),
    ("wdisp", ">f4"),
    ("sky", ">f4"),
    ("model", ">f4"),
]


class SpecLiteWriter:
    """Writes many spectra in the SDSS spec-lite layout (primary, COADD, SPECOBJ).

    Building FITS tables dominates the cost of writing small files, so the HDU list is built
    once per pixel count and SPECOBJ layout and refilled for every spectrum.  Strings in SPECOBJ
    are stored in 24-character columns.
    """

    def __init__(self) -> None:
        self._hdul: fits.HDUList | None = None
        self._key: tuple | None = None

    @staticmethod
    def _specobj_dtype(specobj: dict[str, Any]) -> list[tuple[str, str]]:
        dtype = []
        for key, value in specobj.items():
            if isinstance(value, str):
                dtype.append((key, "S24"))
            elif isinstance(value, (int, np.integer)):
                dtype.append((key, ">i8"))
            else:
                dtype.append((key, ">f8"))
        return dtype

    def write(
        self,
        path: str | os.PathLike,
        loglam: np.ndarray,
        flux: np.ndarray,
        ivar: np.ndarray,
        and_mask: np.ndarray,
        specobj: dict[str, Any],
        sky: np.ndarray | None = None,
        model: np.ndarray | None = None,
        wdisp: np.ndarray | None = None,
    ) -> None:
        """Write one spectrum atomically.

        Parameters
        ----------
        loglam : ndarray
            log10 of vacuum wavelength [log10 Å].
        flux, ivar : ndarray
            Flux density [1e-17 erg/s/cm²/Å] and its inverse variance.
        and_mask : ndarray of int
            SDSS pixel mask.
        specobj : dict
            SPECOBJ columns (upper-case SDSS names, e.g. ``SPECOBJID``, ``Z``, ``VDISP``, ``CLASS``).
        sky, model, wdisp : ndarray, optional
            Sky flux, best model and dispersion [pixels of 1e-4 in log10 λ]; zeros when omitted.
        """
        spec_dtype = self._specobj_dtype(specobj)
        key = (loglam.size, tuple(spec_dtype))
        if self._hdul is None or self._key != key:
            coadd = fits.BinTableHDU(data=np.zeros(loglam.size, dtype=_COADD_DTYPE), name="COADD")
            row = fits.BinTableHDU(data=np.zeros(1, dtype=spec_dtype), name="SPECOBJ")
            self._hdul, self._key = fits.HDUList([fits.PrimaryHDU(), coadd, row]), key
        primary, coadd, row = self._hdul
        data = coadd.data
        data["flux"], data["loglam"], data["ivar"] = flux, loglam, ivar
        data["and_mask"] = and_mask
        data["or_mask"] = and_mask
        for column, values in (("wdisp", wdisp), ("sky", sky), ("model", model)):
            data[column] = 0.0 if values is None else values
        for name, value in specobj.items():
            row.data[name][0] = value
        for name in ("PLATE", "MJD", "FIBERID"):
            if name in specobj:
                primary.header["PLATEID" if name == "PLATE" else name] = int(specobj[name])
        with atomic_output(path) as tmp:
            self._hdul.writeto(tmp)


def write_spec_lite(path: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
    """Write one spectrum in the spec-lite layout; see :meth:`SpecLiteWriter.write`."""
    SpecLiteWriter().write(path, *args, **kwargs)


@dataclass(frozen=True)
class SurveyFiles:
    """Where a survey's products are: its catalog (CSV), spec-lite FITS folder, image-cube file and (mock) truth.

    The workflow's rules declare these paths; :meth:`in_folder` gives the layout they use
    (:data:`img2spec.dag.SURVEY_FILES`).
    """

    catalog: Path
    spectra: Path
    cubes: Path
    truth: Path

    @classmethod
    def in_folder(cls, folder: str | os.PathLike) -> SurveyFiles:
        return cls(**{name: Path(folder) / file_name for name, file_name in SURVEY_FILES.items()})


def spectrum_path(root: str | os.PathLike, plate: int, mjd: int, fiberid: int) -> Path:
    """Path of a spec-lite file below ``root`` in the SAS layout ``PPPP/spec-PPPP-MMMMM-FFFF.fits``."""
    plate, mjd, fiberid = int(plate), int(mjd), int(fiberid)
    return Path(root) / f"{plate:04d}" / f"spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits"


def encode_specobjid(plate: int, fiberid: int, mjd: int, run2d: int = 26) -> int:
    """SDSS specObjID bit encoding (DR8+): plate≪50 | fiber≪38 | (mjd−50000)≪24 | run2d≪10."""
    return (int(plate) << 50) | (int(fiberid) << 38) | ((int(mjd) - 50000) << 24) | (int(run2d) << 10)


def decode_specobjid(specobjid: int) -> dict[str, int]:
    """Inverse of :func:`encode_specobjid` for integer run2d values."""
    s = int(specobjid)
    return {
        "plate": s >> 50,
        "fiberid": (s >> 38) & 0xFFF,
        "mjd": ((s >> 24) & 0x3FFF) + 50000,
        "run2d": (s >> 10) & 0x3FFF,
    }


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(value: Any, path: str | os.PathLike) -> None:
    """``value`` as indented JSON at ``path``, written atomically (:func:`atomic_output`); numpy scalars as floats."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=2, default=float))


class ReadOnlyH5:
    """Base of the owners of img2spec's HDF5 files: opens ``path`` read-only, closes with the ``with`` block.

    ``kind`` names the file in errors; a subclass checks its layout in :meth:`_check`, raising
    :class:`InputError` (the file is closed then).
    """

    kind = "HDF5"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise InputError(f"{self.path}: not a readable {self.kind} file ({err})") from None
        try:
            self._check()
        except InputError:
            self.h5.close()
            raise

    def _check(self) -> None:
        """Raise :class:`InputError` naming the file when its layout is not what the subclass reads."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.h5.close()


def read_h5_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows of an HDF5 dataset in the given order (h5py needs increasing indices, so read sorted)."""
    rows = np.asarray(rows)
    order = np.argsort(rows)
    out = np.empty((rows.size, *dataset.shape[1:]), dataset.dtype)
    out[order] = dataset[rows[order]]
    return out
