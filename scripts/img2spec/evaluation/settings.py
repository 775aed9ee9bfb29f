"""The workflow's ``evaluation`` section as typed settings (see config/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..settings import Settings
from ..toolbox.stellar import FitMasks


@dataclass(frozen=True, kw_only=True)
class PpxfSettings(Settings):
    """The ``evaluation.ppxf`` section: regularisation, bootstrap refits and the fit's masks (:class:`FitMasks`)."""

    SECTION: ClassVar[str] = "evaluation.ppxf"

    regul: float
    bootstrap: int
    clean: bool
    sky_half_width: float
    interstellar_masks: dict[str, tuple[float, float]]
    sky_lines: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class FireflySettings(Settings):
    """The ``evaluation.firefly`` section."""

    SECTION: ClassVar[str] = "evaluation.firefly"

    bootstrap: int
    hpf_width: float
    beam: int
    max_components: int


@dataclass(frozen=True, kw_only=True)
class RedshiftSettings(Settings):
    """The ``evaluation.redshift`` section: template library, trial range, eigenspectra, outlier threshold."""

    SECTION: ClassVar[str] = "evaluation.redshift"

    library: str
    z_min: float
    z_max: float
    n_eigen: int
    outlier: float


@dataclass(frozen=True, kw_only=True)
class LinesSettings(Settings):
    """The ``evaluation.lines`` section: continuum, detection, and the BPT Monte Carlo's errors."""

    SECTION: ClassVar[str] = "evaluation.lines"

    continuum: str
    min_snr: float
    detection: str
    min_ew: float
    draws: int
    ew_error: float
    relative_errors: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class EvaluationSettings(Settings):
    """The workflow's ``evaluation`` section (see config/README.md), nested as it nests, and the spectra's resolving power."""

    SECTION: ClassVar[str] = "evaluation"
    CALLERS_KEYS: ClassVar[tuple[str, ...]] = ("emiles_url",)

    chunk_size: int
    seed: int
    library: str
    kinematics_library: str | None
    kinematics_ages_gyr: tuple[float, ...] | None
    ages_gyr: tuple[float, ...] | None
    ppxf: PpxfSettings
    firefly: FireflySettings
    redshift: RedshiftSettings
    lines: LinesSettings
    resolving_power: float

    @property
    def fit_masks(self) -> FitMasks:
        """The pPXF fit's interstellar and sky-line windows and its clipping."""
        return FitMasks(
            dict(self.ppxf.interstellar_masks), self.ppxf.sky_lines, self.ppxf.sky_half_width, self.ppxf.clean
        )
