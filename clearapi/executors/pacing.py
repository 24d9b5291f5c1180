"""One rate limit for many processes: the engine's pacer and rate learner, held by one actor.

Every worker's engine asks the `SharedLimiter` for each admission and reports each answer
and 429 to it, so N workers pace to one told or learned limit instead of N copies of it. The
limiter is the unchanged `Pacer` and `AdaptiveRates` (GCRA buckets, header learning, AIMD);
`RemotePacer` and `RemoteRates` are the engine-side stand-ins that forward to it. Reports are
sent without waiting for a reply: only admission is a round trip.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass
from typing import Any

from clearapi.engine.limits import AdaptiveRates, Pacer, Ticket
from clearapi.records import RateLimitInfo

__all__ = ["LimiterState", "RemotePacer", "RemoteRates", "SharedLimiter"]


@dataclass(frozen=True)
class LimiterState:
    """What an engine reads of the limit between admissions (its rates and the known limits)."""

    rpm: float | None = None
    tpm: float | None = None
    rpm_limit: float | None = None
    tpm_limit: float | None = None
    learned_rpm: float | None = None
    learned_tpm: float | None = None


class SharedLimiter:
    """The cluster's limiter (run as an async Ray actor): admissions, settlements, learning."""

    def __init__(self, *, rpm: float | None, tpm: float | None, default_rpm: float | None = None,
                 default_tpm: float | None = None, burst_seconds: float = 0.5) -> None:
        self._pacer = Pacer(burst_seconds=burst_seconds)
        self._rates = AdaptiveRates(self._pacer, user_rpm=rpm, user_tpm=tpm, default_rpm=default_rpm,
                                    default_tpm=default_tpm)
        self.granted = 0

    async def acquire(self, tokens: float, requests: float) -> tuple[float, LimiterState]:
        ticket = await self._pacer.acquire(tokens=tokens, requests=requests)
        self.granted += 1
        return ticket.granted_at, await self.state()

    async def settle(self, ticket: tuple[float, float, float], requests: float | None,
                     tokens: float | None) -> None:
        self._pacer.settle(Ticket(*ticket), requests=requests, tokens=tokens)

    async def cool_down(self, seconds: float) -> None:
        self._pacer.cool_down(seconds)

    async def on_success(self, ticket: tuple[float, float, float], info: RateLimitInfo | None) -> None:
        self._rates.on_success(Ticket(*ticket), info)

    async def on_rate_limited(self, ticket: tuple[float, float, float], info: RateLimitInfo | None,
                              message: str) -> None:
        self._rates.on_rate_limited(Ticket(*ticket), info, message)

    async def state(self) -> LimiterState:
        r = self._rates
        return LimiterState(rpm=self._pacer.rpm, tpm=self._pacer.tpm, rpm_limit=r.rpm_limit,
                            tpm_limit=r.tpm_limit, learned_rpm=r.learned_rpm, learned_tpm=r.learned_tpm)

    async def admitted(self) -> int:
        """Admissions granted so far (a test reads it: one limiter served every worker)."""
        return self.granted


def _fields(ticket: Ticket) -> tuple[float, float, float]:
    return ticket.requests, ticket.tokens, ticket.granted_at


class RemotePacer(Pacer):
    """An engine's pacer that admits through the shared limiter (a Ray actor handle)."""

    def __init__(self, limiter: Any, state: LimiterState) -> None:
        super().__init__()
        self._limiter = limiter
        self.state = state
        self._stop: asyncio.Future[None] | None = None

    @property
    def rpm(self) -> float | None:
        return self.state.rpm

    @property
    def tpm(self) -> float | None:
        return self.state.tpm

    async def acquire(self, *, tokens: float = 0.0, requests: float = 1.0) -> Ticket:
        if self._error is not None:
            raise copy.copy(self._error)
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
        ref = self._limiter.acquire.remote(float(tokens), float(requests))
        answer = ref.as_future()
        try:
            await asyncio.wait((answer, self._stop), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            answer.cancel()
            raise
        if not answer.done():  # stopped while waiting: the grant, if it comes, goes unused
            answer.cancel()
            raise copy.copy(self._error or RuntimeError("limiter stopped"))
        granted_at, self.state = answer.result()
        return Ticket(requests=float(requests), tokens=float(tokens), granted_at=granted_at)

    def settle(self, ticket: Ticket, *, requests: float | None = None, tokens: float | None = None) -> None:
        self._limiter.settle.remote(_fields(ticket), requests, tokens)
        if requests is not None:
            ticket.requests = requests
        if tokens is not None:
            ticket.tokens = tokens

    def cool_down(self, seconds: float) -> None:
        self._limiter.cool_down.remote(seconds)

    def abort(self, error: BaseException) -> None:
        """Stop this engine's waiters only: a worker's stop is not the cluster's."""
        self._error = error
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def report_success(self, ticket: Ticket, info: RateLimitInfo | None) -> None:
        self._limiter.on_success.remote(_fields(ticket), info)

    def report_rate_limited(self, ticket: Ticket, info: RateLimitInfo | None, message: str) -> None:
        self._limiter.on_rate_limited.remote(_fields(ticket), info, message)


class RemoteRates(AdaptiveRates):
    """An engine's rate learner that reports to the shared limiter, which does the learning."""

    def __init__(self, pacer: RemotePacer) -> None:  # no local state: the limiter holds it
        self.pacer = pacer
        self._remote = pacer

    @property
    def rpm_limit(self) -> float | None:
        return self._remote.state.rpm_limit

    @property
    def tpm_limit(self) -> float | None:
        return self._remote.state.tpm_limit

    @property
    def learned_rpm(self) -> float | None:
        return self._remote.state.learned_rpm

    @property
    def learned_tpm(self) -> float | None:
        return self._remote.state.learned_tpm

    def on_success(self, ticket: Ticket, info: RateLimitInfo | None) -> None:
        self._remote.report_success(ticket, info)

    def on_rate_limited(self, ticket: Ticket, info: RateLimitInfo | None, message: str = "") -> None:
        self._remote.report_rate_limited(ticket, info, message)
