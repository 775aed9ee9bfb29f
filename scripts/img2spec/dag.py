"""What the Snakefile needs to build the DAG, and nothing heavier: standard library only.

The rules read the network names (:mod:`img2spec.networks`), the ablation variants, the template
libraries and the number of fitting chunks from here; the library modules that do the work import
the same definitions, so a name is defined once.
"""

from __future__ import annotations

import re

#: The bands each ablation band set keeps ('mean': every band replaced by the ugriz mean).
BAND_SETS = {"ugriz": "ugriz", "gri": "gri", "g": "g", "mean": "ugriz"}
#: Ablation variant names: ``<resolution>px_<band set>``.
VARIANT = re.compile(r"^(\d+)px_(ugriz|gri|mean|g)$")
#: The band rows of the paper's Table 3: gri at 32 × 32 and 16 × 16, one band (the mean of ugriz, or g) at 1 × 1.
TABLE3_BAND_VARIANTS = ("32px_gri", "16px_gri", "1px_mean", "1px_g")
#: A survey's products in its folder (``resources/<survey>/``), in SDSS's layout; the mock survey writes the
#: same, plus its truth.
SURVEY_FILES = {"catalog": "catalog.csv", "spectra": "spectra", "cubes": "cubes.npz", "truth": "truth.parquet"}
#: SSP libraries read out of the sdss-mangadap wheel (:data:`img2spec.templates.LIBRARIES`).
LIBRARY_NAMES = ("miuscat", "m11_miles", "bc03")


def variant_name(resolution: int, bands: str) -> str:
    return f"{resolution}px_{bands}"


def parse_variant(name: str) -> tuple[int, str]:
    """(resolution, bands) of a variant name such as ``16px_ugriz``."""
    match = VARIANT.match(name)
    if not match or 64 % int(match.group(1)):
        raise ValueError(
            f"ablation variant {name!r}: expected '<r>px_<bands>' with r dividing 64 and bands one of {sorted(BAND_SETS)}"
        )
    return int(match.group(1)), match.group(2)


def variants(resolutions: list[int], band_variants: list[str]) -> list[str]:
    """All-band variants at each resolution, then the band variants as named (Table 3's rows)."""
    names = [variant_name(r, "ugriz") for r in resolutions] + list(band_variants)
    for name in names:
        parse_variant(name)
    return list(dict.fromkeys(names))


def n_chunks(n_galaxies: int, chunk_size: int) -> int:
    """Fitting jobs for ``n_galaxies`` test galaxies, ``chunk_size`` each (at least one)."""
    return max(1, -(-n_galaxies // chunk_size))
