"""``config/README.md``, generated from the workflow schema: the schema is the one place a key, its default,
its allowed values and its meaning are written.

Regenerate after editing ``workflow/schemas/config.schema.yaml``::

    python -m img2spec.configdoc > config/README.md

A test keeps the two equal.  Each top-level section with a ``title`` gets its own heading, its
``description`` as prose and a table of every key below it; the allowed values are read from the
schema's constraints (enum, bounds, item counts, patterns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import SCHEMA_PATH

HEADER = "| key | default | allowed | meaning |\n|---|---|---|---|"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    return "`" + json.dumps(value, ensure_ascii=False).replace('"', "") + "`"


def _bounds(schema: dict) -> list[str]:
    low = (">", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else ("≥", schema.get("minimum"))
    high = ("<", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else ("≤", schema.get("maximum"))
    if low[1] is not None and high[1] is not None and low[0] == "≥" and high[0] == "≤":
        return [f"{low[1]}–{high[1]}"]
    return [f"{sign} {value}" for sign, value in (low, high) if value is not None]


def allowed(schema: dict) -> str:
    """The values a key takes, in words, from its schema's constraints."""
    if "enum" in schema:
        return ", ".join(_literal(v) for v in schema["enum"])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words: list[str] = []
    for kind in types:
        if kind in ("number", "integer"):
            words.append(f"{kind} {', '.join(_bounds(schema))}" if _bounds(schema) else kind)
        elif kind == "boolean":
            words.append("true, false")
        elif kind == "null":
            words.append("null")
        elif kind == "string":
            words.append(f"text matching `{schema['pattern']}`" if "pattern" in schema else "text")
        elif kind == "array":
            count = (schema.get("minItems"), schema.get("maxItems"))
            items = schema.get("items", {})
            what = allowed(items) if items else "values"
            if count[0] is not None and count[0] == count[1]:
                words.append(f"{count[0]} × ({what})")
            elif count[0]:
                words.append(f"≥ {count[0]} × ({what})")
            else:
                words.append(f"list of ({what})")
        elif kind == "object":
            extra = schema.get("additionalProperties")
            words.append(f"name → ({allowed(extra)})" if isinstance(extra, dict) else "mapping")
    return "; or ".join(words) if words else "any"


def _rows(schema: dict, path: str) -> list[str]:
    properties = schema.get("properties")
    if properties:
        return [row for name, sub in properties.items() for row in _rows(sub, f"{path}.{name}" if path else name)]
    default = _literal(schema["default"]) if "default" in schema else "–"
    cells = [f"`{path}`", default, allowed(schema), schema.get("description", "")]
    # a bare | would end the cell (patterns hold alternatives)
    return ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"]


def render(schema: dict) -> str:
    """The Markdown reference of ``schema`` (the workflow's config schema, as loaded)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from workflow/schemas/config.schema.yaml by `python -m img2spec.configdoc`; edit the schema. -->",
        "",
        schema["description"],
        "",
    ]
    untitled = {name: sub for name, sub in schema["properties"].items() if "title" not in sub}
    if untitled:
        lines += ["## Top level", "", HEADER]
        lines += [row for name, sub in untitled.items() for row in _rows(sub, name)]
        lines.append("")
    for name, sub in schema["properties"].items():
        if "title" not in sub:
            continue
        lines += [f"## `{name}`: {sub['title']}", ""]
        if "properties" in sub and sub.get("description"):
            lines += [sub["description"], ""]
        lines += [HEADER, *_rows(sub, name), ""]
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render(yaml.safe_load(Path(SCHEMA_PATH).read_text())))


if __name__ == "__main__":
    main()
