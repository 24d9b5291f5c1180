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
import logging
import math
import re
from collections import deque
from dataclasses import dataclass

from clearapi.records import RateLimitInfo

__all__ = ["AdaptiveRates", "Pacer", "Ticket", "limited_dimension"]

logger = logging.getLogger(__name__)

_OBSERVE_WINDOW_S = 10.0
#: answers in the window before what the server accepted counts as a measure of its limit
_MIN_ACCEPTED = 10
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

    def set_rate(self, per_minute: float | None, now: float | None, full: bool = False) -> None:
        """`now` is None before any loop ran: the bucket is still empty. `full`: no burst
        credit now (after a 429 the service's own bucket is empty too)."""
        level = 0.0 if now is None else self.level(now)
        self.rate = None if per_minute is None else per_minute / 60.0
        if self.rate is None or now is None:
            self.tat = -math.inf
        else:
            self.tat = now + level / self.rate
        if self.rate is not None:
            self.capacity = max(self.minimum, self.rate * self.burst_seconds)
            if full and now is not None:
                self.tat = max(self.tat, now + self.capacity / self.rate)

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

    def set_rpm(self, rpm: float | None, *, full: bool = False) -> None:
        """Change the requests rate now (``None`` = unlimited); waiters re-plan. `full`:
        start from a full bucket, so the new rate is paced from now, not a burst."""
        self._requests.set_rate(rpm, self._time_or_none(), full)
        self._wake()

    def set_tpm(self, tpm: float | None, *, full: bool = False) -> None:
        """Change the tokens rate now (``None`` = unlimited); waiters re-plan."""
        self._tokens.set_rate(tpm, self._time_or_none(), full)
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


def limited_dimension(info: RateLimitInfo | None, message: str) -> str:
    """Which limit a 429 hit: ``"tokens"`` or ``"requests"`` (the default when nothing says).

    Headers say it best (the exhausted bucket); otherwise the message does, as OpenAI's
    ("... on tokens per min (TPM)") and Anthropic's ("... input tokens per minute") do.
    """
    if info is not None:
        if info.remaining_requests is not None and info.remaining_requests < 1:
            return "requests"
        if info.remaining_tokens is not None and info.remaining_tokens < 1:
            return "tokens"
    return "tokens" if _TOKENS_429.search(message) else "requests"


_TOKENS_429 = re.compile(r"\btokens?\s+per\s+min|\b[IO]?TPM\b|HTTP 429 tokens\b", re.IGNORECASE)


class _Limit:
    """One dimension (requests or tokens per minute): what is known of its limit, and AIMD's rate.

    ``user`` is a ceiling, ``header`` the account's truth, ``guess`` a profile's first guess
    (used only while neither is known). ``aimd`` is the rate found by backing off from 429s,
    below the ceiling and climbing back toward it; None = not cut (pace at the ceiling).
    """

    __slots__ = ("aimd", "guess", "header", "measured", "step", "user")

    def __init__(self, user: float | None, guess: float | None) -> None:
        self.user = user or None
        self.guess = guess or None
        self.header: float | None = None
        self.aimd: float | None = None
        self.step = 0.0
        #: whether `aimd` came from what the server accepted (not a provisional halving)
        self.measured = False

    @property
    def limit(self) -> float | None:
        known = [v for v in (self.user, self.header) if v is not None]
        return min(known) if known else self.guess

    @property
    def source(self) -> str | None:
        if self.aimd is not None:
            return "aimd"
        if self.header is not None and (self.user is None or self.header <= self.user):
            return "headers"
        return "user" if self.user is not None else ("profile" if self.guess is not None else None)

    def pace(self, fraction: float) -> float | None:
        limit = self.limit
        ceiling = None if limit is None else limit * fraction
        if self.aimd is None:
            return ceiling
        return self.aimd if ceiling is None else min(self.aimd, ceiling)


class AdaptiveRates:
    """Decides the pacer's rates: told by the user, learned from headers, or found by AIMD.

    Requests and tokens per minute are each learned the same way. A provider's rate-limit
    headers (``x-ratelimit-limit-*``, ``anthropic-ratelimit-*-limit``) are the account's
    truth and replace the profile's guess; a rate the user told is a ceiling, never raised
    by headers. With nothing known the pacer is off and only the concurrency bound holds.

    A 429 still backs off below any of these (additive increase, multiplicative decrease):
    on a second 429 within ten seconds, the limit it names drops to `backoff` times the rate
    the server *accepted* over the last seconds (what a saturated server accepts is its
    limit), at most once per round trip (429s for calls sent before the cut do not cut
    again). Each success then adds `climb` of that rate per second, back up to the ceiling.
    An unknown limit is thus found from one short overshoot, then held just below.

    A known limit is paced at `pace_fraction` of itself (98%): the service's bucket then
    gains a little slack every second, which absorbs network jitter that would otherwise
    land a request a few milliseconds before its token and draw a 429.
    """

    def __init__(self, pacer: Pacer, *, user_rpm: float | None, user_tpm: float | None,
                 default_rpm: float | None = None, default_tpm: float | None = None,
                 pace_fraction: float = 0.98, backoff: float = 0.9, climb: float = 0.005) -> None:
        self.pacer = pacer
        self.pace_fraction = pace_fraction
        self.backoff = backoff
        self.climb = climb
        self._requests = _Limit(user_rpm, default_rpm)
        self._tokens = _Limit(user_tpm, default_tpm)
        self._last_cut = -math.inf
        self._strikes: deque[float] = deque()
        #: (time, requests, tokens) of answered calls, to measure what the server accepts
        self._accepted: deque[tuple[float, float, float]] = deque()
        self._apply()

    # -- what is known ------------------------------------------------------------------
    @property
    def rpm_source(self) -> str | None:
        return self._requests.source

    @property
    def tpm_source(self) -> str | None:
        return self._tokens.source

    @property
    def rpm_limit(self) -> float | None:
        return self._requests.limit

    @property
    def tpm_limit(self) -> float | None:
        return self._tokens.limit

    @property
    def learned_rpm(self) -> float | None:
        return _learned(self._requests, self.pacer.rpm)

    @property
    def learned_tpm(self) -> float | None:
        return _learned(self._tokens, self.pacer.tpm)

    # -- events -------------------------------------------------------------------------
    def observe_headers(self, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        changed = False
        for dim, limit in ((self._requests, info.limit_requests), (self._tokens, info.limit_tokens)):
            if limit and limit > 0 and dim.header != limit:
                dim.header = limit
                changed = True
        if changed:
            self._apply()

    def on_success(self, ticket: Ticket, info: RateLimitInfo | None) -> None:
        self.observe_headers(info)
        now = self.pacer.now()
        self._accepted.append((now, ticket.requests, ticket.tokens))
        self._prune(now)
        if ticket.granted_at < self._last_cut:
            return
        grew = False
        for dim, amount in ((self._requests, ticket.requests), (self._tokens, ticket.tokens)):
            if dim.aimd is None or amount <= 0:
                continue
            # answers arrive at about aimd/60 units a second, each adds its share: +step per second
            dim.aimd += dim.step * amount * 60.0 / dim.aimd
            limit = dim.limit
            if limit is not None and dim.aimd >= limit * self.pace_fraction:
                dim.aimd = None  # back at the ceiling
            grew = True
        if grew:
            self._apply()

    def on_rate_limited(self, ticket: Ticket, info: RateLimitInfo | None, message: str = "") -> None:
        self.observe_headers(info)
        if ticket.granted_at < self._last_cut:
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
        tokens = limited_dimension(info, message) == "tokens"
        dim = self._tokens if tokens else self._requests
        current = self.pacer.tpm if tokens else self.pacer.rpm
        accepted = self._accepted_per_minute(now, tokens)
        if len(self._accepted) < _MIN_ACCEPTED:
            accepted = 0.0  # too few answers to measure a limit by: cut provisionally
        floor = max(1.0, ticket.tokens) if tokens else 1.0
        if accepted:
            # a provisional rate was a guess: what the server accepted replaces it
            base = accepted if current is None or not dim.measured else min(current, accepted)
            dim.aimd = max(floor, base * self.backoff)
            dim.step = max(floor / 60.0, dim.aimd * self.climb)
        else:
            # nothing answered yet (a first burst's 429s come back before its answers): halve
            # what was sent, provisionally, and climb fast until a measured cut replaces it
            sent = current if tokens else min(current or math.inf, self.pacer.observed_rpm())
            if not sent or sent == math.inf:
                return
            dim.aimd = max(floor, sent / 2.0)
            dim.step = max(floor / 60.0, dim.aimd * self.climb * 10.0)
        dim.measured = bool(accepted)
        self._last_cut = now
        logger.debug("429s: %s per minute cut to %.0f (server accepted %.0f)", "tokens" if tokens else "requests",
                     dim.aimd, accepted)
        self._apply(full=True)

    # -- internals ----------------------------------------------------------------------
    def _apply(self, full: bool = False) -> None:
        self.pacer.set_rpm(self._requests.pace(self.pace_fraction), full=full)
        self.pacer.set_tpm(self._tokens.pace(self.pace_fraction), full=full)

    def _prune(self, now: float) -> None:
        horizon = now - _OBSERVE_WINDOW_S
        while self._accepted and self._accepted[0][0] < horizon:
            self._accepted.popleft()

    def _accepted_per_minute(self, now: float, tokens: bool) -> float:
        self._prune(now)
        if not self._accepted:
            return 0.0
        span = max(1.0, now - self._accepted[0][0])
        total = sum(t if tokens else r for _, r, t in self._accepted)
        return total / span * 60.0


def _learned(dim: _Limit, pacing: float | None) -> float | None:
    if dim.source == "aimd":
        return pacing
    return dim.header if dim.source == "headers" else None
