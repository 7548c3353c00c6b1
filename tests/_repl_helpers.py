"""Helpers shared by the REPL tests: a StringIO console, scripted input, output-pair checks."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from personalization_engine.fingerprint import load_schema, verify_pair
from personalization_engine.repl import render

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "run_qwen_interactive.py"


def make_test_console(width: int = 120) -> tuple[Any, io.StringIO]:
    buf = io.StringIO()
    return render.make_console(file=buf, width=width, force_terminal=False), buf


def scripted(lines: Iterable[Any]):
    """An input function typing ``lines``; an exception class in the list is raised instead."""
    it = iter(lines)

    def ask(prompt: str) -> str:
        try:
            item = next(it)
        except StopIteration:
            raise EOFError from None
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    return ask


def pairs(folder: Path) -> list[Path]:
    return sorted(folder.glob("cloned_*.json"))


def check_pairs(folder: Path, n: int) -> list[dict[str, Any]]:
    """Exactly ``n`` complete pairs, schema-valid, and nothing else in the folder."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(load_schema())
    found = pairs(folder)
    assert len(found) == n, sorted(p.name for p in folder.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in found] + [p.with_suffix(".wav").name for p in found])
    out = []
    for path in found:
        data = verify_pair(path).to_dict()
        validator.validate(data)
        out.append(data)
    return out
