"""Retries: what is retried, how long the engine waits, how retries are counted.

The engine runs for real over a scripted adapter on a virtual clock, so waits are
measured exactly without sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from clearapi import (
    AuthError,
    BadRequest,
    ChatRequest,
    Engine,
    Message,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from clearapi.engine.retry import MAX_BACKOFF_S, backoff_seconds, reason_of
from clearapi.profiles import Profile
from clearapi.records import ChatResponse
from clearapi.testing import ScriptedAdapter, Step, reply
from clearapi_testing.virtual_clock import run_virtual

PROFILE = Profile(name="fake", protocol="openai_chat", default_model="m")


def req(text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)])


def test_backoff_follows_a_valid_hint_exactly() -> None:
    assert backoff_seconds(1, 7.5, cap=60) == 7.5
    assert backoff_seconds(5, 0.25, cap=60) == 0.25


@pytest.mark.parametrize("hint", [None, 0.0, -3.0, 3600.0])
def test_backoff_is_exponential_capped_and_jittered_without_a_usable_hint(hint: float | None) -> None:
    no_jitter = [backoff_seconds(n, hint, cap=60, rand=lambda: 0.0) for n in range(1, 9)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    full_jitter = [backoff_seconds(n, hint, cap=60, rand=lambda: 1.0) for n in range(1, 9)]
    assert full_jitter == [d * 0.75 for d in no_jitter]
    assert max(no_jitter) == MAX_BACKOFF_S


def test_reasons() -> None:
    assert reason_of(RateLimited("x")) == "429"
    assert reason_of(TransientError("x", reason="503")) == "503"
    assert reason_of(TransientError("x", reason="")) == "transient"


async def _run(script: list[Step], **engine_kw: object) -> tuple[ChatResponse | BaseException, Engine,
                                                                   ScriptedAdapter, float]:
    adapter = ScriptedAdapter(script)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with Engine(PROFILE, adapter=adapter, cache=False, **engine_kw) as engine:  # type: ignore[arg-type]
        try:
            outcome: ChatResponse | BaseException = await engine.chat(req())
        except Exception as exc:
            outcome = exc
    return outcome, engine, adapter, loop.time() - t0


def test_every_transient_reason_is_retried_and_counted() -> None:
    script: list[Step] = [
        TransientError("boom", reason="500"),
        TransientError("bad gateway", reason="502"),
        TransientError("unavailable", reason="503"),
        TransientError("overloaded", reason="529"),
        TransientError("slow", reason="timeout"),
        TransientError("reset", reason="connection"),
        TransientError("half a body", reason="malformed"),
        reply("finally"),
    ]
    outcome, engine, adapter, _ = run_virtual(_run(script))
    assert isinstance(outcome, ChatResponse) and outcome.text == "finally"
    assert adapter.calls == 8
    stats = engine.stats
    assert stats.requests == 8 and stats.logical_calls == 1 and stats.failures == 0
    assert stats.retries == {"500": 1, "502": 1, "503": 1, "529": 1, "timeout": 1, "connection": 1,
                             "malformed": 1}


@pytest.mark.parametrize("fatal", [BadRequest("400: bad"), AuthError("401: no"),
                                   QuotaExhausted("insufficient_quota")])
def test_fatal_errors_are_never_retried(fatal: Exception) -> None:
    outcome, engine, adapter, elapsed = run_virtual(_run([fatal, reply("never")]))
    assert type(outcome) is type(fatal)
    assert adapter.calls == 1
    assert engine.stats.retries == {} and engine.stats.failures == 1
    assert elapsed == 0.0


def test_unknown_exceptions_are_bugs_and_are_not_retried() -> None:
    outcome, _, adapter, _ = run_virtual(_run([KeyError("oops"), reply("never")]))
    assert isinstance(outcome, KeyError)
    assert adapter.calls == 1


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    script: list[Step] = [TransientError(f"boom {i}", reason="500") for i in range(10)]
    outcome, engine, adapter, elapsed = run_virtual(_run(script, max_attempts=4))
    assert isinstance(outcome, TransientError) and "boom 3" in str(outcome)
    assert adapter.calls == 4
    assert engine.stats.retries == {"500": 3} and engine.stats.failures == 1
    # three backoffs of 0.5, 1, 2 s, each shortened by at most 25%
    assert 0.75 * 3.5 <= elapsed <= 3.5


def test_retry_after_is_honoured_exactly() -> None:
    outcome, engine, adapter, elapsed = run_virtual(_run([RateLimited("slow down", retry_after=7.0), reply("ok")]))
    assert isinstance(outcome, ChatResponse)
    assert adapter.calls == 2
    assert elapsed == pytest.approx(7.0)
    assert engine.stats.rate_limited == 1 and engine.stats.retries == {"429": 1}


def test_retry_after_above_the_cap_is_not_obeyed_blindly() -> None:
    outcome, _, adapter, elapsed = run_virtual(
        _run([RateLimited("come back tomorrow", retry_after=86_400.0), reply("ok")], retry_after_cap=5.0))
    assert isinstance(outcome, ChatResponse)
    assert adapter.calls == 2
    # the shared cool-down is capped at 5 s; the backoff itself (<= 0.5 s) ends inside it
    assert elapsed == pytest.approx(5.0)


def test_transient_retry_after_hint_is_used() -> None:
    outcome, _, _, elapsed = run_virtual(
        _run([TransientError("unavailable", reason="503", retry_after=3.0), reply("ok")]))
    assert isinstance(outcome, ChatResponse)
    assert elapsed == pytest.approx(3.0)


def test_a_429_cools_down_every_caller_not_just_the_one_that_got_it() -> None:
    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        seen: list[float] = []

        def record(request: ChatRequest) -> ChatResponse:
            seen.append(loop.time() - t0)
            return reply(request.messages[-1].content)

        adapter = ScriptedAdapter([RateLimited("slow down", retry_after=4.0)], respond=record)
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=4) as engine:
            first = asyncio.ensure_future(engine.chat(req("first")))
            await asyncio.sleep(0.01)  # the 429 has arrived
            others = await asyncio.gather(*(engine.chat(req(f"other {i}")) for i in range(3)))
            await first
        assert [o.text for o in others] == [f"other {i}" for i in range(3)]
        return seen, loop.time() - t0

    seen, total = run_virtual(main())
    assert len(seen) == 4
    assert min(seen) == pytest.approx(4.0)  # nobody reached the provider during the cool-down
    assert total == pytest.approx(4.0)
