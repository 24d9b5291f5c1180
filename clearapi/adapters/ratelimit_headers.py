"""Reading what a provider's response headers say about its limits.

Two dialects exist. OpenAI (and most OpenAI-compatible services: Groq, Together, ...)
send ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with resets as Go-style
durations (``"6m0s"``, ``"20ms"``, ``"1.5s"``). Anthropic sends
``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` with resets as RFC 3339
instants. Both become one `RateLimitInfo`, so the engine learns limits without knowing
which service it talks to.

`parse_retry_after` follows openai-python's order exactly (``retry-after-ms``, then
``retry-after`` in seconds, then ``retry-after`` as an HTTP date), so our engine waits as
long as the SDK would have if it were allowed to retry. Every parser returns ``None`` for
"no usable hint" rather than raising: a garbled header must never fail a call that
otherwise succeeded.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from clearapi.records import RateLimitInfo

__all__ = [
    "parse_anthropic_ratelimit",
    "parse_duration",
    "parse_openai_ratelimit",
    "parse_ratelimit",
    "parse_retry_after",
    "parse_rfc3339",
]

# Go's time.Duration.String() units, plus "us"/"µs" variants; longest first so "ms" wins over "m".
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")
_DURATION_FULL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|μs|ns|h|m|s))+")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    # httpx2.Headers is already case-insensitive; plain dicts (tests, cassettes) are not.
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        out = float(value.strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``"1h2m3.5s"``, ``"6m0s"``, ``"20ms"``) or a bare number of seconds."""
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    bare = _number(s)
    if bare is not None:
        return bare if bare >= 0 else None
    if not _DURATION_FULL.fullmatch(s):
        return None
    total = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(s))
    return total if math.isfinite(total) else None


def parse_rfc3339(text: str | None) -> datetime | None:
    """An RFC 3339 instant (``"2024-06-01T12:00:30Z"``), timezone-aware, or None."""
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def parse_openai_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """``x-ratelimit-*`` headers, or None when the response carried none."""
    return _openai(_lower(headers))


def _openai(h: dict[str, str]) -> RateLimitInfo | None:
    info = RateLimitInfo(
        limit_requests=_number(h.get("x-ratelimit-limit-requests")),
        remaining_requests=_number(h.get("x-ratelimit-remaining-requests")),
        reset_requests_s=parse_duration(h.get("x-ratelimit-reset-requests")),
        limit_tokens=_number(h.get("x-ratelimit-limit-tokens")),
        remaining_tokens=_number(h.get("x-ratelimit-remaining-tokens")),
        reset_tokens_s=parse_duration(h.get("x-ratelimit-reset-tokens")),
    )
    return info if _has_any(info) else None


def _until(instant: str | None, now: datetime) -> float | None:
    dt = parse_rfc3339(instant)
    if dt is None:
        return None
    return max(0.0, (dt - now).total_seconds())


def parse_anthropic_ratelimit(headers: Mapping[str, str], *, now: datetime | None = None) -> RateLimitInfo | None:
    """``anthropic-ratelimit-*`` headers, or None when the response carried none.

    Anthropic reports combined ``tokens-*`` and, separately, ``input-tokens-*`` /
    ``output-tokens-*``. The combined figure is the one a single token bucket can honour;
    when it is absent the input-token limit stands in (it is the one a curation run hits
    first: long prompts, short answers).
    """
    return _anthropic(_lower(headers), now)


def _anthropic(h: dict[str, str], now: datetime | None) -> RateLimitInfo | None:
    now = now or datetime.now(UTC)

    def pick(kind: str, field: str) -> str | None:
        return h.get(f"anthropic-ratelimit-{kind}-{field}")

    def tokens(field: str) -> str | None:
        return pick("tokens", field) or pick("input-tokens", field)

    info = RateLimitInfo(
        limit_requests=_number(pick("requests", "limit")),
        remaining_requests=_number(pick("requests", "remaining")),
        reset_requests_s=_until(pick("requests", "reset"), now),
        limit_tokens=_number(tokens("limit")),
        remaining_tokens=_number(tokens("remaining")),
        reset_tokens_s=_until(tokens("reset"), now),
    )
    return info if _has_any(info) else None


def parse_ratelimit(headers: Mapping[str, str], *, now: datetime | None = None) -> RateLimitInfo | None:
    """Whichever dialect the headers speak (OpenAI's wins if, oddly, both are present)."""
    h = _lower(headers)  # once: a per-response copy of every header
    return _openai(h) or _anthropic(h, now)


def _has_any(info: RateLimitInfo) -> bool:
    return any(v is not None for v in info.model_dump().values())


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` / ``retry-after``, or None for no hint.

    Same order and leniency as openai-python: milliseconds first, then (possibly
    fractional) seconds, then an HTTP date. The value is returned as the server meant
    it; the engine decides whether to obey (openai-python sleeps a hint only when it is
    finite and in (0, 60]). A date in the past gives 0.0. An overflowing number gives
    ``inf`` ("a very long time"), never a short fallback.
    """
    if headers is None:
        return None
    h = _lower(headers)
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = h.get(name)
        if value is None:
            continue
        try:
            delay = float(value.strip())
        except ValueError:
            continue
        if math.isnan(delay):
            continue
        return max(0.0, delay / divisor) if delay != -math.inf else 0.0
    raw = h.get("retry-after")
    if raw is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        when = email.utils.mktime_tz(parsed)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    current = time.time() if now is None else now
    return max(0.0, float(when - current))
