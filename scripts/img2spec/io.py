"""File formats: SDSS spectra, image-cube files and atomic output writing.

Spectra follow the SDSS ``spec``/``spec-lite`` layout (HDU ``COADD`` with ``flux`` [1e-17 erg/s/cm²/Å],
``loglam`` [log10 Å, vacuum], ``ivar``, ``and_mask``; HDU ``SPECOBJ`` with the pipeline's
measurements).  Image cubes follow Pasquet et al. (2019): an ``.npz`` archive with ``cube``
(N, 64, 64, 5) float32 in ugriz order and a record array ``labels`` holding ``specObjID``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
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


# ----------------------------------------------------------------------------------------------
# Image cubes
# ----------------------------------------------------------------------------------------------


def _npz_member_memmap(path: Path, member: str) -> np.ndarray | None:
    """Memory-map an uncompressed ``.npy`` member of an ``.npz``; None if it is compressed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local_header = fh.read(30)
        if local_header[:4] != b"PK\x03\x04":
            raise InputError(f"{path}: corrupt zip header for {member}")
        name_len = int.from_bytes(local_header[26:28], "little")
        extra_len = int.from_bytes(local_header[28:30], "little")
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    if fortran:
        raise InputError(f"{path}: {member} is Fortran-ordered; rewrite it in C order")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


@dataclass
class CubeFile:
    """Lazily read 5-band image cubes from a Pasquet-layout ``.npz`` or an HDF5 file.

    The pixel array is memory-mapped (uncompressed npz, HDF5) so files far larger than memory can be
    read in chunks; a compressed npz is first unpacked in a streaming copy to ``cache_dir`` or to a
    temporary folder removed on :meth:`close`, never beside the input.

    Attributes
    ----------
    path : Path
    specobjid : ndarray of int64
        One id per cube, in file order.
    labels : ndarray
        The file's label record array (``specObjID`` at least).
    """

    path: Path
    specobjid: np.ndarray
    labels: np.ndarray
    _pixels: Any = field(repr=False)
    _h5: Any = field(default=None, repr=False)
    _scratch: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.specobjid.size)

    def read(self, index: np.ndarray | slice) -> np.ndarray:
        """Cubes at ``index`` as float32 (n, 5, 64, 64), band-first (ugriz), as the dataset stores them."""
        if isinstance(index, slice):
            block = np.asarray(self._pixels[index])
        else:
            index = np.asarray(index)
            order = np.argsort(index)
            block = np.empty((index.size, *self._pixels.shape[1:]), self._pixels.dtype)
            # h5py needs increasing indices; reading in order also keeps memmap access sequential
            block[order] = self._pixels[index[order]]
        return np.ascontiguousarray(np.moveaxis(block, -1, 1), dtype=np.float32)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
        if self._scratch is not None:
            self._pixels = None  # release the memory map before its file goes
            self._scratch.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Pixels per side of an image cube (Pasquet et al. 2019).
CUBE_SIZE = 64
#: Angular size of an SDSS imaging pixel, and of a cube pixel [arcsec].
PIXEL_ARCSEC = 0.396


def _check_cube_shape(path: Path, shape: tuple[int, ...], bands: list[str] | None) -> None:
    if len(shape) != 4 or shape[1:] != (CUBE_SIZE, CUBE_SIZE, len(BANDS)):
        raise InputError(
            f"{path}: cube array has shape {shape}; expected (N, {CUBE_SIZE}, {CUBE_SIZE}, {len(BANDS)}) with ugriz last"
        )
    if shape[0] == 0:
        raise InputError(f"{path}: the cube array holds no cubes")
    if bands is not None and [b.strip().lower() for b in bands] != list(BANDS):
        raise InputError(f"{path}: bands are {bands}; expected {list(BANDS)} in this order")


#: Largest ratio of the r band's median in the cube's outer ring (beyond 28 pixels from the centre) to
#: its median in the central 3×3 pixels for a sky-subtracted image in flux units; magnitudes, with the
#: faint sky far above the bright centre, or an unsubtracted sky give ratios near or above 1.
MAX_SKY_TO_CENTRE = 0.5


def image_problem(cube: np.ndarray) -> str | None:
    """Why a (5, 64, 64) ugriz cube cannot be used, or None.

    Refused: non-finite pixels; a band all zero; a cube that cannot be sky-subtracted flux
    [nanomaggies] of a galaxy at its centre: no positive r flux in the central 3×3 pixels (all
    negative, blank sky), or an outer ring brighter than :data:`MAX_SKY_TO_CENTRE` of the centre
    (magnitudes, an unsubtracted sky, a constant image).
    """
    finite = np.isfinite(cube)
    if not finite.all():
        bands = [BANDS[b] for b in range(len(BANDS)) if not finite[b].all()]
        return f"non-finite pixels in band(s) {''.join(bands)}"
    empty = [BANDS[b] for b in range(len(BANDS)) if not np.any(cube[b])]
    if empty:
        return f"band(s) {''.join(empty)} all zero (missing band)"
    r = cube[BANDS.index("r")]
    size = r.shape[-1]
    middle = size // 2
    centre = float(np.median(r[middle - 2 : middle + 1, middle - 2 : middle + 1]))
    if centre <= 0:
        return (
            f"no positive r flux at the centre (median {centre:.3g}): not a galaxy in nanomaggies "
            "(negative or blank image?)"
        )
    y, x = np.indices(r.shape)
    ring = np.hypot(y - (size - 1) / 2, x - (size - 1) / 2) > 28
    sky = float(np.median(r[ring]))
    if sky > MAX_SKY_TO_CENTRE * centre:
        return (
            f"the r band's outer ring ({sky:.3g}) is {sky / centre:.2f} of its centre ({centre:.3g}): not "
            "sky-subtracted flux in nanomaggies (magnitudes, or the sky left in?)"
        )
    return None


def open_cube_file(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> CubeFile:
    """Open a cube file without loading its pixels.

    Parameters
    ----------
    path : path-like
        ``.npz`` (Pasquet layout: ``cube`` (N,64,64,5), ``labels`` with ``specObjID``, optional
        ``bands``) or ``.h5``/``.hdf5`` with datasets ``cube`` (N,64,64,5) and ``specObjID``.
    cache_dir : path-like, optional
        Where a compressed npz is unpacked (default: a temporary folder, removed on close).

    Raises
    ------
    InputError
        For a missing member, a wrong shape or band order, or ids that are not integers.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: cube file not found")
    if path.suffix.lower() in (".h5", ".hdf5"):
        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"{path}: not a readable HDF5 file ({err})") from err
        for key in ("cube", "specObjID"):
            if key not in h5:
                h5.close()
                raise InputError(f"{path}: HDF5 cube file lacks dataset {key!r}")
        bands = h5["cube"].attrs.get("bands")
        try:
            _check_cube_shape(path, h5["cube"].shape, None if bands is None else [str(b) for b in bands])
        except InputError:
            h5.close()
            raise
        ids = np.asarray(h5["specObjID"][()], dtype=np.int64)
        labels = np.rec.fromarrays([ids], dtype=np.dtype([("specObjID", np.int64)]))
        return CubeFile(path, ids, labels, h5["cube"], h5)
    try:
        with np.load(path, allow_pickle=False) as archive:
            members = set(archive.files)
            for key in ("cube", "labels"):
                if key not in members:
                    raise InputError(f"{path}: npz cube file lacks member {key!r} (has {sorted(members)})")
            labels = archive["labels"]
            bands = [str(b) for b in archive["bands"]] if "bands" in members else None
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable npz archive ({err})") from err
    names = labels.dtype.names or ()
    id_field = next((n for n in names if n.lower() == "specobjid"), None)
    if id_field is None:
        raise InputError(f"{path}: labels have no specObjID field (fields: {names})")
    try:
        ids = np.asarray(labels[id_field]).astype(np.int64)
    except ValueError as err:
        raise InputError(f"{path}: specObjID values are not integers") from err
    pixels = _npz_member_memmap(path, "cube.npy")
    scratch = None
    if pixels is None:
        if cache_dir is None:
            scratch = tempfile.TemporaryDirectory(prefix="img2spec-cubes-")
            cache = Path(scratch.name)
        else:
            cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        unpacked = cache / f"{path.stem}.cube.npy"
        if not unpacked.exists() or unpacked.stat().st_mtime < path.stat().st_mtime:
            with (
                zipfile.ZipFile(path) as archive,
                archive.open("cube.npy") as src,
                atomic_output(unpacked) as tmp,
                open(tmp, "wb") as dst,
            ):
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
        pixels = np.load(unpacked, mmap_mode="r")
    try:
        _check_cube_shape(path, pixels.shape, bands)
        if pixels.shape[0] != ids.size:
            raise InputError(f"{path}: {pixels.shape[0]} cubes but {ids.size} labels")
    except InputError:
        if scratch is not None:
            del pixels
            scratch.cleanup()
        raise
    return CubeFile(path, ids, labels, pixels, _scratch=scratch)


def write_cube_file(path: str | os.PathLike, cubes: np.ndarray, labels: np.ndarray) -> None:
    """Write cubes (N, 64, 64, 5) float32 ugriz and their label record array as an uncompressed npz."""
    _check_cube_shape(Path(path), cubes.shape, None)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, cube=np.asarray(cubes, np.float32), labels=labels, bands=np.array(BANDS))


def write_cube_archive(path: str | os.PathLike, cube_npy: str | os.PathLike, labels: np.ndarray) -> None:
    """Write the npz of :func:`write_cube_file` from cubes already in an ``.npy`` file (e.g. a memmap), without loading them."""
    with (
        atomic_output(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        archive.write(cube_npy, "cube.npy")
        with archive.open("labels.npy", "w") as fh:
            np.lib.format.write_array(fh, np.asarray(labels))
        with archive.open("bands.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array(BANDS))


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
