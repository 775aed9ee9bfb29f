"""Workflow configuration: validation against the JSON schema (defaults filled) and typed settings."""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .mock.survey import MockSettings
from .preprocessing import PreprocessingSettings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not satisfy the schema; the message names the key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if isinstance(instance, dict) and "default" in subschema:
                instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it, as Snakemake's ``validate`` does.

    Raises
    ------
    ConfigError
        Naming the offending key path and what the schema allows there.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            allowed = err.schema.get("enum") if isinstance(err.schema, dict) else None
            hint = f" (allowed: {allowed})" if allowed else ""
            lines.append(f"config key {where}: {err.message}{hint}")
        raise ConfigError("\n".join(lines))
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file, validate it and fill defaults."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    return validate_config(config)


def preprocessing_settings(section: dict[str, Any]) -> PreprocessingSettings:
    """Settings of the ``preprocessing`` config section (chunking left to the caller)."""
    values = {k: v for k, v in section.items() if k != "chunk_size"}
    values["norm_window"] = tuple(values.get("norm_window", PreprocessingSettings.norm_window))
    return PreprocessingSettings(**values)


def mock_settings(section: dict[str, Any]) -> MockSettings:
    """Settings of the ``mock`` config section."""
    return MockSettings.from_config(section)


@contextlib.contextmanager
def logged(log_path: str | Path | None):
    """Send a script's stdout and stderr to its rule's log file (stays on the console without one)."""
    if log_path is None:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except Exception:
            traceback.print_exc()
            raise
