"""The output files a rule declares, read from its ``.smk`` file, for calling the library as the rule's script does.

Entry scripts pass a rule's named outputs to the library as keyword arguments
(:func:`img2spec.config.declared`), so a test that calls the library with :func:`rule_outputs`
fails as soon as a rule and the function it runs disagree on an output's name.
"""

from __future__ import annotations

import re
from pathlib import Path

RULES = Path(__file__).resolve().parents[1] / "rules"
_DECLARED = re.compile(r'^ {8}(\w+)=(?:report\(\s*)?"([^"]+)"', re.MULTILINE)


def rule_outputs(rule: str, folder: Path, **wildcards: str) -> dict[str, Path]:
    """``{output name: folder / file name}`` of the named outputs of ``rule`` written as string literals
    (wildcards filled in); outputs built by a helper such as ``survey_file`` are not read."""
    for smk in sorted(RULES.glob("*.smk")):
        text = smk.read_text()
        found = re.search(rf"^rule {rule}:\n", text, re.MULTILINE)
        if found is None:
            continue
        body = re.split(r"\n(?=\S)", text[found.end() :], maxsplit=1)[0]
        section = re.search(r"^ {4}output:\n(.*?)(?=^ {4}\w+:)", body, re.MULTILINE | re.DOTALL)
        if section is None:
            raise ValueError(f"{smk}: rule {rule} declares no output")
        declared = _DECLARED.findall(section.group(1))
        if not declared:
            raise ValueError(f"{smk}: rule {rule} has no named output")
        return {name: folder / Path(path.format(**wildcards)).name for name, path in declared}
    raise ValueError(f"no rule {rule} in {RULES}")
