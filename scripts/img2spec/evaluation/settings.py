"""The workflow's ``evaluation`` section as typed settings (see config/README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import settings_from_section
from ..toolbox.stellar import FitMasks


@dataclass(frozen=True)
class PpxfSettings:
    """The ``evaluation.ppxf`` section: regularisation, bootstrap refits and the fit's masks (:class:`FitMasks`)."""

    regul: float = 10.0
    bootstrap: int = 50
    clean: bool = True
    sky_half_width: float = 8.0
    interstellar_masks: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(FitMasks().interstellar))
    sky_lines: tuple[float, ...] = FitMasks().sky_lines

    @classmethod
    def from_config(cls, section: dict) -> PpxfSettings:
        masks = {name: (float(lo), float(hi)) for name, (lo, hi) in section["interstellar_masks"].items()}
        return settings_from_section(cls, {**section, "interstellar_masks": masks})


@dataclass(frozen=True)
class FireflySettings:
    """The ``evaluation.firefly`` section."""

    bootstrap: int = 10
    hpf_width: float = 100.0
    beam: int = 8
    max_components: int = 6


@dataclass(frozen=True)
class RedshiftSettings:
    """The ``evaluation.redshift`` section: template library, trial range, eigenspectra, outlier threshold."""

    library: str = "bc03"
    z_min: float = 0.0
    z_max: float = 0.3
    n_eigen: int = 5
    outlier: float = 0.05


@dataclass(frozen=True)
class LinesSettings:
    """The ``evaluation.lines`` section: continuum, detection, and the BPT Monte Carlo's errors."""

    continuum: str = "firefly"
    min_snr: float = 3.0
    detection: str = "positive"
    min_ew: float = 1.0
    draws: int = 5000
    ew_error: float = 1.0
    relative_errors: dict[str, float] = field(
        default_factory=lambda: {"Hbeta": 0.15, "OIII_5007": 0.15, "Halpha": 0.2, "NII_6584": 0.3}
    )


@dataclass(frozen=True)
class EvaluationSettings:
    """The workflow's ``evaluation`` section (see config/README.md), nested as it nests, and the spectra's resolving power."""

    chunk_size: int = 32
    seed: int = 0
    library: str = "bc03"
    kinematics_library: str | None = "m11_miles"
    kinematics_ages_gyr: tuple[float, ...] | None = (0.1, 0.3, 1.0, 3.0, 10.0)
    ages_gyr: tuple[float, ...] | None = None
    ppxf: PpxfSettings = PpxfSettings()
    firefly: FireflySettings = FireflySettings()
    redshift: RedshiftSettings = RedshiftSettings()
    lines: LinesSettings = LinesSettings()
    resolving_power: float = 1500.0

    @property
    def fit_masks(self) -> FitMasks:
        """The pPXF fit's interstellar and sky-line windows and its clipping."""
        return FitMasks(
            dict(self.ppxf.interstellar_masks), self.ppxf.sky_lines, self.ppxf.sky_half_width, self.ppxf.clean
        )

    @classmethod
    def from_config(cls, section: dict, resolving_power: float) -> EvaluationSettings:
        """Settings of the workflow's ``evaluation`` section (``emiles_url`` is the download rule's)."""
        nested = {
            "ppxf": PpxfSettings.from_config(section["ppxf"]),
            "firefly": settings_from_section(FireflySettings, section["firefly"]),
            "redshift": settings_from_section(RedshiftSettings, section["redshift"]),
            "lines": settings_from_section(LinesSettings, section["lines"]),
        }
        plain = {k: v for k, v in section.items() if k not in nested and k != "emiles_url"}
        return settings_from_section(cls, {**plain, **nested, "resolving_power": resolving_power})
