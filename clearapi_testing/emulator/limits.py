"""RPM and TPM limits enforced like the hosted services: continuously refilled token buckets.

Why buckets with a short burst: OpenAI and Anthropic advertise per-minute limits but enforce them
over much shorter windows ("60 RPM may be enforced as 1 request per second"), so a client that
sends a minute's quota at once gets 429s. Each bucket refills at ``limit / 60`` per second and holds
at most ``burst_seconds`` worth (default 1 s; never less than one request, and a single request
larger than the token bucket passes when the bucket is full, leaving it in debt).

Token cost of a request = prompt tokens + (max_tokens or `default_max_tokens`) x n, charged up front
and never refunded, as OpenAI counts it. A request asking for more tokens than the whole per-minute
limit can never pass and gets a 429 saying so. Both buckets are checked before either is charged.

Headers go on every API response once a limit is set and `ratelimit_headers` is on (none when no
limit is configured or the setting is off, so clients can be tested on both paths). ``remaining`` is what the bucket holds now, ``reset`` the time
until it is full again (OpenAI: ``"20ms"``, ``"1.5s"``, ``"6m0s"``; Anthropic: an RFC 3339 instant).
Anthropic's ``-input-tokens-`` and ``-output-tokens-`` headers report the one combined token bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "RateLimits", "TokenBucket", "format_duration"]

Clock = Callable[[], float]


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes = int(seconds // 60)
    rest = f"{seconds - 60 * minutes:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{rest}s"


class TokenBucket:
    def __init__(self, per_minute: float, burst_seconds: float, clock: Clock, min_capacity: float = 1.0) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(per_minute * burst_seconds / 60.0, min_capacity)
        self.level = self.capacity
        self._clock = clock
        self._t = clock()

    def refill(self) -> float:
        now = self._clock()
        if now > self._t:
            self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now
        return self.level

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` could be taken (0 = now). Call `refill` first."""
        need = min(amount, self.capacity)
        if self.level >= need - 1e-9:  # float dust must not turn a wait of exactly retry-after into a 429
            return 0.0
        return (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def reset_in(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


class RateLimits:
    """The requests and tokens buckets of one emulator; either may be absent."""

    def __init__(self, rpm: float | None, tpm: float | None, burst_seconds: float,
                 clock: Clock = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, burst_seconds, clock) if rpm else None
        self.tokens = TokenBucket(tpm, burst_seconds, clock) if tpm else None

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def acquire(self, requests: int, tokens: int) -> tuple[float, str] | None:
        """Charge the cost, or return (seconds to wait, "requests" | "tokens" | "too_large")."""
        worst: tuple[float, str] | None = None
        for name, bucket, amount in (("requests", self.requests, requests), ("tokens", self.tokens, tokens)):
            if bucket is None or amount <= 0:
                continue
            bucket.refill()
            if name == "tokens" and amount > bucket.limit:
                return (60.0, "too_large")
            wait = bucket.wait_for(amount)
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, name)
        if worst is not None:
            return worst
        if self.requests is not None and requests > 0:
            self.requests.take(requests)
        if self.tokens is not None and tokens > 0:
            self.tokens.take(tokens)
        return None

    def openai_headers(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is None:
                continue
            bucket.refill()
            out += [(f"x-ratelimit-limit-{name}", str(int(bucket.limit))),
                    (f"x-ratelimit-remaining-{name}", str(max(0, math.floor(bucket.level)))),
                    (f"x-ratelimit-reset-{name}", format_duration(bucket.reset_in()))]
        return out

    def anthropic_headers(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # round up, never early
        groups: list[tuple[str, TokenBucket | None]] = [
            ("requests", self.requests), ("tokens", self.tokens),
            ("input-tokens", self.tokens), ("output-tokens", self.tokens)]
        for name, bucket in groups:
            if bucket is None:
                continue
            bucket.refill()
            reset = (now + timedelta(seconds=math.floor(bucket.reset_in()))).strftime("%Y-%m-%dT%H:%M:%SZ")
            out += [(f"anthropic-ratelimit-{name}-limit", str(int(bucket.limit))),
                    (f"anthropic-ratelimit-{name}-remaining", str(max(0, math.floor(bucket.level)))),
                    (f"anthropic-ratelimit-{name}-reset", reset)]
        return out


def retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    """``retry-after`` (whole seconds, rounded up) and the precise ``retry-after-ms``."""
    return [("retry-after", str(max(1, math.ceil(seconds)))),
            ("retry-after-ms", str(max(1, math.ceil(seconds * 1000))))]
