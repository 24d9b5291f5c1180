"""The pacer and the rate learner, on a virtual clock (no real sleeps, no timed assertions)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from clearapi.engine.limits import AdaptiveRates, Pacer, Ticket, limited_dimension
from clearapi.records import RateLimitInfo
from clearapi_testing.virtual_clock import run_virtual


async def _admit_times(pacer: Pacer, n: int, tokens: float = 0.0) -> list[float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    times: list[float] = []

    async def one() -> None:
        await pacer.acquire(tokens=tokens)
        times.append(loop.time() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return times


def _max_in_window(times: list[float], width: float) -> int:
    return max(sum(1 for t in times if start <= t < start + width) for start in times)


def test_requests_are_paced_evenly_not_in_one_burst() -> None:
    async def main() -> list[float]:
        return await _admit_times(Pacer(rpm=600, burst_seconds=0.5), 60)

    times = run_virtual(main())
    # 600 rpm = 10/s with a burst of 5: five at once, then one every 0.1 s
    assert times[:5] == [pytest.approx(0.0, abs=1e-9)] * 5
    gaps = [b - a for a, b in itertools.pairwise(times[4:])]
    assert all(g == pytest.approx(0.1) for g in gaps)
    assert _max_in_window(times, 1.0) <= 10 + 5
    assert times[-1] == pytest.approx(5.5)


def test_tokens_limit_admits_a_request_larger_than_the_burst_then_pays_for_it() -> None:
    async def main() -> list[float]:
        pacer = Pacer(tpm=6000, burst_seconds=1.0)  # 100 tokens/s, burst 100
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await pacer.acquire(tokens=1000)  # bigger than the burst: admitted on an empty bucket
        first = loop.time() - t0
        await pacer.acquire(tokens=50)  # waits until the debt is paid down to 50
        return [first, loop.time() - t0]

    first, second = run_virtual(main())
    assert first == 0.0
    assert second == pytest.approx(9.5)


def test_settle_refunds_unused_tokens_and_charges_extra() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(tpm=6000, burst_seconds=1.0)
        ticket = await pacer.acquire(tokens=1000)
        pacer.settle(ticket, tokens=100)  # used far less than reserved
        t0 = loop.time()
        await pacer.acquire(tokens=100)
        refunded_wait = loop.time() - t0
        ticket = await pacer.acquire(tokens=100)
        pacer.settle(ticket, tokens=600)  # used more than estimated: 500 more to pay
        t1 = loop.time()
        await pacer.acquire(tokens=100)
        return refunded_wait, loop.time() - t1

    refunded_wait, charged_wait = run_virtual(main())
    assert refunded_wait == pytest.approx(1.0)  # not the 10 s the reservation implied
    assert charged_wait == pytest.approx(6.0)  # 1 s queued behind the burst, then 5 s of extra debt


def test_waiters_are_served_first_in_first_out() -> None:
    async def main() -> list[str]:
        pacer = Pacer(tpm=600, burst_seconds=1.0)  # 10 tokens/s
        await pacer.acquire(tokens=10)
        order: list[str] = []

        async def one(name: str, tokens: float) -> None:
            await pacer.acquire(tokens=tokens)
            order.append(name)

        await asyncio.gather(one("big", 300), *(one(f"small{i}", 1) for i in range(3)))
        return order

    assert run_virtual(main()) == ["big", "small0", "small1", "small2"]


def test_cool_down_holds_everyone_until_it_ends() -> None:
    async def main() -> list[float]:
        pacer = Pacer()  # no limits at all: only the cool-down
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        pacer.cool_down(7.0)
        pacer.cool_down(2.0)  # a shorter one never shortens the first
        return [t - 0 for t in await _admit_times(pacer, 3)] + [loop.time() - t0]

    *times, total = run_virtual(main())
    assert times == [pytest.approx(7.0)] * 3
    assert total == pytest.approx(7.0)


def test_cancelled_waiter_leaves_no_capacity_taken() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(rpm=60, burst_seconds=1.0)  # one a second
        await pacer.acquire()
        waiter = asyncio.ensure_future(pacer.acquire())
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        t0 = loop.time()
        await pacer.acquire()  # takes the slot the cancelled waiter would have had
        return loop.time() - t0, pacer.waiting

    wait, waiting = run_virtual(main())
    assert wait == pytest.approx(0.9)
    assert waiting == 0


def test_waiter_cancelled_after_admission_is_refunded() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        pacer = Pacer(rpm=60, burst_seconds=1.0)  # one a second
        await pacer.acquire()
        waiter = asyncio.ensure_future(pacer.acquire())
        await asyncio.sleep(0.5)
        pacer.set_rpm(60_000)  # admits the waiter synchronously...
        waiter.cancel()  # ...and it is cancelled before it could resume
        with pytest.raises(asyncio.CancelledError):
            await waiter
        pacer.set_rpm(60)
        t0 = loop.time()
        await pacer.acquire()
        return loop.time() - t0

    # refunded: the bucket holds only the first request (0.5 s left); not refunded: 1.0 s
    assert run_virtual(main()) == pytest.approx(0.5)


def test_rate_changes_at_run_time() -> None:
    async def main() -> list[float]:
        pacer = Pacer(rpm=60, burst_seconds=0.1)  # a burst of one request at either rate
        await pacer.acquire()
        pacer.set_rpm(600)
        return await _admit_times(pacer, 3)

    assert run_virtual(main()) == [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)]


def test_abort_fails_waiters_and_later_calls() -> None:
    async def main() -> None:
        pacer = Pacer(rpm=60, burst_seconds=1.0)
        await pacer.acquire()
        waiter = asyncio.ensure_future(pacer.acquire())
        await asyncio.sleep(0)
        pacer.abort(RuntimeError("stopped"))
        with pytest.raises(RuntimeError, match="stopped"):
            await waiter
        with pytest.raises(RuntimeError, match="stopped"):
            await pacer.acquire()

    run_virtual(main())


def test_headers_replace_profile_guess_but_never_a_user_limit() -> None:
    async def main() -> None:
        pacer = Pacer()
        rates = AdaptiveRates(pacer, user_rpm=None, user_tpm=None, default_rpm=500)
        assert pacer.rpm == pytest.approx(490)  # paced at 98% of the limit
        rates.observe_headers(RateLimitInfo(limit_requests=120, limit_tokens=40_000))
        assert rates.learned_rpm == 120 and rates.learned_tpm == 40_000
        assert pacer.rpm == pytest.approx(117.6) and pacer.tpm == pytest.approx(39_200)

        pacer2 = Pacer()
        user = AdaptiveRates(pacer2, user_rpm=60, user_tpm=None)
        user.observe_headers(RateLimitInfo(limit_requests=10_000))
        assert pacer2.rpm == pytest.approx(58.8) and user.learned_rpm is None

    run_virtual(main())


async def _accept(pacer: Pacer, rates: AdaptiveRates, n: int, gap: float, tokens: float = 0.0) -> list[Ticket]:
    """`n` calls answered `gap` seconds apart; returns their tickets."""
    tickets: list[Ticket] = []
    for _ in range(n):
        ticket = await pacer.acquire(tokens=tokens)
        rates.on_success(ticket, None)
        tickets.append(ticket)
        await asyncio.sleep(gap)
    return tickets


def test_aimd_cuts_below_what_the_server_accepted_once_per_round_trip_then_climbs() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer()
        rates = AdaptiveRates(pacer, user_rpm=None, user_tpm=None)
        assert pacer.rpm is None  # unknown: only the concurrency bound
        tickets = await _accept(pacer, rates, 50, 0.1)  # the server accepted 10/s = 600 rpm
        rates.on_rate_limited(tickets[-1], None)
        assert pacer.rpm is None  # one 429 alone could be a hiccup: no cut yet
        rates.on_rate_limited(tickets[-2], None)
        assert rates.rpm_source == "aimd"
        cut = pacer.rpm
        assert cut == pytest.approx(0.9 * 600, rel=0.03) and rates.learned_rpm == cut
        # 429s for requests sent before the cut do not cut again
        rates.on_rate_limited(tickets[-3], None)
        rates.on_rate_limited(tickets[-3], None)
        assert pacer.rpm == cut
        # success after the cut: +0.5% of the cut rate per second of successes
        start = loop.time()
        await _accept(pacer, rates, 60, 0.0)
        elapsed = loop.time() - start
        assert pacer.rpm is not None
        assert 0.005 * cut * (elapsed - 1.0) <= pacer.rpm - cut <= 0.005 * cut * (elapsed + 1.0)
        # a 429 for a request sent after the cut cuts again, below the rate now paced
        for _ in range(2):
            ticket = await pacer.acquire()
            rates.on_rate_limited(ticket, None)
        assert pacer.rpm < cut

    run_virtual(main())


def test_a_first_bursts_429s_before_any_answer_halve_what_was_sent_provisionally() -> None:
    async def main() -> None:
        pacer = Pacer()
        rates = AdaptiveRates(pacer, user_rpm=None, user_tpm=None)
        tickets = [await pacer.acquire() for _ in range(16)]  # 16 at once, no answer yet
        rates.on_rate_limited(tickets[0], None)
        rates.on_rate_limited(tickets[1], None)
        assert pacer.rpm == pytest.approx(16 * 60 / 2)  # 16 sent in (at least) a second, halved
        # the first answers then measure the limit, and the next cut uses them, not the guess
        more = await _accept(pacer, rates, 20, 0.2)  # 5/s accepted = 300 rpm
        rates.on_rate_limited(more[-1], None)
        rates.on_rate_limited(more[-2], None)
        assert pacer.rpm == pytest.approx(0.9 * 300, rel=0.1)

    run_virtual(main())


def test_after_a_cut_the_new_rate_is_paced_from_now_not_a_burst() -> None:
    async def main() -> list[float]:
        pacer = Pacer(burst_seconds=0.5)
        rates = AdaptiveRates(pacer, user_rpm=None, user_tpm=None)
        tickets = await _accept(pacer, rates, 20, 0.1)  # 600 rpm accepted
        rates.on_rate_limited(tickets[-1], None)
        rates.on_rate_limited(tickets[-2], None)  # cut to 540 rpm = 9/s, bucket full
        return await _admit_times(pacer, 4)

    times = run_virtual(main())
    assert times[0] == pytest.approx(1 / 9)  # not at once: the server's bucket is empty too
    assert [b - a for a, b in itertools.pairwise(times)] == [pytest.approx(1 / 9)] * 3


def test_a_told_limit_is_a_ceiling_a_429_backs_off_below_it_and_the_rate_climbs_back() -> None:
    async def main() -> None:
        pacer = Pacer()
        rates = AdaptiveRates(pacer, user_rpm=15_000, user_tpm=None)
        assert pacer.rpm == pytest.approx(14_700)
        tickets = await _accept(pacer, rates, 30, 0.1)  # the server really takes 10/s
        rates.on_rate_limited(tickets[-1], None)
        rates.on_rate_limited(tickets[-2], None)
        assert pacer.rpm == pytest.approx(540, rel=0.03)
        await _accept(pacer, rates, 200, 0.0)
        assert 540 < pacer.rpm < 14_700  # climbing, toward the ceiling

        near = AdaptiveRates(Pacer(), user_rpm=700, user_tpm=None)
        tickets = await _accept(near.pacer, near, 30, 0.1)
        near.on_rate_limited(tickets[-1], None)
        near.on_rate_limited(tickets[-2], None)
        assert near.pacer.rpm == pytest.approx(540, rel=0.03)
        await _accept(near.pacer, near, 2000, 0.0)
        assert near.pacer.rpm == pytest.approx(686) and near.rpm_source == "user"  # back at, never past, it
        # headers lower the ceiling, never raise it
        near.observe_headers(RateLimitInfo(limit_requests=50_000))
        assert near.rpm_limit == 700 and near.pacer.rpm == pytest.approx(686)
        near.observe_headers(RateLimitInfo(limit_requests=600))
        assert near.pacer.rpm == pytest.approx(588) and near.rpm_source == "headers"

    run_virtual(main())


def test_a_429_on_tokens_cuts_the_tokens_rate_and_leaves_requests_alone() -> None:
    async def main() -> None:
        pacer = Pacer()
        rates = AdaptiveRates(pacer, user_rpm=None, user_tpm=None)
        tickets = await _accept(pacer, rates, 30, 0.1, tokens=100)  # 1,000 tokens/s accepted
        message = "HTTP 429 tokens for model 'm': Rate limit reached on tokens per min (TPM): Limit 60000"
        rates.on_rate_limited(tickets[-1], None, message)
        rates.on_rate_limited(tickets[-2], None, message)
        assert pacer.rpm is None
        assert pacer.tpm == pytest.approx(0.9 * 60_000, rel=0.05) and rates.tpm_source == "aimd"
        before = pacer.tpm
        await _accept(pacer, rates, 50, 0.0, tokens=100)
        assert pacer.tpm > before  # and it climbs back, like requests

    run_virtual(main())


@pytest.mark.parametrize(("info", "message", "which"), [
    (None, "HTTP 429 requests for model 'm': ... on requests per min (RPM): Limit 600", "requests"),
    (None, "HTTP 429 tokens for model 'm': ... on tokens per min (TPM): Limit 30000", "tokens"),
    (None, "HTTP 429 rate_limit_error: This request would exceed your input tokens per minute", "tokens"),
    (None, "HTTP 429: too many requests", "requests"),
    (RateLimitInfo(remaining_requests=5, remaining_tokens=0), "", "tokens"),
    (RateLimitInfo(remaining_requests=0, remaining_tokens=0), "tokens per min", "requests"),
])
def test_a_429_names_the_limit_it_hit(info: RateLimitInfo | None, message: str, which: str) -> None:
    assert limited_dimension(info, message) == which
