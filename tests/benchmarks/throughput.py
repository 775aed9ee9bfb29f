"""Throughput benchmarks of the data layer and the mock survey, on one core.

Run:  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python tests/benchmarks/throughput.py
Prints a table; the figures go into the issue notes, never into timed unit tests.
"""

from __future__ import annotations

import argparse
import importlib.resources
import platform
import tempfile
import time
from pathlib import Path

from img2spec.io import SurveyFiles, read_sdss_spectrum
from img2spec.mock.products import generate
from img2spec.mock.survey import MockSettings, MockSurvey
from img2spec.preprocessing import preprocess_spectra
from img2spec.templates import fetch_wheel, library_from_wheel, pinned_wheel

REPO = Path(__file__).resolve().parents[2]
MANGADAP = pinned_wheel()


def best_of(repeats: int, func) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spectra", type=int, default=2000, help="spectra per preprocessing batch")
    parser.add_argument("--galaxies", type=int, default=500, help="mock galaxies to generate")
    args = parser.parse_args()

    path = Path(str(importlib.resources.files("ppxf") / "spectra" / "NGC3522_SDSS_DR18.fits"))
    read_time = best_of(3, lambda: [read_sdss_spectrum(path) for _ in range(200)])
    spectra = [read_sdss_spectrum(path)] * args.spectra
    preprocess_spectra(spectra[:10])
    prep_time = best_of(3, lambda: preprocess_spectra(spectra))

    library = library_from_wheel(fetch_wheel(*MANGADAP, REPO / "resources" / "downloads"), "miuscat")
    survey = MockSurvey.from_library(library, MockSettings.defaults(n_galaxies=args.galaxies, batch_size=256))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(survey, SurveyFiles.in_folder(tmp))
        mock_time = time.perf_counter() - start

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'stage':<40}{'rate':>14}")
    print(f"{'read spec FITS (real DR18 file)':<40}{200 / read_time:>10.0f} /s")
    print(f"{f'preprocess {args.spectra} spectra in memory':<40}{args.spectra / prep_time:>10.0f} /s")
    print(f"{f'mock survey, {args.galaxies} galaxies written':<40}{args.galaxies / mock_time:>10.1f} /s")


if __name__ == "__main__":
    main()
