"""Shared output of the benchmark scripts: print a markdown report and, when asked, write it to a file."""

from __future__ import annotations

from pathlib import Path


def emit(text: str, out: Path | None) -> None:
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
