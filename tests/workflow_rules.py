"""The tests' one reader of the workflow's ``.smk`` files: each rule's outputs, conda env, script and report files.

Entry scripts pass a rule's named outputs to the library as keyword arguments
(:func:`img2spec.config.declared`), so a test that calls the library with :func:`rule_outputs`
fails as soon as a rule and the function it runs disagree on an output's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
_RULE = re.compile(r"^( *)rule (\w+):\n", re.MULTILINE)
_DIRECTIVE = re.compile(r"^ {4}(\w+):\n?(.*?)(?=^ {4}\w+:|\Z)", re.MULTILINE | re.DOTALL)
_NAMED = re.compile(r'^ {8}(\w+)=(?:report\(\s*)?"([^"]+)"', re.MULTILINE)


@dataclass(frozen=True)
class Rule:
    """One rule of ``rules/*.smk``: its file and the text of each directive (``output``, ``conda``, …)."""

    name: str
    smk: Path
    directives: dict[str, str]

    def path_of(self, directive: str) -> Path | None:
        """The file a ``conda:`` or ``script:`` directive names, resolved beside the ``.smk`` file."""
        quoted = re.search(r'"([^"]+)"', self.directives.get(directive, ""))
        return (self.smk.parent / quoted.group(1)).resolve() if quoted else None

    @property
    def named_outputs(self) -> dict[str, str]:
        """Outputs declared as ``name="path"`` (or ``name=report("path", …)``); helpers' outputs are not read."""
        return dict(_NAMED.findall(self.directives.get("output", "")))


@cache
def rules() -> dict[str, Rule]:
    """Every rule of the workflow by name."""
    found = {}
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        for match in _RULE.finditer(text):
            indent = len(match.group(1))
            # the rule ends at the first non-blank line indented no deeper than ``rule`` (rules may sit in an ``if``)
            end = re.compile(rf"^ {{0,{indent}}}\S", re.MULTILINE).search(text, match.end())
            body = text[match.end() : end.start() if end else len(text)]
            dedented = "\n".join(line[indent:] for line in body.split("\n"))
            found[match.group(2)] = Rule(match.group(2), smk, dict(_DIRECTIVE.findall(dedented)))
    return found


def rule_outputs(rule: str, folder: Path, **wildcards: str) -> dict[str, Path]:
    """``{output name: folder / file name}`` of the named outputs of ``rule`` (wildcards filled in)."""
    if rule not in rules():
        raise ValueError(f"no rule {rule} in {RULES}")
    declared = rules()[rule].named_outputs
    if not declared:
        raise ValueError(f"{rules()[rule].smk}: rule {rule} has no named output")
    return {name: folder / Path(path.format(**wildcards)).name for name, path in declared.items()}


def report_paths() -> list[str]:
    """Every file the rules wrap in ``report()`` (``multiext`` expanded), wildcards left in."""
    text = "\n".join(rule.directives.get("output", "") for rule in rules().values())
    paths = []
    for block in re.findall(r"report\(\s*(.*?),\s*caption", text, re.DOTALL):
        quoted = re.findall(r'"([^"]+)"', block)
        paths += [quoted[0] + name for name in quoted[1:]] if block.startswith("multiext") else quoted[:1]
    return paths
