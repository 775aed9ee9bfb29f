"""The one way typed settings are made: from a validated config section, whose schema holds every default.

Each settings dataclass of the library (:class:`img2spec.inference.InferenceSettings`, the networks'
hyperparameters, …) derives from :class:`Settings` and declares no defaults: the workflow's JSON
schemas do (``workflow/schemas``), so a default is written once.  :meth:`Settings.from_config` turns
a validated section into the frozen dataclass (nested sections into theirs, lists into tuples) and
refuses unknown or missing keys; :meth:`Settings.defaults` builds one from the schema's defaults,
for code and tests that run outside the workflow.  Standard library only at import, so that the
Snakefile can use it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Base of the settings dataclasses: built from, and written back to, a validated config section.

    Class attributes
    ----------------
    SECTION : str
        Dotted path of the config section the class is built from (``"evaluation.ppxf"``); empty for
        classes whose section is not one of the workflow config (the networks' hyperparameters).
    CALLERS_KEYS : tuple of str
        Keys of that section that the calling rule uses itself (threads, a device, a download URL),
        left out of the dataclass.
    """

    SECTION: ClassVar[str] = ""
    CALLERS_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str | None = None, **given: Any) -> Self:
        """Instance from a validated ``section``: nested sections become their dataclasses, lists tuples.

        ``given`` are fields that the section does not hold (e.g. a resolving power from another section).

        Raises
        ------
        ValueError
            Naming ``where`` (the section path by default) and the key, for a missing or unknown key.
        """
        where = where or cls.SECTION or cls.__name__
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in section.items() if k not in cls.CALLERS_KEYS}
        unknown, missing = sorted(set(values) - names), sorted(names - set(values) - set(given))
        if unknown or missing:
            problems = [f"{what} keys {keys}" for what, keys in (("unknown", unknown), ("missing", missing)) if keys]
            raise ValueError(f"{where}: " + ", ".join(problems))
        typed = {name: _typed(value, hints[name], f"{where}.{name}") for name, value in values.items()}
        return cls(**typed, **given)

    @classmethod
    def defaults(cls, **overrides: Any) -> Self:
        """Instance from the workflow schema's defaults of :attr:`SECTION`, with ``overrides`` (field values) applied."""
        if not cls.SECTION:
            raise TypeError(f"{cls.__name__} has no config section to take defaults from")
        section: Any = schema_defaults()
        for key in cls.SECTION.split("."):
            section = section[key]
        merged = {**section, **{k: v for k, v in overrides.items() if k in section}}
        return cls.from_config(merged, **{k: v for k, v in overrides.items() if k not in section})

    def to_config(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), as the config section it came from."""

        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: plain(item) for key, item in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(item) for item in value]
            return value

        return plain(dataclasses.asdict(self))


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    # imported here: config imports networks, whose hyperparameters derive from Settings
    from .config import validate_config

    return validate_config({})


def schema_defaults() -> dict[str, Any]:
    """The workflow config with nothing set: every default of ``config.schema.yaml`` (a fresh copy)."""
    return copy.deepcopy(_schema_defaults())


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the field type ``hint`` wants it: a nested dataclass, a tuple, a dict of tuples, or as it is."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if isinstance(option, type) and issubclass(option, Settings):
            return value if isinstance(value, option) else option.from_config(value, where)
        origin = typing.get_origin(option)
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if origin is dict and isinstance(value, Mapping):
            item = typing.get_args(option)[1]
            return {key: _typed(entry, item, f"{where}.{key}") for key, entry in value.items()}
    return value
