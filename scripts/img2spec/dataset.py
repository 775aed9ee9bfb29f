"""The training dataset: preprocessed spectra joined with image cubes and the catalog, split, on disk.

Two steps, each a workflow rule: :func:`img2spec.catalog.preprocess_catalog_spectra` turns a
catalog's spec-lite files into ``spectra.h5``; :func:`build_dataset` joins those with the cube file and the catalog on integer
specObjID, splits train/val/test, and writes ``dataset.h5``.  Every object that drops out is listed
with its reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import pandas as pd

from .catalog import DUPLICATE, REJECT_COLUMNS, TooManyRejects, reason_kind, redshift_problems, reject, screen_catalog
from .cubes import CUBE_SIZE, CubeFile, image_problem
from .io import BANDS, InputError, ReadOnlyH5, atomic_output, read_h5_rows
from .preprocessing import (
    covering_z_range,
    lowres_bin_means,
    rest_frame_spectra,
    rest_frame_wave,
)
from .settings import Settings

SPLITS = {"train": 0, "val": 1, "test": 2}
#: Version of the ``dataset.h5`` layout written by :func:`build_dataset`; readers refuse any other.
LAYOUT_VERSION = 3
#: Frames the spectra of ``dataset.h5`` are held in: as observed, and moved to the rest frame.
FRAMES = ("observed", "rest")
#: Spectra and their grids, held in every frame (:func:`spectrum_key`).
FRAMED_KEYS = ("flux", "mask", "flux_lowres", "mask_lowres", "wave", "wave_lowres")


def spectrum_key(name: str, frame: str) -> str:
    """The ``dataset.h5`` key of spectra or grid ``name`` (one of :data:`FRAMED_KEYS`) in ``frame``."""
    if name not in FRAMED_KEYS:
        raise ValueError(f"{name!r} is not held per frame; the framed keys are {', '.join(FRAMED_KEYS)}")
    if frame not in FRAMES:
        raise ValueError(f"unknown spectrum frame {frame!r}; one of {', '.join(FRAMES)}")
    return name if frame == "observed" else f"{name}_rest"


MORPHOLOGIES = ("elliptical", "spiral", "uncertain")


def split_rows(h5: h5py.File, split: str) -> np.ndarray:
    """Rows of ``dataset.h5`` (an open file) in ``split`` ('train', 'val' or 'test'), increasing."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {sorted(SPLITS)}")
    return np.flatnonzero(h5["split"][()] == SPLITS[split])


def rows_of_ids(ids: np.ndarray, wanted: np.ndarray, source: str) -> np.ndarray:
    """Positions in ``ids`` of the specObjIDs ``wanted``; ``source`` names the file in the error."""
    position = {int(s): i for i, s in enumerate(ids)}
    missing = [int(s) for s in wanted if int(s) not in position]
    if missing:
        raise ValueError(f"{source}: {len(missing)} galaxies missing (e.g. specObjID {missing[:3]})")
    return np.array([position[int(s)] for s in wanted], dtype=int)


class DatasetFile(ReadOnlyH5):
    """Read access to ``dataset.h5``, the one owner of its layout (see :func:`build_dataset`).

    Opens read-only and checks the layout version.  Per-object arrays are read for given rows only
    (never the whole survey): ``images`` (N, 5, 64, 64) [nanomaggies], ``flux`` / ``flux_lowres``
    (natural log of normalised flux), ``ivar``, ``mask`` / ``mask_lowres``, ``norm``, ``z_spec``,
    and the same spectra moved to the rest frame (:func:`spectrum_key`, :meth:`wave_of`).

    Use as a context manager: ``with DatasetFile(path) as data: rows = data.rows("test")``.
    """

    kind = "dataset"

    def _check(self) -> None:
        version = self.h5.attrs.get("layout_version")
        if version != LAYOUT_VERSION:
            raise InputError(
                f"{self.path}: dataset layout version {version}, this img2spec reads version {LAYOUT_VERSION}; "
                "rebuild it (snakemake --forcerun build_dataset)"
            )

    @property
    def specobjid(self) -> np.ndarray:
        return self.h5["specobjid"][()]

    @property
    def wave(self) -> np.ndarray:
        """Full-resolution wavelength grid [Å, vacuum, observed frame]."""
        return self.h5["wave"][()]

    @property
    def wave_lowres(self) -> np.ndarray:
        return self.h5["wave_lowres"][()]

    def wave_of(self, frame: str, lowres: bool = False) -> np.ndarray:
        """Wavelength grid [Å] of the spectra in ``frame`` ('observed' or 'rest'), full or low resolution."""
        return self.h5[spectrum_key("wave_lowres" if lowres else "wave", frame)][()]

    def spectra(self, frame: str, lowres: bool = False) -> tuple[h5py.Dataset, h5py.Dataset]:
        """The (flux, mask) datasets of the spectra in ``frame``, full or low resolution, for reading by rows."""
        flux, mask = ("flux_lowres", "mask_lowres") if lowres else ("flux", "mask")
        return self.h5[spectrum_key(flux, frame)], self.h5[spectrum_key(mask, frame)]

    @property
    def normalisation(self) -> tuple[tuple[float, float], str]:
        """The window [Å] whose mean flux the spectra are normalised to 1 in, and its frame, as preprocessing used them."""
        window = self.h5.attrs["preprocessing_norm_window"]
        return (float(window[0]), float(window[1])), str(self.h5.attrs["preprocessing_norm_frame"])

    @property
    def rest_z_range(self) -> tuple[float, float]:
        """Redshifts of the training split, which the rest-frame grid was made to cover."""
        low, high = self.h5.attrs["rest_z_range"]
        return float(low), float(high)

    @property
    def delivery_z_range(self) -> tuple[float, float]:
        """Redshifts inside :attr:`rest_z_range` at which both rest-frame grids, full and low resolution,
        cover the observed ones (:func:`img2spec.preprocessing.covering_z_range`): where a rest-frame
        prediction can be delivered, and where predicted redshifts are clipped to.

        The low-resolution grids are 8 Å bin centres, so the rest-frame one reaches the observed one
        over a slightly narrower range than the full-resolution grids do (to z ≈ 0.14960 rather than 0.15).
        """
        low, high = self.rest_z_range
        for lowres in (False, True):
            cover_low, cover_high = covering_z_range(self.wave_of("rest", lowres), self.wave_of("observed", lowres))
            low, high = max(low, cover_low), min(high, cover_high)
        return low, high

    def rows(self, split: str) -> np.ndarray:
        """Rows of ``split`` ('train', 'val' or 'test'), increasing."""
        return split_rows(self.h5, split)

    def rows_of(self, ids: np.ndarray, source: str = "") -> np.ndarray:
        """Rows of the specObjIDs ``ids``; an error naming the file (and ``source``) for any missing."""
        return rows_of_ids(self.specobjid, ids, f"{self.path}" + (f" ({source})" if source else ""))

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        """``key``'s values of ``rows`` (any order), reading only those rows."""
        return read_h5_rows(self.h5[key], np.asarray(rows))

    def catalog(self, rows: np.ndarray, columns: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
        """Catalog columns (all by default) of ``rows``."""
        group = self.h5["catalog"]
        return pd.DataFrame({name: group[name][()][rows] for name in (columns or list(group))})

    def morphology(self, rows: np.ndarray) -> np.ndarray:
        """Galaxy Zoo class of ``rows``: elliptical, spiral or uncertain (from the catalog's debiased flags)."""
        labels = np.full(np.size(rows), "uncertain", dtype=object)
        group = self.h5["catalog"]
        if "elliptical" in group:
            labels[group["elliptical"][()][rows] == 1] = "elliptical"
            labels[group["spiral"][()][rows] == 1] = "spiral"
        return labels

    def image_train_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and standard deviation of the training images [nanomaggies per pixel]."""
        return self.h5["images"].attrs["train_mean"], self.h5["images"].attrs["train_std"]


@dataclass(frozen=True, kw_only=True)
class DatasetSettings(Settings):
    """Split, redshift checks and failure policy of :func:`build_dataset`.

    ``z_min``/``z_max`` is the sample's redshift range (the paper's 0.05 < z ≤ 0.15, Sect. 2) and
    ``z_tolerance`` how far a spectrum's Z may lie outside it or from the catalog's z
    (:func:`redshift_problems`).
    """

    SECTION: ClassVar[str] = "dataset"

    n_val: int
    n_test: int
    seed: int
    max_reject_fraction: float
    chunk_size: int
    z_min: float
    z_max: float
    z_tolerance: float


def assign_splits(specobjid: np.ndarray, n_val: int, n_test: int, seed: int) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) from a seeded permutation of the sorted ids.

    The result depends only on the set of ids and the seed, not on their order in any file.
    """
    n = specobjid.size
    if n_val + n_test >= n:
        raise ValueError(f"{n} objects cannot give {n_val} validation and {n_test} test objects plus training")
    order = np.argsort(specobjid, kind="stable")
    permuted = order[np.random.default_rng(seed).permutation(n)]
    split = np.zeros(n, np.int8)
    split[permuted[:n_test]] = SPLITS["test"]
    split[permuted[n_test : n_test + n_val]] = SPLITS["val"]
    return split


def build_dataset(
    catalog: pd.DataFrame,
    spectra_h5: str | Path,
    cubes: CubeFile,
    settings: DatasetSettings,
    out_path: str | Path,
    prior_rejects: pd.DataFrame | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, pd.DataFrame]:
    """Join spectra, images and catalog; split; write ``dataset.h5``.

    Parameters
    ----------
    catalog : DataFrame
        The survey catalog (one row per object, ``specObjID`` integer).
    spectra_h5 : path
        Output of :func:`preprocess_catalog_spectra`.
    cubes : CubeFile
        The image cubes.
    settings : DatasetSettings
    out_path : path
        ``dataset.h5``, written atomically.
    prior_rejects : DataFrame, optional
        Rejects of earlier stages, merged into the returned table and counted.

    Returns
    -------
    summary : dict
        Counts per stage and reason, split sizes and per-band image statistics.
    rejects : DataFrame
        Every catalog object not in the dataset, with its reason.

    Raises
    ------
    TooManyRejects
        If more than ``max_reject_fraction`` of the catalog is rejected (nothing is written).
    """
    n_catalog = int(catalog["specObjID"].nunique())
    catalog, rejects = screen_catalog(catalog)
    prior = [] if prior_rejects is None else prior_rejects.to_dict("records")
    already = {int(r["specObjID"]) for r in prior}
    rejects = [r for r in rejects if r["specObjID"] not in already] + prior

    with h5py.File(spectra_h5, "r") as spec:
        spec_ids = spec["specobjid"][()]
        spec_z = spec["z_spec"][()]
    spec_row = {int(s): i for i, s in enumerate(spec_ids)}
    catalog_z = dict(zip(catalog["specObjID"].to_numpy().astype(int), catalog["z"].to_numpy()))
    in_catalog = np.array([int(sid) in catalog_z for sid in spec_ids], bool)
    rejects += redshift_problems(
        spec_ids[in_catalog], spec_z[in_catalog], np.array([catalog_z[int(s)] for s in spec_ids[in_catalog]]), settings
    )
    cube_rows: dict[int, int] = {}
    for i, sid in enumerate(cubes.specobjid):
        if int(sid) in cube_rows:
            rejects.append(
                reject(
                    sid, "images", f"{DUPLICATE} in cube file (row {i}; row {cube_rows[int(sid)]} is kept)", cubes.path
                )
            )
        else:
            cube_rows[int(sid)] = i
    rejected = {r["specObjID"] for r in rejects if not r["reason"].startswith(DUPLICATE)}

    joined: list[int] = []
    for sid in catalog["specObjID"].to_numpy().astype(int):
        if sid in rejected:
            continue
        if sid not in spec_row:
            rejects.append(reject(sid, "join", "no preprocessed spectrum"))
        elif sid not in cube_rows:
            rejects.append(reject(sid, "join", "no image cube", cubes.path))
        else:
            joined.append(sid)
    keep = np.asarray(joined, np.int64)

    # screen images in chunks before anything is written
    good = np.ones(keep.size, dtype=np.bool_)
    for start in range(0, keep.size, settings.chunk_size):
        ids = keep[start : start + settings.chunk_size]
        block = cubes.read(np.array([cube_rows[int(s)] for s in ids]))
        for j, cube in enumerate(block):
            problem = image_problem(cube)
            if problem:
                good[start + j] = False
                rejects.append(reject(ids[j], "images", problem, cubes.path))
    keep = keep[good]

    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    n_rejected = int(rejects_df.loc[~rejects_df["reason"].str.startswith(DUPLICATE), "specObjID"].nunique())
    kinds = pd.Series(
        [reason_kind(st, re_) for st, re_ in zip(rejects_df["stage"], rejects_df["reason"])], dtype=object
    )
    fraction = n_rejected / max(n_catalog, 1)
    if fraction > settings.max_reject_fraction:
        by_kind = kinds.value_counts().head(5).to_dict()
        raise TooManyRejects(
            f"{n_rejected} of {n_catalog} objects rejected ({100 * fraction:.1f}% > "
            f"{100 * settings.max_reject_fraction:.1f}% allowed); most common kinds of reason: {by_kind}"
        )

    keep = np.sort(keep)
    split = assign_splits(keep, settings.n_val, settings.n_test, settings.seed)
    cat = catalog.set_index("specObjID").loc[keep].reset_index()
    summary = _write_dataset(out_path, keep, split, cat, spectra_h5, spec_row, cubes, cube_rows, settings, log)
    summary.update(
        n_catalog=n_catalog,
        n_rejected=n_rejected,
        rejects_by_stage=rejects_df["stage"].value_counts().to_dict(),
        rejects_by_reason=kinds.value_counts().to_dict(),
        n_cubes_without_catalog_row=len(set(cube_rows) - set(catalog["specObjID"].astype(int))),
    )
    return summary, rejects_df


def _write_dataset(out_path, ids, split, catalog, spectra_h5, spec_row, cubes, cube_rows, settings, log) -> dict:
    n = ids.size
    band_sum = np.zeros(len(BANDS))
    band_sq = np.zeros(len(BANDS))
    n_train_pix = 0
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as out, h5py.File(spectra_h5, "r") as spec:
        cube = (len(BANDS), CUBE_SIZE, CUBE_SIZE)
        images = out.create_dataset("images", (n, *cube), np.float32, chunks=(1, *cube))
        rows = np.array([spec_row[int(s)] for s in ids])
        for name in ("flux", "ivar", "mask", "flux_lowres", "mask_lowres", "norm", "z_spec"):
            source = spec[name]
            target = out.create_dataset(
                name,
                (n, *source.shape[1:]),
                source.dtype,
                chunks=(min(64, n), *source.shape[1:]) if source.ndim > 1 else None,
            )
            for start in range(0, n, settings.chunk_size):
                block = read_h5_rows(source, rows[start : start + settings.chunk_size])
                target[start : start + block.shape[0]] = block
        for name in ("wave", "wave_lowres"):
            out[name] = spec[name][()]
        for key, value in spec.attrs.items():
            out.attrs[f"preprocessing_{key}"] = value
        write_rest_frame(out, split, spec.attrs, settings.chunk_size, log)
        for start in range(0, n, settings.chunk_size):
            block = cubes.read(np.array([cube_rows[int(s)] for s in ids[start : start + settings.chunk_size]]))
            images[start : start + block.shape[0]] = block
            train = block[split[start : start + block.shape[0]] == SPLITS["train"]].astype(np.float64)
            band_sum += train.sum(axis=(0, 2, 3))
            band_sq += (train**2).sum(axis=(0, 2, 3))
            n_train_pix += train.shape[0] * CUBE_SIZE * CUBE_SIZE
            log(f"images {start + block.shape[0]}/{n}")
        out["specobjid"] = ids
        out["z"] = catalog["z"].to_numpy(np.float64)
        out.create_dataset("split", data=split)
        out["split"].attrs["codes"] = str(SPLITS)
        for code_name, code in SPLITS.items():
            out["split"].attrs[code_name] = code
        group = out.create_group("catalog")
        for column in catalog.columns:
            values = catalog[column].to_numpy()
            group[column] = values.astype("S") if values.dtype == object else values
        mean = band_sum / n_train_pix
        std = np.sqrt(band_sq / n_train_pix - mean**2)
        images.attrs["bands"] = "".join(BANDS)
        images.attrs["unit"] = "nanomaggies per pixel"
        images.attrs["train_mean"] = mean
        images.attrs["train_std"] = std
        out.attrs["n_objects"] = n
        out.attrs["layout_version"] = LAYOUT_VERSION
    counts = {name: int(np.sum(split == code)) for name, code in SPLITS.items()}
    return {
        "n_objects": int(n),
        "splits": counts,
        "image_train_mean": dict(zip(BANDS, mean.round(6).tolist())),
        "image_train_std": dict(zip(BANDS, std.round(6).tolist())),
    }


def write_rest_frame(
    out: h5py.File, split: np.ndarray, preprocessing: Mapping, chunk: int = 512, log: Callable[[str], None] = print
) -> None:
    """Add the spectra of ``out`` moved to the rest frame (:func:`img2spec.preprocessing.rest_frame_spectra`).

    ``out`` is a ``dataset.h5`` open for writing that holds the observed ``flux``, ``mask``, ``wave``
    and ``z_spec``; ``preprocessing`` the settings they were made with (``lowres_factor``,
    ``log_floor``, ``norm_window``, ``norm_frame``).  The rest-frame grid covers the observed one at
    every redshift of the training split (``rest_z_range``).
    """
    z = out["z_spec"][()]
    train_z = z[split == SPLITS["train"]]
    z_range = (float(train_z.min()), float(train_z.max())) if train_z.size else (float(z.min()), float(z.max()))
    wave = out["wave"][()]
    rest_wave = rest_frame_wave(wave, z_range)
    factor = int(preprocessing["lowres_factor"])
    arrays = {}
    for name, length, dtype in (("flux", rest_wave.size, np.float32), ("mask", rest_wave.size, bool)):
        for suffix, n_pix in (("", length), ("_lowres", -(-length // factor))):
            key = spectrum_key(f"{name}{suffix}", "rest")
            arrays[key] = out.create_dataset(key, (z.size, n_pix), dtype, chunks=(min(64, z.size), n_pix))
    for start in range(0, z.size, chunk):
        stop = min(start + chunk, z.size)
        moved = rest_frame_spectra(
            wave,
            out["flux"][start:stop],
            out["mask"][start:stop],
            z[start:stop],
            rest_wave,
            factor,
            float(preprocessing["log_floor"]),
            tuple(preprocessing["norm_window"]),
            str(preprocessing["norm_frame"]),
        )
        for name, values in zip(("flux", "mask", "flux_lowres", "mask_lowres"), moved):
            arrays[spectrum_key(name, "rest")][start:stop] = values
        log(f"rest-frame spectra {stop}/{z.size}")
    out[spectrum_key("wave", "rest")] = rest_wave
    out[spectrum_key("wave_lowres", "rest")] = lowres_bin_means(rest_wave[None, :], factor)[0]
    out.attrs["rest_z_range"] = z_range


def dataset_figure(dataset_h5: str | Path, path: str | Path, n_examples: int = 5) -> None:
    """Example image–spectrum pairs of the first test objects, as the networks will see them."""
    from .plots import dataset_examples

    with DatasetFile(dataset_h5) as data:
        rows = data.rows("test")[:n_examples]
        labels = [
            f"specObjID {sid}  z={z:.3f}  ({100 * m.mean():.1f}% pixels masked)"
            for sid, z, m in zip(data.specobjid[rows], data.read("z", rows), data.read("mask", rows))
        ]
        dataset_examples(
            data.read("images", rows),
            data.wave,
            data.read("flux", rows),
            data.wave_lowres,
            data.read("flux_lowres", rows),
            labels,
            path,
        )
