"""Workflow configuration: validation against the JSON schemas (defaults filled), presets, typed settings.

Imports only yaml and jsonschema at module level, so the Snakefile can use it without the science stack.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
NETWORKS_SCHEMA_PATH = REPO / "workflow" / "schemas" / "networks.schema.yaml"
PRESETS_DIR = REPO / "config" / "presets"


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


def _validate(instance: Any, schema_path: Path, what: str) -> None:
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            allowed = err.schema.get("enum") if isinstance(err.schema, dict) else None
            hint = f" (allowed: {allowed})" if allowed else ""
            lines.append(f"{what} key {where}: {err.message}{hint}")
        raise ConfigError("\n".join(lines))


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it, as Snakemake's ``validate`` does.

    Raises
    ------
    ConfigError
        Naming the offending key path and what the schema allows there.
    """
    _validate(config, schema_path, "config")
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file, validate it and fill defaults."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    return validate_config(config)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def resolve_networks(training: dict[str, Any], presets_dir: Path = PRESETS_DIR) -> dict[str, dict[str, Any]]:
    """Hyperparameters of the four networks: the named preset with ``training.networks`` merged in.

    Raises
    ------
    ConfigError
        If the preset is missing or the merged values break ``networks.schema.yaml``.
    """
    path = Path(presets_dir) / f"{training.get('preset', 'tiny')}.yaml"
    if not path.exists():
        raise ConfigError(f"config key training.preset: no preset file {path}")
    networks = _merge(yaml.safe_load(path.read_text()), training.get("networks", {}))
    _validate(networks, NETWORKS_SCHEMA_PATH, f"preset {path.stem}")
    return networks


def settings_from_section(cls, section: dict[str, Any], ignore: tuple[str, ...] = ()):
    """Instance of the settings dataclass ``cls`` from a config section: keys in ``ignore`` (used by the
    caller, not by ``cls``) dropped, YAML lists turned into the tuples the dataclasses hold."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items() if k not in ignore})


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
