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
from pathlib import Path

import pytest

from clearapi.clear.curation import curate, estimate
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
ROWS = 12
CASES = [("openai", "gpt-4o-mini", "/v1", "OPENAI_API_KEY"),
         ("anthropic", "claude-3-5-haiku-latest", "", "ANTHROPIC_API_KEY")]


@pytest.mark.parametrize(("provider", "model", "suffix", "env"), CASES, ids=[c[0] for c in CASES])
def test_the_dry_run_states_the_real_runs_calls(provider: str, model: str, suffix: str, env: str,
                                                 tmp_path: Path, emulator: EmulatorThread,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env, "sk-test-not-a-real-key-000")
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:ROWS]
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = dict(provider=provider, model=model, base_url=emulator.base_url + suffix, cache=False,
                   filter_fraction=0.5, correct_threshold=0.0, eta=0.0)
    est = estimate(src, **options)
    summary = asyncio.run(curate(src, tmp_path / "out", **options))

    scoring_per_row = est.scoring_calls // ROWS
    assert est.scoring_calls == scoring_per_row * ROWS  # no demonstrations on a billed API: uniform rows
    low, high = est.judgement_calls_per_row
    scores = [json.loads(x) for x in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    judged = 0
    for s in scores:
        extra = s["calls"] - scoring_per_row
        if "judgement" in s["details"]:
            judged += 1
            assert low <= extra <= high, s
        else:
            assert extra == 0, s
    assert judged > 0
    stats = summary.engine
    assert stats.logical_calls == sum(s["calls"] for s in scores)
    assert est.scoring_calls <= stats.logical_calls <= est.scoring_calls + est.judgement_calls_max
    retried = sum(stats.retries.values())
    assert retried > 0  # the default stray 500s (seeded) hit these runs
    assert stats.requests == stats.logical_calls + retried
