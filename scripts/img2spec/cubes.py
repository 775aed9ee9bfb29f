"""Image-cube files: Pasquet et al. (2019) ``.npz`` archives and HDF5 files of 5-band cubes, and which cubes are usable.

A cube file holds ``cube`` (N, 64, 64, 5) float32 in ugriz order [nanomaggies] and a record array
``labels`` with ``specObjID``; img2spec reads it lazily (:class:`CubeFile`), band-first, as the
dataset stores cubes.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

from .io import BANDS, InputError, atomic_output


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
