"""Engine logic over a scripted adapter on a virtual clock: ordering, bounds, stops, budget.

The engine, its limits, retries and cache run for real; only the provider is replaced
(`ScriptedAdapter`, a boundary fake) and only the clock is virtual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from clearapi import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    ChatRequest,
    ChatResponse,
    ConfigError,
    Engine,
    FatalError,
    Message,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from clearapi.profiles import Limits, Price, Profile
from clearapi.records import RateLimitInfo
from clearapi.testing import ScriptedAdapter, reply
from clearapi_testing.virtual_clock import run_virtual

PROFILE = Profile(name="fake", protocol="openai_chat", default_model="m",
                  limits=Limits(max_concurrency=16))
PRICED = Profile(name="priced", protocol="openai_chat", default_model="m",
                 prices={"m": Price(input=1000.0, output=1000.0)})  # $0.001 a token: easy sums


def req(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def number(request: ChatRequest) -> int:
    return int(request.messages[-1].content.split()[-1])


# -- map: order, window, laziness ---------------------------------------------------------

def test_map_yields_in_input_order_although_calls_finish_out_of_order() -> None:
    async def main() -> tuple[list[str], list[int]]:
        finished: list[int] = []

        async def respond(request: ChatRequest) -> ChatResponse:
            i = number(request)
            await asyncio.sleep((30 - i) * 0.01)  # later items finish first
            finished.append(i)
            return reply(f"answer {i}")

        adapter = ScriptedAdapter(respond=respond)
        # a limit that never binds: with none known the first call would go alone (a probe)
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=30, rpm=1e9) as engine:
            out = [r.text async for r in engine.map(range(30), lambda i: engine.chat(req(f"item {i}")),
                                                    window=30)]
        return out, finished

    out, finished = run_virtual(main())
    assert out == [f"answer {i}" for i in range(30)]
    assert finished == list(reversed(range(30)))


def test_map_keeps_at_most_window_items_in_flight_and_pulls_items_lazily() -> None:
    async def main() -> tuple[int, int, int]:
        pulled = 0
        in_flight = peak = 0
        max_ahead = 0

        def items() -> Iterator[int]:
            nonlocal pulled
            for i in range(500):
                pulled += 1
                yield i

        async def fn(i: int) -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01 * (i % 7))
            in_flight -= 1
            return i

        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            done = 0
            async for value in engine.map(items(), fn, window=8):
                assert value == done
                done += 1
                max_ahead = max(max_ahead, pulled - done)
        return peak, max_ahead, done

    peak, max_ahead, done = run_virtual(main())
    assert done == 500
    assert peak <= 8
    assert max_ahead <= 8 * 8  # in flight or finished-but-waiting: the default buffer, 8 windows


def test_one_slow_item_does_not_stall_the_others_while_order_is_kept() -> None:
    """Item 0 takes 10 s (a call backing off before its retry); the others take 10 ms. With a
    window of 4, the others keep 4 in flight while item 0 waits, up to the buffer of finished
    ones, and everything is still yielded in input order."""
    async def main() -> tuple[list[int], int, int, float]:
        in_flight = peak = 0
        finished_while_head_waits = 0
        head_done = False

        async def fn(i: int) -> int:
            nonlocal in_flight, peak, finished_while_head_waits, head_done
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(10.0 if i == 0 else 0.01)
            in_flight -= 1
            if i == 0:
                head_done = True
            elif not head_done:
                finished_while_head_waits += 1
            return i

        loop = asyncio.get_running_loop()
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            start = loop.time()
            out = [v async for v in engine.map(range(200), fn, window=4, buffer=40)]
            return out, peak, finished_while_head_waits, loop.time() - start

    out, peak, finished_while_head_waits, elapsed = run_virtual(main())
    assert out == list(range(200))
    assert peak <= 4
    assert finished_while_head_waits == 39  # the buffer (40) less the head: not 3, as a window alone allows
    assert elapsed < 10.0 + 200 * 0.01  # the rest overlapped the slow item


def test_map_refuses_a_buffer_smaller_than_its_window() -> None:
    async def main() -> None:
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            with pytest.raises(ValueError, match="buffer must be >= window"):
                engine.map(range(3), asyncio.sleep, window=4, buffer=2)

    run_virtual(main())


def test_map_accepts_async_iterables() -> None:
    async def main() -> list[int]:
        async def items() -> Iterator[int]:  # type: ignore[misc]
            for i in range(20):
                await asyncio.sleep(0.001)
                yield i

        async def double(i: int) -> int:
            return 2 * i

        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            return [v async for v in engine.map(items(), double, window=3)]

    assert run_virtual(main()) == [2 * i for i in range(20)]


def test_map_rejects_a_window_below_one() -> None:
    async def main() -> None:
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            with pytest.raises(ValueError):
                engine.map([1], asyncio.sleep, window=0)

    run_virtual(main())


# -- stopping -------------------------------------------------------------------------------

def test_fatal_error_stops_map_keeps_finished_work_in_order_and_stops_the_engine() -> None:
    async def main() -> tuple[list[str], BaseException | None, ScriptedAdapter, Engine]:
        async def respond(request: ChatRequest) -> ChatResponse | BaseException:
            i = number(request)
            if i == 15:
                await asyncio.sleep(0.5)
                return AuthError("401: invalid api key")
            await asyncio.sleep(1.0)
            return reply(f"answer {i}")

        adapter = ScriptedAdapter(respond=respond)
        got: list[str] = []
        error: BaseException | None = None
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=10, rpm=1e9) as engine:
            try:
                async for r in engine.map(range(100), lambda i: engine.chat(req(f"item {i}")), window=10):
                    got.append(r.text)
            except FatalError as exc:
                error = exc
            calls_at_stop = adapter.calls
            with pytest.raises(AuthError):  # the engine is stopped: no further call reaches the API
                await engine.chat(req("item 999"))
            assert adapter.calls == calls_at_stop
        return got, error, adapter, engine

    got, error, adapter, engine = run_virtual(main())
    assert isinstance(error, AuthError) and "invalid api key" in str(error)
    assert got == [f"answer {i}" for i in range(10)]  # 10..14 were still in flight: not yielded
    assert adapter.calls == 20  # items 0-9, then 10-19; nothing after the stop
    assert adapter.in_flight == 0  # in-flight calls were cancelled
    assert isinstance(engine.stopped, AuthError)


def test_a_run_stopping_error_ends_other_calls_backoff_at_once() -> None:
    async def main() -> tuple[float, BaseException | None, int]:
        loop = asyncio.get_running_loop()

        def respond(request: ChatRequest) -> ChatResponse | BaseException:
            if "flaky" in request.messages[-1].content:
                return TransientError("unavailable", reason="503", retry_after=30.0)
            return QuotaExhausted("insufficient_quota: add credit")

        adapter = ScriptedAdapter(respond=respond)
        async with Engine(PROFILE, adapter=adapter, cache=False) as engine:
            flaky = asyncio.ensure_future(engine.chat(req("flaky")))
            await asyncio.sleep(1.0)  # flaky is now in a 30 s backoff
            t0 = loop.time()
            with pytest.raises(QuotaExhausted):
                await engine.chat(req("other"))
            try:
                await flaky
                error = None
            except BaseException as exc:
                error = exc
            return loop.time() - t0, error, adapter.calls

    waited, error, calls = run_virtual(main())
    assert isinstance(error, QuotaExhausted)
    assert waited == pytest.approx(0.0, abs=1e-6)
    assert calls == 2


def test_return_exceptions_yields_non_fatal_errors_in_place_but_fatal_still_stops() -> None:
    async def main() -> tuple[list[object], BaseException | None]:
        def respond(request: ChatRequest) -> ChatResponse | BaseException:
            i = number(request)
            if i == 3:
                return TransientError("broken", reason="500")
            if i == 6:
                return BadRequest("400: prompt too long")
            return reply(str(i))

        out: list[object] = []
        error: BaseException | None = None
        async with Engine(PROFILE, adapter=ScriptedAdapter(respond=respond), cache=False, max_attempts=1,
                          max_concurrency=1) as engine:
            try:
                async for r in engine.map(range(10), lambda i: engine.chat(req(f"item {i}")), window=1,
                                          return_exceptions=True):
                    out.append(r.text if isinstance(r, ChatResponse) else type(r).__name__)
            except BadRequest as exc:
                error = exc
        return out, error

    out, error = run_virtual(main())
    assert out == ["0", "1", "2", "TransientError", "4", "5"]
    assert isinstance(error, BadRequest)


def test_closing_map_early_cancels_what_is_in_flight() -> None:
    async def main() -> tuple[int, int]:
        adapter = ScriptedAdapter(latency=5.0)
        async with Engine(PROFILE, adapter=adapter, cache=False) as engine:
            async with contextlib.aclosing(
                    engine.map(range(1000), lambda i: engine.chat(req(f"item {i}")), window=20)) as results:
                async for _ in results:
                    break
            return adapter.in_flight, adapter.calls

    in_flight, calls = run_virtual(main())
    assert in_flight == 0
    assert calls <= 20 + 16


# -- concurrency and cancellation -----------------------------------------------------------

def test_concurrency_bound_is_respected() -> None:
    async def main() -> int:
        adapter = ScriptedAdapter(latency=0.3)
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=3) as engine:
            await asyncio.gather(*(engine.chat(req(f"q {i}")) for i in range(30)))
        return adapter.peak_in_flight

    assert run_virtual(main()) == 3


def test_cancelled_calls_leave_no_slot_taken() -> None:
    async def main() -> int:
        gate = asyncio.Event()

        async def respond(request: ChatRequest) -> ChatResponse:
            await gate.wait()
            return reply("ok")

        adapter = ScriptedAdapter(respond=respond)
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=2, rpm=6000) as engine:
            stuck = [asyncio.ensure_future(engine.chat(req(f"stuck {i}"))) for i in range(6)]
            await asyncio.sleep(1.0)  # two hold slots, four wait for one
            assert adapter.in_flight == 2
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
            assert adapter.in_flight == 0 and engine.in_flight == 0
            after = [asyncio.ensure_future(engine.chat(req(f"after {i}"))) for i in range(2)]
            await asyncio.sleep(1.0)
            both = adapter.in_flight  # 2 only if the cancelled calls gave their slots back
            gate.set()
            await asyncio.gather(*after)
        return both

    assert run_virtual(main()) == 2


def test_identical_requests_in_flight_are_sent_once() -> None:
    async def main() -> tuple[list[ChatResponse], int, int]:
        adapter = ScriptedAdapter(latency=1.0)
        async with Engine(PROFILE, adapter=adapter, cache=False) as engine:
            answers = await asyncio.gather(*(engine.chat(req("same question")) for _ in range(10)))
            return answers, adapter.calls, engine.stats.cache_hits

    answers, calls, hits = run_virtual(main())
    assert calls == 1
    assert hits == 9
    assert {a.text for a in answers} == {"echo: same question"}
    assert sum(a.cached for a in answers) == 9


def test_a_cancelled_leader_hands_the_call_to_a_follower() -> None:
    async def main() -> tuple[str, int]:
        adapter = ScriptedAdapter(latency=1.0)
        async with Engine(PROFILE, adapter=adapter, cache=False) as engine:
            leader = asyncio.ensure_future(engine.chat(req("same")))
            await asyncio.sleep(0.1)
            follower = asyncio.ensure_future(engine.chat(req("same")))
            await asyncio.sleep(0.1)
            leader.cancel()
            answer = await follower
            return answer.text, adapter.calls

    text, calls = run_virtual(main())
    assert text == "echo: same"
    assert calls == 2


# -- limits --------------------------------------------------------------------------------

def test_rpm_limit_paces_calls_through_the_engine() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        times: list[float] = []

        def respond(request: ChatRequest) -> ChatResponse:
            times.append(loop.time() - t0)
            return reply("ok")

        async with Engine(PROFILE, adapter=ScriptedAdapter(respond=respond), cache=False, rpm=120,
                          max_concurrency=50) as engine:
            await asyncio.gather(*(engine.chat(req(f"q {i}")) for i in range(40)))
        return times

    times = run_virtual(main())
    # 120 rpm paced at 98%: one call every ~0.51 s, never more than 2 (a second's worth) at once
    assert times[-1] == pytest.approx(39 * 60 / (120 * 0.98), rel=0.02)
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 3


def test_tpm_limit_counts_max_tokens_and_settles_prompt_from_usage() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        adapter = ScriptedAdapter(respond=lambda r: reply("ok", prompt_tokens=10, completion_tokens=2))
        async with Engine(PROFILE, adapter=adapter, cache=False, tpm=6000, max_concurrency=50,
                          burst_seconds=1.0) as engine:
            t0 = loop.time()
            await asyncio.gather(*(engine.chat(req(f"q {i}", max_tokens=90)) for i in range(21)))
            return loop.time() - t0

    # each call counts 10 prompt + 90 max_tokens = 100 tokens at 98 tokens/s, burst ~98
    elapsed = run_virtual(main())
    assert elapsed == pytest.approx(20 * 100 / 98, rel=0.06)


def test_a_request_larger_than_the_whole_tpm_limit_fails_fast() -> None:
    async def main() -> int:
        adapter = ScriptedAdapter()
        async with Engine(PROFILE, adapter=adapter, cache=False, tpm=1000) as engine:
            with pytest.raises(BadRequest, match="tokens-per-minute"):
                await engine.chat(req("q", max_tokens=4000))
        return adapter.calls

    assert run_virtual(main()) == 0


def test_limits_are_learned_from_rate_limit_headers() -> None:
    async def main() -> tuple[float | None, float | None, float | None]:
        def respond(request: ChatRequest) -> ChatResponse:
            r = reply("ok")
            r.ratelimit = RateLimitInfo(limit_requests=300, remaining_requests=299,
                                        limit_tokens=90_000, remaining_tokens=89_000)
            return r

        async with Engine(PROFILE, adapter=ScriptedAdapter(respond=respond), cache=False) as engine:
            assert engine.stats.learned_rpm is None
            await engine.chat(req("q"))
            return engine.stats.learned_rpm, engine.stats.learned_tpm, engine.rpm

    learned_rpm, learned_tpm, pacing = run_virtual(main())
    assert (learned_rpm, learned_tpm) == (300, 90_000)
    assert pacing == pytest.approx(294)


def test_aimd_finds_an_unknown_limit_and_answers_everything() -> None:
    limit_per_s = 2.0  # the hidden limit: 120 rpm, burst of 2

    async def main() -> tuple[int, int, float | None]:
        loop = asyncio.get_running_loop()
        level = 2.0
        last = loop.time()

        def respond(request: ChatRequest) -> ChatResponse | BaseException:
            nonlocal level, last
            now = loop.time()
            level = min(2.0, level + (now - last) * limit_per_s)
            last = now
            if level < 1.0:
                return RateLimited("rate limit reached", retry_after=None)
            level -= 1.0
            return reply(request.messages[-1].content)

        adapter = ScriptedAdapter(respond=respond, latency=0.05)
        async with Engine(PROFILE, adapter=adapter, cache=False, max_concurrency=8) as engine:
            out = [r.text async for r in engine.map(range(300), lambda i: engine.chat(req(f"q {i}")))]
            assert out == [f"q {i}" for i in range(300)]
            stats = engine.stats
        return stats.rate_limited, stats.requests, stats.learned_rpm

    rate_limited, requests, learned = run_virtual(main())
    assert learned is not None and 30 <= learned <= 200
    assert rate_limited < 0.2 * requests


# -- budget and accounting --------------------------------------------------------------------

def test_budget_stops_before_it_would_be_exceeded() -> None:
    async def main() -> tuple[int, float, BaseException | None]:
        adapter = ScriptedAdapter(respond=lambda r: reply("ok", prompt_tokens=10, completion_tokens=5),
                                  latency=0.1)
        error: BaseException | None = None
        async with Engine(PRICED, adapter=adapter, cache=False, max_cost=0.5, max_concurrency=4) as engine:
            try:
                async for _ in engine.map(range(100), lambda i: engine.chat(req(f"q {i}", max_tokens=20))):
                    pass
            except BudgetExceeded as exc:
                error = exc
            with pytest.raises(BudgetExceeded):
                await engine.chat(req("one more", max_tokens=20))
            return adapter.calls, engine.stats.cost_usd, error

    calls, cost, error = run_virtual(main())
    assert isinstance(error, BudgetExceeded) and "max-cost" in str(error)
    # each call costs $0.015 and reserves at most ~$0.03: the budget is used, never passed
    assert cost <= 0.5
    assert cost >= 0.5 - 4 * 0.03 - 0.03
    # every call that returned was booked; up to 4 (the concurrency) were cut off by the stop
    assert calls - 4 <= round(cost / 0.015) <= calls


def test_max_cost_without_a_known_price_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="needs a price"):
        Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, max_cost=5.0)


def test_accounting_adds_up() -> None:
    async def main() -> Engine:
        script = [RateLimited("slow", retry_after=1.0), TransientError("x", reason="502")]
        adapter = ScriptedAdapter(script, respond=lambda r: reply("ok", prompt_tokens=7, completion_tokens=3))
        async with Engine(PRICED, adapter=adapter, cache=False) as engine:
            for i in range(5):
                await engine.chat(req(f"q {i}"))
        return engine

    stats = run_virtual(main()).stats
    assert stats.logical_calls == 5 and stats.requests == 7
    assert stats.retries == {"429": 1, "502": 1} and stats.rate_limited == 1
    assert (stats.prompt_tokens, stats.completion_tokens) == (35, 15)
    assert stats.cost_usd == pytest.approx(0.05) and stats.cost_known
    assert stats.wall_seconds > 0


def test_unknown_price_is_reported_as_unknown_not_as_free() -> None:
    async def main() -> Engine:
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            await engine.chat(req("q"))
        return engine

    stats = run_virtual(main()).stats
    assert stats.cost_known is False


def test_invalid_settings_fail_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match="rpm"):
        Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, rpm=0)
    with pytest.raises(ConfigError, match="max_concurrency"):
        Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, max_concurrency=0)


# -- progress ---------------------------------------------------------------------------------

def test_progress_bar_draws_on_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    async def main(progress: bool | None) -> None:
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, progress=progress) as engine:
            async for _ in engine.map(range(5), lambda i: engine.chat(req(f"q {i}")), total=5):
                pass

    run_virtual(main(None))  # not a terminal: quiet
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    run_virtual(main(True))
    shown = capsys.readouterr()
    assert "rows" in shown.err and "5/5" in shown.err
    assert shown.out == ""


# -- construction and learning details ------------------------------------------------------------

def test_an_engine_built_outside_any_event_loop_paces_from_its_first_call() -> None:
    engine = Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, rpm=60)  # no loop is running here

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with engine:
            await asyncio.gather(*(engine.chat(req(f"q {i}")) for i in range(3)))
        return loop.time() - t0

    # one a second at 98% of 60 rpm: the first at once, the third about 2 s later
    assert run_virtual(main()) == pytest.approx(2 * 60 / 58.8)


def test_limits_are_learned_from_a_429s_headers_too() -> None:
    async def main() -> tuple[float | None, float | None]:
        limited = RateLimited("rate limit reached", retry_after=0.5,
                              ratelimit=RateLimitInfo(limit_requests=90, remaining_requests=0))
        async with Engine(PROFILE, adapter=ScriptedAdapter([limited]), cache=False) as engine:
            await engine.chat(req("q"))
            return engine.stats.learned_rpm, engine.rpm

    learned, pacing = run_virtual(main())
    assert learned == 90
    assert pacing == pytest.approx(88.2)


def test_samples_a_provider_cannot_batch_count_as_separate_requests_against_rpm() -> None:
    from clearapi.records import Capabilities

    async def main() -> float:
        loop = asyncio.get_running_loop()
        adapter = ScriptedAdapter(capabilities=Capabilities(n=False),
                                  respond=lambda r: reply("x", calls=r.n))
        async with Engine(PROFILE, adapter=adapter, cache=False, rpm=60, burst_seconds=1.0) as engine:
            await engine.chat(req("first", n=3))  # three calls at once: the bucket is 3 in debt...
            t0 = loop.time()
            await engine.chat(req("second"))  # ...so the next waits for them to drain
            assert engine.stats.requests == 4
            return loop.time() - t0

    assert run_virtual(main()) == pytest.approx(3 * 60 / 58.8, rel=0.01)


@pytest.mark.parametrize("seed", range(20))
def test_map_never_yields_an_exception_it_should_raise(seed: int) -> None:
    """However completions interleave with the consumer, an error stops the map: it is never
    handed out as if it were a result (a race between done-callbacks and the head check)."""
    import random

    rng = random.Random(seed)
    fail_at = rng.randrange(5, 40)
    steps = [rng.randrange(0, 4) for _ in range(60)]

    async def fn(i: int) -> int:
        for _ in range(steps[i]):
            await asyncio.sleep(0)
        if i == fail_at:
            raise TransientError("boom", reason="500")
        return i

    async def main() -> list[object]:
        got: list[object] = []
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False) as engine:
            with pytest.raises(TransientError):
                async for value in engine.map(range(60), fn, window=rng.randrange(1, 8)):
                    got.append(value)
                    for _ in range(rng.randrange(0, 3)):
                        await asyncio.sleep(0)
        return got

    got = run_virtual(main())
    assert got == list(range(len(got)))
    assert len(got) <= fail_at


def test_rows_progress_counts_rows_whether_map_or_the_caller_advances_it() -> None:
    async def main() -> tuple[int, int | None]:
        async with Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, progress=False) as engine:
            rows = engine.progress_rows(total=12)
            async for _ in engine.map(range(10), lambda i: engine.chat(req(f"q {i}"))):
                pass
            rows.advance(2)  # e.g. two rows rejected before they reached the engine
            return rows.done, rows.total

    assert run_virtual(main()) == (12, 12)


def test_a_given_adapter_built_for_another_model_is_asked_for_the_engines_model() -> None:
    async def main() -> list[str | None]:
        adapter = ScriptedAdapter(model="adapter-default")
        async with Engine(PROFILE, adapter=adapter, model="wanted", cache=False) as engine:
            await engine.chat(req("q"))
            await engine.chat(req("q2", model="explicit"))
        return [r.model for r in adapter.requests]

    assert run_virtual(main()) == ["wanted", "explicit"]


def test_profile_limits_are_a_first_guess_only_on_the_providers_own_host() -> None:
    guessing = Profile(name="hosted", protocol="openai_chat", default_model="m", base_url="https://api.example.com/v1",
                       limits=Limits(rpm=500, tpm=30_000, ratelimit_headers=True))
    silent = guessing.model_copy(update={"limits": Limits(rpm=500, tpm=30_000)})

    def paced(profile: Profile, base_url: str | None) -> tuple[float | None, float | None]:
        engine = Engine(profile, adapter=ScriptedAdapter(), cache=False, base_url=base_url)
        return engine.rpm, engine.tpm

    assert paced(guessing, None) == (pytest.approx(490), pytest.approx(29_400))
    assert paced(guessing, "https://api.example.com/v1/") == (pytest.approx(490), pytest.approx(29_400))
    # another server (vLLM, a gateway) behind the same protocol: the concurrency cap alone
    assert paced(guessing, "http://127.0.0.1:8000/v1") == (None, None)
    # a host that sends no headers could never correct the guess
    assert paced(silent, None) == (None, None)


def test_with_no_limit_known_the_first_call_goes_alone_then_the_concurrency_cap_holds() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        starts: list[float] = []

        async def respond(request: ChatRequest) -> ChatResponse:
            starts.append(loop.time() - t0)
            await asyncio.sleep(1.0)
            return reply("ok")

        async with Engine(PROFILE, adapter=ScriptedAdapter(respond=respond), cache=False, max_concurrency=4) as engine:
            await asyncio.gather(*(engine.chat(req(f"q {i}")) for i in range(6)))
        return starts

    # its answer may carry the limit in headers: nothing else is sent before it is read
    assert run_virtual(main()) == [0.0, 1.0, 1.0, 1.0, 1.0, 2.0]


def test_rate_limits_and_retries_group_the_engines_settings() -> None:
    from clearapi import RateLimits, Retries

    async def main() -> tuple[int, int, type[BaseException] | None]:
        adapter = ScriptedAdapter(respond=lambda r: TransientError("broken", reason="500"))
        async with Engine(PROFILE, adapter=adapter, cache=False,
                          limits=RateLimits(max_concurrency=3), retries=Retries(max_attempts=2)) as engine:
            caught: type[BaseException] | None = None
            try:
                await engine.chat(req("q"))
            except TransientError as exc:
                caught = type(exc)
            return engine.max_concurrency, adapter.calls, caught

    assert run_virtual(main()) == (3, 2, TransientError)


def test_a_flat_keyword_is_shorthand_for_its_groups_field_and_both_at_once_is_refused() -> None:
    from clearapi import RateLimits, Retries

    engine = Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, rpm=60, max_attempts=3, timeout=5)
    assert engine.limits == RateLimits(rpm=60) and engine.retries == Retries(max_attempts=3, timeout=5)
    assert Engine(PROFILE, adapter=ScriptedAdapter(), cache=False).retries == Retries()
    # one of the two would be silently lost: a ConfigError names the keyword and the group
    with pytest.raises(ConfigError, match=r"max_attempts given both as keyword\(s\) and in retries="):
        Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, max_attempts=8, retries=Retries(max_attempts=2))
    with pytest.raises(ConfigError, match="rpm, burst_seconds given both"):
        Engine(PROFILE, adapter=ScriptedAdapter(), cache=False, rpm=1, burst_seconds=1.0, limits=RateLimits())
