"""Workflow configuration: validation against the JSON schemas (defaults filled), presets, typed settings.

Imports only yaml and jsonschema at module level, so the Snakefile can use it without the science stack.
"""

from __future__ import annotations

import contextlib
import copy
import traceback
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import noise_levels
from .networks import (
    NETWORK_NAMES,
    ContrastiveHyperparameters,
    DiffusionHyperparameters,
    hyperparameters,
    network,
)

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


def _validate(instance: Any, schema: Path | dict[str, Any], what: str, prefix: str = "") -> None:
    """Fill ``instance``'s defaults from ``schema`` (a file or a loaded schema); a ConfigError naming every bad key."""
    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = (
                ".".join([prefix, *map(str, err.absolute_path)] if prefix else map(str, err.absolute_path))
                or "(top level)"
            )
            allowed = err.schema.get("enum") if isinstance(err.schema, dict) else None
            hint = f" (allowed: {allowed})" if allowed else ""
            lines.append(f"{what} key {where}: {err.message}{hint}")
        raise ConfigError("\n".join(lines))


_SCALAR_TYPES: dict[str, type | tuple[type, ...]] = {
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
    "array": list,
    "object": dict,
}


def _resolved(schema: dict, root: dict) -> dict:
    """``schema`` with its local ``$ref`` followed and its ``allOf`` parts' properties merged in."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**_resolved(target, root), **{k: v for k, v in schema.items() if k != "$ref"}}
    if "allOf" in schema:
        properties = dict(schema.get("properties", {}))
        for part in schema["allOf"]:
            properties.update(_resolved(part, root).get("properties", {}))
        schema = {**schema, "properties": properties}
    return schema


def coerce_strings(instance: Any, schema: dict, root: dict | None = None) -> Any:
    """``instance`` with strings turned into the non-string types its schema asks for, where they parse as such.

    Snakemake passes the values of nested ``--config`` dictionaries as strings
    (``--config training='{devices: 4}'`` gives ``"4"``); each such string is read as YAML and kept
    only if the result has a type the schema allows.  Everything else is left for validation to judge.
    """
    root = schema if root is None else root
    schema = _resolved(schema, root)
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = coerce_strings(value, sub, root)
        return instance
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(item, schema["items"], root) for item in instance]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(instance, str) and "string" not in types and any(t in _SCALAR_TYPES for t in types):
        try:
            parsed = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        if isinstance(parsed, str) and ("number" in types or "integer" in types):
            with contextlib.suppress(ValueError):
                parsed = float(parsed)  # YAML 1.1 reads 2e-4 (no dot) as a string
        wanted = tuple(_SCALAR_TYPES[t] for t in types if t in _SCALAR_TYPES)
        if isinstance(parsed, wanted) and not (isinstance(parsed, bool) and bool not in wanted):
            return coerce_strings(parsed, schema, root)
    return instance


def _ordered(path: str, low: Any, high: Any, strict: bool = True) -> str | None:
    if low is None or high is None:
        return None
    if low < high or (not strict and low <= high):
        return None
    return f"config key {path}: {low} must be {'below' if strict else 'at most'} {high}"


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Cross-field checks the schema cannot express, on a validated config (defaults filled).

    Raises
    ------
    ConfigError
        Listing every inconsistent pair of keys.
    """
    problems = []
    inference = config["inference"]
    problems.append(
        _ordered("inference.keep_lr", inference["keep_lr"], inference["k_lr"], strict=False)
        and f"config key inference.keep_lr: keeps {inference['keep_lr']} of k_lr = {inference['k_lr']} candidates; "
        "it must be at most k_lr"
    )
    percentiles = inference["percentiles"]
    if not (50.0 in percentiles and min(percentiles) < 50.0 < max(percentiles)):
        problems.append(
            f"config key inference.percentiles: {percentiles} must hold 50 (the median of candidates) and a "
            "percentile on each side of it (the uncertainty band, e.g. 16 and 84)"
        )
    pooled = inference["k_lr"] * inference["keep_lr"] * inference["k_sr"]
    if pooled < 2:
        problems.append(
            f"config key inference.k_lr × keep_lr × k_sr: {inference['k_lr']} × {inference['keep_lr']} × "
            f"{inference['k_sr']} = 1 candidate per galaxy gives an uncertainty band of zero width; draw at least 2"
        )
    ablation = config.get("ablation", {}).get("inference", {})
    if "keep_lr" in ablation or "k_lr" in ablation:
        keep, k = ablation.get("keep_lr", inference["keep_lr"]), ablation.get("k_lr", inference["k_lr"])
        problems.append(
            keep > k and f"config key ablation.inference.keep_lr: {keep} must be at most ablation.inference.k_lr = {k}"
        )
    mock = config["mock"]
    problems.append(
        _ordered("mock.population.z_min", mock["population"]["z_min"], mock["population"]["z_max"])
        and f"config key mock.population.z_min: {mock['population']['z_min']} must be below mock.population.z_max = "
        f"{mock['population']['z_max']}"
    )
    dataset_z = config["dataset"]["z_min"], config["dataset"]["z_max"]
    problems.append(_ordered("dataset.z_min", *dataset_z))
    if config["survey"] == "mock" and not (
        dataset_z[0] <= mock["population"]["z_min"] and mock["population"]["z_max"] <= dataset_z[1]
    ):
        problems.append(
            f"config key dataset.z_min/z_max: {dataset_z[0]}–{dataset_z[1]} would reject mock galaxies drawn at "
            f"mock.population.z_min/z_max = {mock['population']['z_min']}–{mock['population']['z_max']}"
        )
    query = config["sdss"]["query"]
    problems.append(_ordered("sdss.query.z_min", query["z_min"], query["z_max"]))
    redshift = config["evaluation"]["redshift"]
    problems.append(_ordered("evaluation.redshift.z_min", redshift["z_min"], redshift["z_max"]))
    pre = config["preprocessing"]
    problems.append(_ordered("preprocessing.wave_min", pre["wave_min"], pre["wave_max"]))
    problems.append(_ordered("preprocessing.norm_window", *pre["norm_window"]))
    problems.append(
        _ordered("preprocessing.r_out", pre["r_out"], pre["r_in"])
        and f"config key preprocessing.r_out: {pre['r_out']} must be below r_in = {pre['r_in']} (the spectra are degraded)"
    )
    dataset = config["dataset"]
    if config["survey"] == "mock" and dataset["n_val"] + dataset["n_test"] >= mock["n_galaxies"]:
        problems.append(
            f"config key dataset.n_val + dataset.n_test: {dataset['n_val']} + {dataset['n_test']} leaves no training "
            f"galaxy of mock.n_galaxies = {mock['n_galaxies']}"
        )
    if "test" in config.get("predict_images", {}):
        problems.append(
            "config key predict_images.test: the name 'test' belongs to the test split's predictions "
            "(results/predictions/test.h5); give the cube file another name"
        )
    messages = [p for p in problems if p is not None and p]
    if messages:
        raise ConfigError("\n".join(messages))
    return config


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it, as Snakemake's ``validate`` does.

    Raises
    ------
    ConfigError
        Naming the offending key path and what the schema allows there.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce_strings(config, schema)
    _validate(config, schema_path, "config")
    return check_config(config)


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML takes the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}, line {line}: key {key!r} given twice (first on line {seen[key]}); "
                    "YAML would silently keep the last"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file, refusing duplicate keys; errors name the file and line.

    Raises
    ------
    ConfigError
        For a syntax error or a duplicate key.
    """
    path = Path(path)
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        raise ConfigError(f"{path}, {where}: not valid YAML ({err.problem})") from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (:func:`read_yaml`), validate it and fill defaults."""
    config = read_yaml(path) or {}
    return validate_config(config)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def resolve_networks(training: dict[str, Any], presets_dir: Path = PRESETS_DIR) -> dict[str, dict[str, Any]]:
    """Hyperparameters of the four networks (:mod:`img2spec.networks`): the named preset with ``training.networks`` merged in.

    Raises
    ------
    ConfigError
        If the preset is missing or the merged values break ``networks.schema.yaml``.
    """
    path = Path(presets_dir) / f"{training.get('preset', 'tiny')}.yaml"
    if not path.exists():
        raise ConfigError(f"config key training.preset: no preset file {path}")
    overrides = coerce_strings(training.get("networks", {}), yaml.safe_load(NETWORKS_SCHEMA_PATH.read_text()))
    networks = _merge(yaml.safe_load(path.read_text()), overrides)
    if set(networks) != set(NETWORK_NAMES):
        raise ConfigError(
            f"preset {path}: networks {sorted(networks)}; the method's networks are {', '.join(NETWORK_NAMES)}"
        )
    _validate(networks, NETWORKS_SCHEMA_PATH, f"(preset {path.stem} with overrides)", prefix="training.networks")
    frames = {name: hp.get("frame", "observed") for name, hp in networks.items()}
    if len(set(frames.values())) > 1:
        raise ConfigError(
            f"config key training.networks.<network>.frame: the networks must share one frame (preset {path.stem} "
            f"with overrides gives {frames})"
        )
    rest = set(frames.values()) == {"rest"}
    for name, hp in networks.items():
        wanted = rest and network(name).is_diffusion and not network(name).conditioned_on_lowres
        if bool(hp.get("redshift")) != wanted:
            raise ConfigError(
                f"config key training.networks.{name}.redshift: "
                + (
                    "the low-resolution CDM of rest-frame networks needs a redshift head, which places its spectra"
                    if wanted
                    else "only the low-resolution CDM of rest-frame networks has a redshift head"
                )
            )
    return networks


#: The diffusion networks and the inference key of the noise level their sampling ends at.
FINAL_NOISE_KEYS = {"cdm_lr": "final_noise_lr", "cdm_sr": "final_noise_sr"}


def check_sampling_steps(config: dict[str, Any], networks: dict[str, dict[str, Any]]) -> None:
    """Check that the fast samplers' ``inference.steps`` (and ``ablation.inference.steps``) fit between each
    CDM's final noise level and the start of its schedule, so that a wrong pair fails at start-up and
    not when prediction starts after training.

    ``networks`` are the resolved hyperparameters (:func:`resolve_networks`).

    Raises
    ------
    ConfigError
        Naming the keys and the most steps the schedule allows.
    """
    inference = config["inference"]
    if inference["sampler"] == "ancestral":  # takes every step down to the final one, whatever ``steps``
        return
    problems = []
    wanted = [("inference.steps", inference["steps"])]
    if "steps" in config.get("ablation", {}).get("inference", {}):
        wanted.append(("ablation.inference.steps", config["ablation"]["inference"]["steps"]))
    for name, key in FINAL_NOISE_KEYS.items():
        timesteps = networks[name]["timesteps"]
        try:
            last = noise_levels.final_step(
                noise_levels.named_betas(networks[name]["schedule"], timesteps), inference[key]
            )
        except ValueError as err:
            problems.append(f"config key inference.{key}: {err} (the {name} network's {timesteps}-step schedule)")
            continue
        room = timesteps - last
        problems += [
            f"config key {path}: {steps} steps do not fit in the {room} steps of {name}'s {timesteps}-step schedule "
            f"above inference.{key} = {inference[key]} (step {last}); lower {path} to at most {room} or {key}"
            for path, steps in wanted
            if steps > room
        ]
    if problems:
        raise ConfigError("\n".join(problems))


def network_hyperparameters(training: dict[str, Any], presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    """The four networks' typed hyperparameters (:mod:`img2spec.networks`), from :func:`resolve_networks`."""
    return {name: hyperparameters(name, hp) for name, hp in resolve_networks(training, presets_dir).items()}


def saved_hyperparameters(
    name: str, section: dict[str, Any], source: str | Path
) -> DiffusionHyperparameters | ContrastiveHyperparameters:
    """Typed hyperparameters of network ``name`` as the checkpoint ``source`` saved them.

    Keys added to ``networks.schema.yaml`` since the checkpoint was written take their defaults,
    which keep the behaviour the network was trained with, so older checkpoints stay readable.

    Raises
    ------
    ConfigError
        Naming ``source`` and the key, where the saved values break the schema.
    """
    schema = yaml.safe_load(NETWORKS_SCHEMA_PATH.read_text())
    completed = copy.deepcopy(section)
    _validate(completed, {"$defs": schema["$defs"], **schema["properties"][name]}, f"{source}: saved", prefix=name)
    return hyperparameters(name, completed)


def declared(files: Any) -> dict[str, str]:
    """The named files of a rule's ``input`` or ``output`` (Snakemake's named list), by name.

    Entry scripts pass a rule's outputs to the library as keyword arguments, so the rule is the one
    place that names them: a library function's output parameters carry the rule's output names.
    """
    return {name: str(path) for name, path in files.items()}


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
