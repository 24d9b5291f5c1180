"""A row's state is typed: `Score.candidate` and `Score.decision`, written to scores.jsonl beside the old keys.

Real CLI, real OpenAI SDK, loopback emulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearapi.cli import main
from clearapi.records import Candidate, Decision, Score
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def test_scores_carry_the_typed_candidate_and_decision(tmp_path: Path, emulator: EmulatorThread,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                 "--base-url", emulator.base_url + "/v1", "--no-cache", "--filter-fraction", "0.5",
                 "--correct-threshold", "0", "--eta", "0"]) == 0
    raw = [json.loads(x) for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [Score.model_validate(r) for r in raw]
    assert {r.action for r in rows} == {"keep", "correct", "drop"}
    for r, line in zip(rows, raw, strict=True):
        assert isinstance(r.candidate, Candidate) and isinstance(r.decision, Decision)
        # the typed state and the keys users already read say the same thing
        assert line["details"]["candidate"] == r.candidate.text
        assert line["details"]["candidate_confidence"] == r.candidate.confidence
        assert (r.action, r.reason, r.correction) == (r.decision.action, r.decision.reason, r.decision.correction)
        if r.action == "correct":
            assert r.correction == r.candidate.text
