"""A run-stopping error in pass 2 (the pairwise judgements) is reported as itself.

Real CLI, real OpenAI SDK, loopback emulator: pass 1 makes 2 calls per row (rating and
samples), so with 12 rows the 25th request is the first judgement, and the emulator answers
it with OpenAI's ``insufficient_quota``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clearapi.cli import main
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
ROWS = 12


def test_a_quota_error_in_the_judgements_is_reported_as_quota_exhausted(
        tmp_path: Path, emulator_factory: Callable[..., EmulatorThread], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:ROWS]
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    emu = emulator_factory(fault_at={2 * ROWS + 1: "insufficient_quota"})
    out = tmp_path / "out"
    code = main(["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                 "--base-url", emu.base_url + "/v1", "--no-cache", "--filter-fraction", "0.5",
                 "--correct-threshold", "0", "--eta", "0"])
    assert code == 1
    summary = json.loads((out / "summary.partial.json").read_text())  # a stopped run says so in its names
    assert summary["completed"] is False
    assert summary["stopped_reason"].startswith("QuotaExhausted: openai: HTTP 429 insufficient_quota")
