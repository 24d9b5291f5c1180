"""`--dry-run` states the calls the real run makes, on an OpenAI-style and an Anthropic-style API.

Real SDKs over loopback HTTP to the emulator, rude as real servers are (stray 500s, empty
completions, short top-logprob lists). The dry run plans logical calls; a retry is the same call
sent again, which no plan can foresee. So every row's calls equal the dry run's per-row figure
exactly, a judged row's extra calls fall in the dry run's per-judged-row range, the run's logical
calls fall in the stated range, and the requests sent are those calls plus the retries counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clearapi.clear.curation import curate, estimate
from clearapi.clear.estimate import Estimate
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
ROWS = 12
CASES = [("openai", "gpt-4o-mini", "/v1", "OPENAI_API_KEY"),
         ("anthropic", "claude-3-5-haiku-latest", "", "ANTHROPIC_API_KEY")]


def _input(tmp_path: Path, rows: int) -> Path:
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _run_and_compare(src: Path, out: Path, **options: Any) -> tuple[Estimate, list[dict[str, Any]]]:
    """Estimate, run, and check the run's logical calls against the plan; the estimate and the scores."""
    options.update(cache=False, filter_fraction=0.5, correct_threshold=0.0, eta=0.0)
    est = estimate(src, **options)
    summary = asyncio.run(curate(src, out, **options))
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    low, high = est.judgement_calls_per_row
    judged = [s["details"]["judgement"]["scorer_calls"] for s in scores if "judgement" in s["details"]]
    assert judged and all(low <= calls <= high for calls in judged), (judged, low, high)
    # every call a row made is a planned scoring call or one of its judgement's
    assert sum(s["calls"] for s in scores) - sum(judged) == est.scoring_calls
    stats = summary.engine
    assert stats.logical_calls == sum(s["calls"] for s in scores)
    assert est.scoring_calls <= stats.logical_calls <= est.scoring_calls + est.judgement_calls_max
    assert stats.requests == stats.logical_calls + sum(stats.retries.values())
    return est, scores


@pytest.mark.parametrize(("provider", "model", "suffix", "env"), CASES, ids=[c[0] for c in CASES])
def test_the_dry_run_states_the_real_runs_calls(provider: str, model: str, suffix: str, env: str,
                                                 tmp_path: Path, emulator_factory: Callable[..., EmulatorThread],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # stray 500s are drawn from each request's content: at the default 2% a small run may draw none
    emulator = emulator_factory(stray_500_rate=0.2)
    monkeypatch.setenv(env, "sk-test-not-a-real-key-000")
    src = _input(tmp_path, ROWS)
    est, scores = _run_and_compare(src, tmp_path / "out", provider=provider, model=model,
                                   base_url=emulator.base_url + suffix)
    per_row = est.scoring_calls // ROWS
    # no demonstrations on a billed API: every row is planned alike, and makes exactly those calls
    for s in scores:
        judgement = s["details"].get("judgement")
        assert s["calls"] - (judgement["scorer_calls"] if judgement else 0) == per_row, s
    assert sum(json.loads((tmp_path / "out" / "summary.json").read_text())["engine"]["retries"].values()) > 0, \
        "the emulator's stray 500s (seeded) were retried"


@pytest.mark.local
def test_the_dry_run_states_the_local_models_calls(tmp_path: Path, local_model_path: Path) -> None:
    """Self-hosted: demonstrations, two demonstration sets, the best answer and likelihood judging."""
    _run_and_compare(_input(tmp_path, 4), tmp_path / "out", provider="local", model_path=str(local_model_path),
                     samples=1, demonstrations=1)


def test_a_likelihood_judgement_is_planned_as_the_passes_it_sends() -> None:
    from clearapi.clear.pipeline import ScoringPlan
    from clearapi.profiles import load_profile

    local = load_profile("local")
    plan = ScoringPlan.for_capabilities(local.capabilities_for(local.default_model))
    assert plan.likelihood and plan.sets() == 2
    # y and y′, conditioned and baseline, under one set at the fewest and each set at the most, and the
    # text judgement (both orders) should a pass come back without logprobs
    assert plan.judge_calls() == (4, 4 * 2 + 2)
    assert plan.judge_calls(likelihood=False) == (2, 2)  # a separate judge judges by text
    openai = load_profile("openai")
    assert ScoringPlan.for_capabilities(openai.capabilities_for("gpt-4o-mini")).judge_calls() == (2, 2)
