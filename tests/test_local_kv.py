"""Prefix reuse in the embedded model: what a call returns does not depend on what ran before it.

Each check runs the same request cold (nothing cached: empty sequence, no snapshots) and warm
(after calls that share its prompt prefix, so most of it comes from the cache), on the real
SmolLM2 model, and asserts that the cache was in fact used.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest_local import LLAMA_MISSING, SKIP_REASON

from clearapi.adapters.local_kv import _chunks, common_prefix
from clearapi.clear import prompts
from clearapi.records import ChatRequest, ChatResponse, Message

SYSTEM = Message(role="system", content="You are a concise assistant.")
DEMOS = [Message(role="user", content="What is 2 + 2?"), Message(role="assistant", content="4."),
         Message(role="user", content="Which planet is the largest?"),
         Message(role="assistant", content="Jupiter is the largest planet of the solar system.")]
PROMPT = [SYSTEM, Message(role="user", content="Paris is on the Seine. It is the capital of France.\n\n"
                                            "Question: What is the capital of France?")]
ANSWER = "The capital of France is Paris, on the Seine."


def test_chunks_never_leave_a_one_token_batch() -> None:
    for start, end, cuts, n_batch in [(0, 10, [], 4), (0, 9, [], 4), (3, 20, [5, 6, 19], 8), (0, 513, [], 512),
                                      (7, 9, [8], 512), (0, 1030, [100, 101, 1029], 512)]:
        chunks = _chunks(start, end, cuts, n_batch)
        assert chunks[0][0] == start and chunks[-1][1] == end
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(chunks))
        assert all(2 <= b - a <= n_batch for a, b in chunks), chunks
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2 and common_prefix([], [1]) == 0


@pytest.fixture
def adapter(local_model_path: Path):  # type: ignore[no-untyped-def]
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    a = LocalLlamaAdapter(model_path=local_model_path)
    yield a
    asyncio.run(a.aclose())


def _cold(adapter: Any) -> Any:
    """Forget everything the model's cache holds; returns the cache."""
    from clearapi.adapters.local_kv import PrefixCache

    model = asyncio.run(adapter.load())
    model.kv = PrefixCache(model.llama)
    return model.kv


def _tokens(model: Any, messages: list[Message]) -> list[int]:
    """`messages` under the model's chat template, as the adapter renders a prompt."""
    return list(model.prompt_tokens([{"role": m.role, "content": m.content} for m in messages]))


#: a call of another row, which moves the model's live sequence away from the row under test
ANOTHER_ROWS_CALL = ChatRequest(messages=[Message(role="user", content="Say something else.")], max_tokens=4)


def _lps(response: ChatResponse) -> list[list[float]]:
    return [[t.logprob or 0.0 for t in c.logprobs or []] for c in response.choices]


REQUESTS = {
    "score": ChatRequest(mode="score", logprobs=True, top_logprobs=5,
                         messages=prompts.score_messages(PROMPT, ANSWER, DEMOS)),
    "baseline": ChatRequest(mode="score", logprobs=True, messages=prompts.baseline_messages(PROMPT, ANSWER, DEMOS)),
    "greedy": ChatRequest(messages=prompts.answer_messages(PROMPT, DEMOS), max_tokens=16, logprobs=True),
    "samples": ChatRequest(messages=prompts.answer_messages(PROMPT, DEMOS), max_tokens=16, temperature=1.0, n=3,
                           seed=7, logprobs=True),
}


@pytest.mark.parametrize("name", list(REQUESTS))
@pytest.mark.local
@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
def test_a_call_served_from_the_prefix_cache_equals_a_cold_one(adapter: Any, name: str) -> None:
    request = REQUESTS[name]
    _cold(adapter)
    cold = asyncio.run(adapter.chat(request))
    kv = _cold(adapter)
    for other, warmup in REQUESTS.items():  # the row's other calls first: they share its prefix
        if other != name:
            asyncio.run(adapter.chat(warmup))
    reused = kv.reused
    warm = asyncio.run(adapter.chat(request))
    assert kv.reused - reused > 20, "the call evaluated its prompt from scratch"
    assert [c.text for c in warm.choices] == [c.text for c in cold.choices]
    for a, b in zip(_lps(warm), _lps(cold), strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    if name == "score":
        assert warm.choices[0].end_logprob == pytest.approx(cold.choices[0].end_logprob, abs=1e-5)
        tops = [[t.token for t in lp.top] for lp in warm.choices[0].logprobs or []]
        assert tops == [[t.token for t in lp.top] for lp in cold.choices[0].logprobs or []]


@pytest.mark.local
@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
def test_a_row_that_opens_with_another_rows_first_demonstration_starts_from_it(adapter: Any) -> None:
    """Rows draw their demonstrations from one small pool, listed in file order, so many open
    with the same one: that prefix is kept, and a call starting from it equals a cold one."""
    other = [DEMOS[0], DEMOS[1], Message(role="user", content="Name a primary colour."),
             Message(role="assistant", content="Red.")]
    first = ChatRequest(messages=prompts.answer_messages(PROMPT, DEMOS), max_tokens=12, logprobs=True)
    second = ChatRequest(messages=prompts.answer_messages(
        [SYSTEM, Message(role="user", content="What is the capital of Italy?")], other), max_tokens=12, logprobs=True)
    _cold(adapter)
    cold = asyncio.run(adapter.chat(second))
    kv = _cold(adapter)
    asyncio.run(adapter.chat(first))
    asyncio.run(adapter.chat(ANOTHER_ROWS_CALL))  # the live sequence moves elsewhere
    model = asyncio.run(adapter.load())
    shared = common_prefix(_tokens(model, [SYSTEM, *DEMOS[:2]]), _tokens(model, second.messages))
    assert shared > 20
    reused = kv.reused
    warm = asyncio.run(adapter.chat(second))
    assert kv.reused - reused >= shared, "the shared first demonstration was evaluated again"
    assert [c.text for c in warm.choices] == [c.text for c in cold.choices]
    assert _lps(warm) == _lps(cold)


@pytest.mark.local
@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
def test_a_rows_later_calls_evaluate_only_what_their_prompt_does_not_share(adapter: Any) -> None:
    """After the row's answer, its samples evaluate two tokens and a teacher-forced pass the
    response and two, even when another row's call ran in between (the engine interleaves rows)."""
    colds = {}
    for name in ("samples", "score"):
        _cold(adapter)
        colds[name] = asyncio.run(adapter.chat(REQUESTS[name]))
    kv = _cold(adapter)
    asyncio.run(adapter.chat(REQUESTS["greedy"]))
    model = asyncio.run(adapter.load())
    for name, expected in (("samples", 2), ("score", len(model.text_tokens(ANSWER)) + 2)):
        asyncio.run(adapter.chat(ANOTHER_ROWS_CALL))  # another row's call moves the live sequence
        evaluated = kv.evaluated
        warm = asyncio.run(adapter.chat(REQUESTS[name]))
        assert kv.evaluated - evaluated == expected, name
        assert [c.text for c in warm.choices] == [c.text for c in colds[name].choices]
        assert _lps(warm) == _lps(colds[name])


@pytest.mark.local
@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
def test_pmis_baseline_starts_from_the_passage_the_rows_answer_evaluated(adapter: Any) -> None:
    """The baseline prompt is the row's prompt without its question: its pass evaluates only
    what follows the passage, though another row's call ran in between."""
    request = REQUESTS["baseline"]
    _cold(adapter)
    cold = asyncio.run(adapter.chat(request))
    kv = _cold(adapter)
    asyncio.run(adapter.chat(REQUESTS["greedy"]))
    asyncio.run(adapter.chat(ANOTHER_ROWS_CALL))
    model = asyncio.run(adapter.load())

    baseline = _tokens(model, request.messages[:-1])
    shared = common_prefix(baseline, _tokens(model, REQUESTS["greedy"].messages))
    assert shared > len(_tokens(model, [SYSTEM, *DEMOS])) + 10  # the passage is shared
    evaluated = kv.evaluated
    warm = asyncio.run(adapter.chat(request))
    assert kv.evaluated - evaluated == len(baseline) - shared + len(model.text_tokens(ANSWER))
    assert _lps(warm) == _lps(cold)
    assert warm.choices[0].end_logprob == cold.choices[0].end_logprob


@pytest.mark.local
@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
def test_seeded_samples_do_not_depend_on_what_ran_between_them(adapter: Any) -> None:
    request = REQUESTS["samples"]
    _cold(adapter)
    first = asyncio.run(adapter.chat(request))
    asyncio.run(adapter.chat(ChatRequest(messages=[Message(role="user", content="Say something else.")],
                                         max_tokens=8, temperature=1.0, seed=1)))
    again = asyncio.run(adapter.chat(request))
    one = asyncio.run(adapter.chat(request.model_copy(update={"n": 1, "sample_index": 2})))
    assert [c.text for c in again.choices] == [c.text for c in first.choices]
    assert _lps(again) == _lps(first)
    assert one.choices[0].text == first.choices[2].text


def test_threads_default_to_the_idle_cores_and_the_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from clearapi.adapters import local_model
    from clearapi.errors import ConfigError

    monkeypatch.setattr(local_model.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    busy: list[float | None] = [1.4]
    monkeypatch.setattr(local_model, "busy_elsewhere", lambda cpus: busy[0])
    assert local_model.default_threads() == 3
    busy[0] = 0.4  # less than half a core busy elsewhere leaves it ours
    assert local_model.default_threads() == 4
    busy[0] = 9.0
    assert local_model.default_threads() == 1
    busy[0] = None  # no /proc/stat: the load average decides
    monkeypatch.setattr(local_model.os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    assert local_model.default_threads() == 2
    monkeypatch.delenv("CLEARAPI_THREADS", raising=False)
    monkeypatch.setenv("CLEARAPI_LLAMA_THREADS", "2")
    assert local_model._default_threads() == 2
    monkeypatch.setenv("CLEARAPI_THREADS", "5")
    assert local_model._default_threads() == 5
    monkeypatch.setenv("CLEARAPI_THREADS", "many")
    with pytest.raises(ConfigError, match="CLEARAPI_THREADS must be an integer"):
        local_model._default_threads()


@pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)
async def test_the_threads_option_reaches_the_local_model_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """`threads=` (the option and --threads) wins over $CLEARAPI_THREADS; without it the variable decides."""
    from clearapi.engine import Engine

    monkeypatch.setenv("CLEARAPI_THREADS", "3")
    async with Engine("local", threads=1, cache=False, progress=False) as engine:
        assert engine.adapter._settings.n_threads == 1  # type: ignore[attr-defined]
    async with Engine("local", cache=False, progress=False) as engine:
        assert engine.adapter._settings.n_threads == 3  # type: ignore[attr-defined]


def test_cpu_ticks_read_only_the_cores_given() -> None:
    from clearapi.adapters.local_model import cpu_ticks

    stat = ("cpu  300 0 100 1000 50 0 0 0 0 0\n"
            "cpu0 100 0 50 500 20 0 0 0 0 0\n"
            "cpu1 200 0 50 500 30 0 0 0 0 0\n"
            "intr 12345\n")
    assert cpu_ticks({0}, stat) == (150, 670)
    assert cpu_ticks({0, 1}, stat) == (400, 1450)
    assert cpu_ticks({5}, stat) is None


def test_busy_elsewhere_sees_another_process_and_not_this_one() -> None:
    """A process spinning on a core counts as about one busy core; this process's own spinning does
    not count (the model is about to use those cores itself)."""
    import os
    import subprocess
    import sys
    import threading

    from clearapi.adapters.local_model import busy_elsewhere

    cpus = set(os.sched_getaffinity(0))
    if busy_elsewhere(cpus, 0.05) is None:
        pytest.skip("no /proc/stat here")
    before = busy_elsewhere(cpus, 0.5)
    assert before is not None
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        own = busy_elsewhere(cpus, 0.5)
    finally:
        stop.set()
        spinner.join()
    assert own is not None and own < before + 0.6, (before, own)
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        other = busy_elsewhere(cpus, 0.5)
    finally:
        child.kill()
        child.wait()
    assert other is not None and other > 0.7, (before, other)
