"""The auto-correct judge: debiasing, panels, and a separate judge model end to end (two emulators,
the real openai SDK over loopback HTTP, the real CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from clearapi.clear.curation import CurateOptions
from clearapi.clear.judge import Verdict, debias_orders, panel_judgement
from clearapi.cli import main
from clearapi.errors import ConfigError
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "qa.jsonl"


def _verdict(p: float) -> Verdict:
    return Verdict(judge="j", method="text", orders=[p, p], bias=0.0, preferences=[p, p])


def test_position_bias_is_removed_in_log_odds() -> None:
    # a judge that says 0.8 for whatever comes first and 0.2 for whatever comes second has no opinion
    bias, pref = debias_orders(candidate_second=0.2, candidate_first=0.8)
    assert pref == pytest.approx(0.5)
    assert bias == pytest.approx(math.log(4.0))
    # an unbiased judge keeps its verdict
    bias, pref = debias_orders(candidate_second=0.9, candidate_first=0.9)
    assert bias == pytest.approx(0.0, abs=1e-9) and pref == pytest.approx(0.9)
    # a biased judge that still prefers y′ in both orders keeps a preference above one half
    _, pref = debias_orders(candidate_second=0.6, candidate_first=0.95)
    assert 0.8 < pref < 0.95


def test_panel_needs_all_or_the_stated_majority() -> None:
    verdicts = [_verdict(0.95), _verdict(0.85), _verdict(0.3)]
    assert panel_judgement(verdicts).confidence == pytest.approx(0.3)
    assert panel_judgement(verdicts, majority=2).confidence == pytest.approx(0.85)
    assert panel_judgement(verdicts, majority=1).confidence == pytest.approx(0.95)
    with pytest.raises(ConfigError):
        panel_judgement(verdicts, majority=4)


def test_judge_options_are_checked() -> None:
    assert [j.name for j in CurateOptions(judge_provider=["openai", "anthropic"], judge_model="m").judges()] == \
        ["openai/m", "anthropic/m"]
    with pytest.raises(ConfigError, match="--judge-provider"):
        CurateOptions(judge_model="gpt-4o").check()
    with pytest.raises(ConfigError, match="once per --judge-provider"):
        CurateOptions(judge_provider=["openai", "openai"], judge_model=["a", "b", "c"]).check()
    with pytest.raises(ConfigError, match="majority"):
        CurateOptions(judge_provider="openai", judge_majority=2).check()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_separate_judge_on_its_own_emulator(tmp_path: Path, emulator_factory: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Scorer on one loopback API, judge on another: each engine's calls land on its own server and
    in its own counts; the corrected rows carry both orders of the judge's verdict and its bias."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    scorer: EmulatorThread = emulator_factory(polite=True)  # counts each server's requests exactly
    judge: EmulatorThread = emulator_factory(polite=True)
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(EXAMPLES.read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
            "--base-url", scorer.base_url + "/v1", "--no-cache", "--threshold", "1.0", "--correct-threshold", "0",
            "--judge-provider", "openai", "--judge-model", "gpt-4o", "--judge-base-url", judge.base_url + "/v1"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    scores = _jsonl(out / "scores.jsonl")
    judged = [s for s in scores if "judgement" in s["details"]]
    assert judged, "every row is below a threshold of 1.0: some candidates must reach the judge"
    assert summary["engine"]["requests"] == scorer.stats().requests
    assert list(summary["judges"]) == ["openai/gpt-4o"]
    own = summary["judges"]["openai/gpt-4o"]
    assert own["requests"] == judge.stats().requests == 2 * len(judged)  # both orders, nothing else
    assert own["prompt_tokens"] > 0 and own["cost_known"] and own["cost_usd"] > 0
    # the scorer's rows count only the scorer's calls
    assert sum(s["calls"] for s in scores) == summary["engine"]["logical_calls"]
    assert summary["settings"]["per_row"]["judged_rows"] == len(judged)
    for s in judged:
        j = s["details"]["judgement"]
        assert j["original"] == s["response"] and j["candidate"] == s["details"]["candidate"]
        assert j["judge_calls"] == 2 and j["scorer_calls"] == 0
        (v,) = j["verdicts"]
        assert v["judge"] == "openai/gpt-4o" and v["method"] == "text" and len(v["orders"]) == 2
        assert "bias" in v and 0.0 <= v["preference"] <= 1.0
    # the report sets each judged row's verdict beside the response and the candidate
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "debiased preference" in html and "openai/gpt-4o (text)" in html


def test_dry_run_prices_the_scorer_and_the_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["curate", str(EXAMPLES), "-o", str(tmp_path / "out"), "--provider", "openai", "--dry-run",
            "--judge-provider", "openai", "--judge-model", "gpt-4o"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "dry run: openai / gpt-4o-mini" in text
    line = next(x for x in text.splitlines() if x.startswith("judge openai / gpt-4o:"))
    assert "$" in line and "calls" in line
    assert not (tmp_path / "out").exists()


def test_dry_run_counts_each_judge_by_its_own_plan() -> None:
    """A judge without logprobs (Anthropic) samples several verdicts per order: its line counts them,
    instead of the two calls a judge with logprobs needs."""
    import clearapi

    est = clearapi.estimate(EXAMPLES, provider="openai", judge_provider=["openai", "anthropic"],
                            judge_majority=1)
    openai_judge, anthropic_judge = est.judges
    examples = est.rows - est.rejected
    assert openai_judge["calls_per_row"] == [2, 2]
    assert openai_judge["calls_max"] == 2 * examples
    low, high = anthropic_judge["calls_per_row"]
    assert low == 2 and high > 2
    assert anthropic_judge["calls_max"] == high * examples
    assert anthropic_judge["tokens_max"] > openai_judge["tokens_max"]
    line = next(x for x in est.describe().splitlines() if x.startswith("judge anthropic"))
    assert f"(2 to {high} per judged row)" in line
    # the scorer makes no judgement call of its own when separate judges judge
    assert "pairwise judgements: by the separate judges below" in est.describe()
    assert "more for judgements" not in est.describe()
