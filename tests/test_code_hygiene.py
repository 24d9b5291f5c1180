"""The runtime package holds code and its why, not lab notes; and its dependencies point one way.

Dates, issue numbers and "where it was built" belong in docs/ (docs/method.md,
docs/finetune.md); model names that carry a release date (``gpt-4.1-mini-2025-04-14``)
and format examples (an RFC 3339 instant) are data, not notes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clearapi"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: a date not glued to a model name (``-2025-04-14``) and not an RFC 3339 instant (``...T12:00``)
DATE = re.compile(r"(?<![-\w])20\d\d-\d\d(?:-\d\d)?+(?![\dT])")
NOTES = [
    DATE,
    re.compile(r"\bissue\s*#?\s*\d+", re.IGNORECASE),
    re.compile(r"\bissue #", re.IGNORECASE),
    re.compile(r"where (?:this|it) was (?:built|written|made)", re.IGNORECASE),
    re.compile(r"\bno live \w+ (?:server )?was available", re.IGNORECASE),
    re.compile(r"\b(?:checked|read|measured) (?:on )?20\d\d", re.IGNORECASE),
    re.compile(r"\bAUROC\b[^\n]{0,40}\b0\.\d\d|\b0\.\d\d\b[^\n]{0,40}\bAUROC\b"),
]


def test_the_patterns_catch_what_they_are_for() -> None:
    caught = ["Sources (all read 2026-11-25)", "batch mode (issue 9)", "see issue #20",
              "no live vLLM server was available where this was built", "(0.77/0.75 vs 0.69/0.72 AUROC)",
              "checked 2026"]
    for text in caught:
        assert any(p.search(text) for p in NOTES), text
    for text in ['default_model="gpt-4.1-mini-2025-04-14"', '``"2024-06-01T12:00:30Z"``', "AUROC rises"]:
        assert not any(p.search(text) for p in NOTES), text


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_lab_notes_in_the_runtime_package(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    hits = [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for p in NOTES for m in p.finditer(text)]
    assert hits == []


def test_the_engine_never_imports_an_adapter() -> None:
    engine = PACKAGE / "engine"
    hits = [p.name for p in engine.rglob("*.py") if "clearapi.adapters" in p.read_text(encoding="utf-8")]
    assert hits == []


def test_batch_submitters_use_only_their_adapters_public_surface() -> None:
    for name in ("openai_batch.py", "anthropic_batch.py"):
        text = (PACKAGE / "adapters" / name).read_text(encoding="utf-8")
        assert re.findall(r"_adapter\._\w+", text) == [], name
