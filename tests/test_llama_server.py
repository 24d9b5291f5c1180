"""The OpenAI adapter against a real third-party server: llama-cpp-python's own
``python -m llama_cpp.server``, started on 127.0.0.1 with the SmolLM2 file.

The real openai SDK talks real HTTP to it; nothing is faked. The server's greedy logprobs are
also checked against the in-process adapter's: two independent paths through llama.cpp agree.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest_local import LLAMA_MISSING, SKIP_REASON

from clearapi.adapters import create_adapter
from clearapi.profiles import Profile, load_profile
from clearapi.records import ChatRequest, Message

pytestmark = [pytest.mark.local, pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)]

QUESTION = [Message(role="user", content="What is the capital of France? Answer in one sentence.")]


def server_profile(n: bool) -> Profile:
    """The shipped llamacpp-server profile; with n=True it claims `n` works, as a generic profile would."""
    profile = load_profile("llamacpp-server")
    if n:
        profile = profile.model_copy(update={"capabilities": profile.capabilities.model_copy(
            update={"n": True, "max_n": 8})})
    return profile


def adapter_for(server: Any, *, n: bool = False) -> Any:
    return create_adapter(server_profile(n), model=server.model_alias, base_url=server.base_url,
                          api_key=None, timeout=120.0)


async def test_real_logprobs_agree_with_the_in_process_model(llama_server: Any, local_model_path: Path) -> None:
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    req = ChatRequest(messages=QUESTION, max_tokens=8, temperature=0.0, logprobs=True, top_logprobs=5, seed=0)
    adapter = adapter_for(llama_server)
    try:
        remote = await adapter.chat(req)
    finally:
        await adapter.aclose()
    choice = remote.choices[0]
    assert choice.logprobs, "the server returned no logprobs"
    for tok in choice.logprobs:
        assert tok.logprob is not None and math.isfinite(tok.logprob) and tok.logprob <= 0.0
        assert 1 <= len(tok.top) <= 5
        assert all(a.logprob <= 0.0 for a in tok.top)
    assert sum(t.logprob for t in choice.logprobs) < 0.0
    assert remote.usage.prompt_tokens > 0 and remote.usage.completion_tokens == len(choice.logprobs)

    local = await LocalLlamaAdapter(model_path=local_model_path).chat(req)
    assert choice.text == local.text
    assert [t.token for t in choice.logprobs] == [t.token for t in local.choices[0].logprobs]
    assert [t.logprob for t in choice.logprobs] == pytest.approx(
        [t.logprob for t in local.choices[0].logprobs], abs=1e-3)


async def test_server_ignoring_n_is_detected_and_made_up_with_extra_calls(llama_server: Any) -> None:
    adapter = adapter_for(llama_server, n=True)
    try:
        assert adapter.capabilities.n
        req = ChatRequest(messages=[Message(role="user", content="Name one fruit.")], max_tokens=5,
                          temperature=1.0, n=3, seed=3)
        resp = await adapter.chat(req)
        assert len(resp.choices) == 3
        assert resp.calls == 3, "one call that returned 1 choice, then 2 separate calls"
        assert any("n ignored" in note for note in resp.notes), resp.notes
        assert not adapter.capabilities.n, "the adapter should remember the server ignores n"
        again = await adapter.chat(req)
        assert again.calls == 3 and not any("n ignored" in note for note in again.notes)
        assert [c.text for c in again.choices] == [c.text for c in resp.choices], "seeded samples repeat"
    finally:
        await adapter.aclose()


async def test_twenty_alternatives(llama_server: Any) -> None:
    adapter = adapter_for(llama_server)
    try:
        resp = await adapter.chat(ChatRequest(messages=QUESTION, max_tokens=2, logprobs=True, top_logprobs=20))
    finally:
        await adapter.aclose()
    for tok in resp.choices[0].logprobs or []:
        assert len(tok.top) == 20
        assert [a.logprob for a in tok.top] == sorted((a.logprob for a in tok.top), reverse=True)
    assert resp.choices[0].logprobs


ROOT = Path(__file__).resolve().parents[1]


def _varied_rows(path: Path, per_set: int = 30) -> int:
    """The first `per_set` rows of each short labelled set: reading comprehension, arithmetic, unit
    conversions, definitions, email subjects, word questions and general knowledge, 1 in 3 with a
    system message, about a quarter corrupted."""
    lines: list[str] = []
    for name in ("qa.jsonl", "heldout/qa.jsonl", "factual/qa.jsonl"):
        lines += (ROOT / "examples" / name).read_text(encoding="utf-8").splitlines()[:per_set]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


@pytest.mark.timeout(600)
def test_curate_over_the_real_server_with_the_openai_provider_scores_every_row(
        llama_server: Any, tmp_path: Path) -> None:
    """`clearapi curate --provider openai --base-url` at llama-cpp-python's server, as a user would point
    it at any OpenAI-compatible server: 90 rows, the billed-API plan (2 calls per row: the rating read
    from top logprobs, and a sample; one sample keeps it fast, test_server_ignoring_n covers ``n``), no
    cache. Every row is scored, no stop, exit 0."""
    import json
    import os
    import subprocess
    import sys
    import time

    src = tmp_path / "rows.jsonl"
    total = _varied_rows(src)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(out), "--provider", "openai",
           "--base-url", llama_server.base_url, "--model", llama_server.model_alias, "--no-cache",
           "--samples", "1", "--no-progress"]
    env = {**os.environ, "OPENAI_API_KEY": "sk-no-key-needed"}
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=580)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert summary["completed"] is True and summary["stopped_reason"] is None
    assert c["rows"] == total == 90 and c["rejected"] == 0 and c["failed"] == 0
    assert c["kept"] + c["corrected"] + c["dropped"] == total
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["line"] for s in scores] == list(range(1, total + 1))
    assert summary["settings"]["logprobs_fallback"] is None  # it returns logprobs: the plan is kept
    for s in scores:
        assert s["methods"]["self_rating"].startswith("logprobs") and s["signals"]["self_rating"] is not None
        assert s["signals"]["consistency"] is not None and len(s["details"]["samples"]) == 1
        assert s["calls"] >= 2
    assert summary["engine"]["requests"] >= 2 * total
    print(f"\n{total} rows through llama_cpp.server in {took:.0f} s: {summary['engine']['requests']} HTTP calls, "
          f"{summary['settings']['per_row']['calls']} logical calls per row")
