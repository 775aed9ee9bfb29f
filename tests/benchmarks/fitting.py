"""Fits per second per core of the toolbox on observed test spectra, with and without bootstrap.

Run:  python tests/benchmarks/fitting.py results/dataset/dataset.h5 resources/templates --galaxies 16
One thread (OMP/MKL/OpenBLAS pinned to 1), so the figures are per core.  On the mock it also prints
the median |fit − truth| of σ*, log age and [M/H] for the observed spectra.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
from img2spec.dataset import SPLITS
from img2spec.templates import load_library
from img2spec.toolbox import build_basis, measure_redshift, prepare_templates
from img2spec.toolbox.firefly import fit_rest_firefly
from img2spec.toolbox.indices import indices_of_rest
from img2spec.toolbox.spectra import to_rest_frame
from img2spec.toolbox.stellar import fit_rest_ppxf

AGES = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0]


def timed(label: str, function, items) -> list:
    started = time.perf_counter()
    results = [function(item) for item in items]
    seconds = time.perf_counter() - started
    print(f"{label:<34s} {len(items) / seconds:8.2f} fits/s/core   ({seconds / len(items):.3f} s per fit)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("templates", help="folder with m11_miles.npz and miuscat.npz")
    parser.add_argument("--galaxies", type=int, default=16)
    args = parser.parse_args()
    with h5py.File(args.dataset) as h5:
        rows = np.flatnonzero(h5["split"][()] == SPLITS["test"])[: args.galaxies]
        wave = h5["wave"][()]
        flux = np.exp(h5["flux"][rows].astype(np.float64))
        ivar = np.where(h5["mask"][rows], 0.0, h5["ivar"][rows])
        z = h5["z_spec"][()][rows]
    templates = prepare_templates(load_library(Path(args.templates) / "m11_miles.npz"), 1500.0, ages_gyr=AGES)
    spectra = [to_rest_frame(wave, f, i, zz, 1500.0, templates.velscale) for f, i, zz in zip(flux, ivar, z)]
    basis = build_basis(load_library(Path(args.templates) / "miuscat.npz"), 1500.0)
    print(f"{len(spectra)} observed test spectra, templates {templates.flux.shape}")
    timed(
        "redshift (trial-z template fit)",
        lambda i: measure_redshift(wave, flux[i], ivar[i], basis),
        range(len(spectra)),
    )
    fits = timed("pPXF, no bootstrap", lambda s: fit_rest_ppxf(s, templates, bootstrap=0), spectra)
    timed("pPXF, 50 bootstrap refits", lambda s: fit_rest_ppxf(s, templates, bootstrap=50), spectra[:4])
    timed(
        "FIREFLY method, no bootstrap",
        lambda p: fit_rest_firefly(p[0], templates, p[1]["sigma_star"], bootstrap=0),
        list(zip(spectra, fits)),
    )
    timed(
        "FIREFLY method, 10 bootstrap refits",
        lambda p: fit_rest_firefly(p[0], templates, p[1]["sigma_star"], bootstrap=10),
        list(zip(spectra, fits)),
    )
    timed("indices with sigma correction", lambda p: indices_of_rest(*p), list(zip(spectra, fits)))


if __name__ == "__main__":
    main()
