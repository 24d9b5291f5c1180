"""Pacing under requests- and tokens-per-minute limits, with one shared cool-down.

Why not `aiolimiter.AsyncLimiter` directly? Its design is the model here (waiters are
futures woken by a single ``loop.call_at`` timer, never a polling sleep), but the engine
needs four things it does not offer:

* **settle**: a call reserves its *estimated* tokens and is corrected from ``usage``
  afterwards, refunding or charging the difference;
* **two dimensions at once**: a request is admitted when both the request and the token
  bucket allow it, so waiting for tokens does not burn a request slot (and vice versa);
* **a shared cool-down**: after a 429 nobody is admitted until ``now + Retry-After``;
* **rates that change at run time** (learned from headers, or AIMD) and requests larger
  than one burst (a 4,000-token call under a 6,000 TPM limit), which aiolimiter rejects.

Each bucket is a GCRA ("virtual scheduling") meter: ``tat`` is when the bucket would be
empty again. Its capacity is a fraction of a second's worth (``burst_seconds``, at least
one request), because services enforce a per-minute limit over much shorter windows: a
minute's quota sent as one burst draws 429s. Keeping our burst smaller than the
service's (about one second) leaves slack for network jitter. Waiters queue FIFO, so a large request is never starved by small
ones; the head is admitted at exactly the time both buckets and the cool-down allow.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections import deque
from dataclasses import dataclass

from clearapi.records import RateLimitInfo

__all__ = ["AdaptiveRates", "Pacer", "Ticket"]

_OBSERVE_WINDOW_S = 10.0
#: asyncio fires timers up to its clock resolution early; a float hair is not worth a re-arm
_EPSILON_S = 1e-9


class _Bucket:
    """One GCRA meter. ``rate`` is per second; ``None`` means unlimited."""

    __slots__ = ("burst_seconds", "capacity", "minimum", "rate", "tat")

    def __init__(self, per_minute: float | None, burst_seconds: float, minimum: float) -> None:
        self.burst_seconds = burst_seconds
        self.minimum = minimum
        self.tat = -math.inf
        self.rate: float | None = None
        self.capacity = minimum
        self.set_rate(per_minute, now=None)

    def set_rate(self, per_minute: float | None, now: float | None) -> None:
        """`now` is None before any loop ran: the bucket is still empty."""
        level = 0.0 if now is None else self.level(now)
        self.rate = None if per_minute is None else per_minute / 60.0
        if self.rate is None or now is None:
            self.tat = -math.inf
        else:
            self.tat = now + level / self.rate
        if self.rate is not None:
            self.capacity = max(self.minimum, self.rate * self.burst_seconds)

    def level(self, now: float) -> float:
        if self.rate is None:
            return 0.0
        return max(0.0, (self.tat - now) * self.rate)

    def ready_at(self, amount: float) -> float:
        """Earliest time `amount` fits; a request larger than the capacity fits an empty bucket."""
        if self.rate is None:
            return -math.inf
        allowance = max(0.0, self.capacity - amount)
        return self.tat - allowance / self.rate

    def adjust(self, amount: float, now: float) -> None:
        """Charge (positive) or refund (negative) `amount`; a refund never creates credit."""
        if self.rate is None:
            return
        self.tat = max(self.tat, now) + amount / self.rate
        if self.tat < now:
            self.tat = now


@dataclass(slots=True)
class Ticket:
    """What one admission charged, so it can be settled against what the call really used."""

    requests: float
    tokens: float
    granted_at: float


class Pacer:
    """Admits calls under an RPM and a TPM limit (either may be unknown) and a cool-down.

    Create and use it inside one running event loop. ``acquire`` is cancellation-safe: a
    waiter cancelled before admission leaves the queue; one cancelled after admission but
    before it resumed is refunded.
    """

    def __init__(self, *, rpm: float | None = None, tpm: float | None = None,
                 burst_seconds: float = 1.0) -> None:
        self._requests = _Bucket(rpm, burst_seconds, minimum=1.0)
        self._tokens = _Bucket(tpm, burst_seconds, minimum=1.0)
        self._cool_until = -math.inf
        self._waiters: deque[tuple[Ticket, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self._grants: deque[float] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public state -------------------------------------------------------------------
    @property
    def rpm(self) -> float | None:
        r = self._requests.rate
        return None if r is None else r * 60.0

    @property
    def tpm(self) -> float | None:
        r = self._tokens.rate
        return None if r is None else r * 60.0

    @property
    def waiting(self) -> int:
        return sum(1 for _, fut in self._waiters if not fut.done())

    def cool_until(self) -> float:
        return self._cool_until

    def set_rpm(self, rpm: float | None) -> None:
        """Change the requests rate now (``None`` = unlimited); waiters re-plan."""
        self._requests.set_rate(rpm, self._time_or_none())
        self._wake()

    def set_tpm(self, tpm: float | None) -> None:
        """Change the tokens rate now (``None`` = unlimited); waiters re-plan."""
        self._tokens.set_rate(tpm, self._time_or_none())
        self._wake()

    def cool_down(self, seconds: float) -> None:
        """Nobody is admitted for `seconds` from now (extends, never shortens, a cool-down)."""
        if seconds <= 0:
            return
        self._cool_until = max(self._cool_until, self.now() + seconds)
        self._wake()

    def observed_rpm(self) -> float:
        """Requests admitted per minute over the last few seconds (what a 429 answered)."""
        now = self.now()
        self._prune(now)
        if not self._grants:
            return 0.0
        span = max(1.0, min(_OBSERVE_WINDOW_S, now - self._grants[0]))
        return len(self._grants) / span * 60.0

    def abort(self, error: BaseException) -> None:
        """Fail every waiter and every later `acquire` with `error` (a run-stopping error)."""
        self._error = error
        while self._waiters:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(copy.copy(error))  # one instance per waiter: no shared traceback
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- admission ----------------------------------------------------------------------
    async def acquire(self, *, tokens: float = 0.0, requests: float = 1.0) -> Ticket:
        if self._error is not None:
            raise copy.copy(self._error)
        loop = self._get_loop()
        ticket = Ticket(requests=float(requests), tokens=float(tokens), granted_at=0.0)
        if not self._waiters and self._admissible(ticket, loop.time()):
            self._grant(ticket, loop.time())
            return ticket
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append((ticket, fut))
        self._wake()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.settle(ticket, requests=0.0, tokens=0.0)  # admitted, then cancelled: refund
            self._wake()
            raise
        return ticket

    def settle(self, ticket: Ticket, *, requests: float | None = None, tokens: float | None = None) -> None:
        """Correct a ticket with what the call really used (`None` = as estimated)."""
        now = self.now()
        if requests is not None and requests != ticket.requests:
            self._requests.adjust(requests - ticket.requests, now)
            ticket.requests = requests
        if tokens is not None and tokens != ticket.tokens:
            self._tokens.adjust(tokens - ticket.tokens, now)
            ticket.tokens = tokens
        self._wake()

    # -- internals ----------------------------------------------------------------------
    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _time_or_none(self) -> float | None:
        """The loop's time, or None when configured before any loop runs (nothing to carry over)."""
        if self._loop is not None:
            return self._loop.time()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return None

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else asyncio.get_running_loop().time()

    def _ready_at(self, ticket: Ticket) -> float:
        return max(self._cool_until, self._requests.ready_at(ticket.requests),
                   self._tokens.ready_at(ticket.tokens))

    def _admissible(self, ticket: Ticket, now: float) -> bool:
        return self._ready_at(ticket) <= now + _EPSILON_S

    def _grant(self, ticket: Ticket, now: float) -> None:
        self._requests.adjust(ticket.requests, now)
        self._tokens.adjust(ticket.tokens, now)
        ticket.granted_at = now
        self._grants.append(now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - _OBSERVE_WINDOW_S
        while self._grants and self._grants[0] < horizon:
            self._grants.popleft()

    def _wake(self) -> None:
        """Admit every head waiter that fits now; otherwise arm one timer for the head."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is None or self._error is not None:
            return
        now = self._loop.time()
        while self._waiters:
            ticket, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            at = self._ready_at(ticket)
            if at > now + _EPSILON_S:
                self._timer = self._loop.call_at(at, self._wake)
                return
            self._waiters.popleft()
            self._grant(ticket, now)
            fut.set_result(None)


class AdaptiveRates:
    """Decides the pacer's rates: given by the user, learned from headers, or found by AIMD.

    Precedence: a rate the user set is never changed. Otherwise a provider's rate-limit
    headers (``x-ratelimit-limit-*``, ``anthropic-ratelimit-*-limit``) are the account's
    truth and replace the profile's default guess. With no header and a 429, the requests
    rate is found by AIMD: start from the concurrency bound alone; on a second 429 within
    ten seconds drop to half the rate that drew them (once per round trip: 429s from
    requests sent before the cut do not cut again), then add about 1% of that rate per
    second while calls succeed.

    A known limit is paced at `pace_fraction` of itself (98%): the service's bucket then
    gains a little slack every second, which absorbs network jitter that would otherwise
    land a request a few milliseconds before its token and draw a 429.
    """

    def __init__(self, pacer: Pacer, *, user_rpm: float | None, user_tpm: float | None,
                 default_rpm: float | None = None, default_tpm: float | None = None,
                 pace_fraction: float = 0.98) -> None:
        self.pacer = pacer
        self.pace_fraction = pace_fraction
        self.rpm_source: str | None = "user" if user_rpm else ("profile" if default_rpm else None)
        self.tpm_source: str | None = "user" if user_tpm else ("profile" if default_tpm else None)
        self.rpm_limit = user_rpm or default_rpm
        self.tpm_limit = user_tpm or default_tpm
        self._last_cut = -math.inf
        self._strikes: deque[float] = deque()
        self._step = 0.5  # rpm gained per second of success after a cut
        pacer.set_rpm(self._paced(self.rpm_limit))
        pacer.set_tpm(self._paced(self.tpm_limit))

    def _paced(self, limit: float | None) -> float | None:
        return None if limit is None else limit * self.pace_fraction

    @property
    def learned_rpm(self) -> float | None:
        if self.rpm_source == "aimd":
            return self.pacer.rpm
        return self.rpm_limit if self.rpm_source == "headers" else None

    @property
    def learned_tpm(self) -> float | None:
        return self.tpm_limit if self.tpm_source == "headers" else None

    def observe_headers(self, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        limit = info.limit_requests
        if (self.rpm_source != "user" and limit and limit > 0
                and (self.rpm_source != "headers" or self.rpm_limit != limit)):
            self.rpm_source, self.rpm_limit = "headers", limit
            self.pacer.set_rpm(self._paced(limit))
        limit = info.limit_tokens
        if (self.tpm_source != "user" and limit and limit > 0
                and (self.tpm_source != "headers" or self.tpm_limit != limit)):
            self.tpm_source, self.tpm_limit = "headers", limit
            self.pacer.set_tpm(self._paced(limit))

    def on_success(self, ticket: Ticket, info: RateLimitInfo | None) -> None:
        self.observe_headers(info)
        if self.rpm_source != "aimd" or ticket.granted_at < self._last_cut:
            return
        rpm = self.pacer.rpm
        if rpm is None:
            return
        # successes arrive rpm/60 a second, so each adds step*60/rpm: +step rpm per second
        self.pacer.set_rpm(rpm + self._step * 60.0 / rpm)

    def on_rate_limited(self, ticket: Ticket, info: RateLimitInfo | None) -> None:
        self.observe_headers(info)
        if self.rpm_source in ("user", "headers") or ticket.granted_at < self._last_cut:
            return
        # One isolated 429 is as likely a hiccup as a limit (and the cool-down already
        # answers it); cut only on a second one within the window, so a service with a
        # few spurious 429s is not throttled to a crawl.
        now = self.pacer.now()
        self._strikes.append(now)
        while self._strikes and self._strikes[0] < now - _OBSERVE_WINDOW_S:
            self._strikes.popleft()
        if len(self._strikes) < 2:
            return
        self._strikes.clear()
        observed = self.pacer.observed_rpm()
        current = self.pacer.rpm
        base = observed if current is None else min(current, observed or current)
        new = max(1.0, base / 2.0)
        self._last_cut = now
        self._step = max(0.5, new * 0.01)
        self.rpm_source = "aimd"
        self.rpm_limit = None
        self.pacer.set_rpm(new)
