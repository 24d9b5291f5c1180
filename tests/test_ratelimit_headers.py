"""Rate-limit and Retry-After header parsing (both dialects), with property tests."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime, timedelta

import httpx2
from hypothesis import given
from hypothesis import strategies as st

from clearapi.adapters.ratelimit_headers import (
    parse_anthropic_ratelimit,
    parse_duration,
    parse_openai_ratelimit,
    parse_ratelimit,
    parse_retry_after,
    parse_rfc3339,
)

# --- Go-style durations (OpenAI x-ratelimit-reset-*) -------------------------------------


def test_known_durations() -> None:
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("20ms") == 0.02
    assert parse_duration("1s") == 1.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("17ms") == 0.017
    assert parse_duration("500us") == 0.0005
    assert parse_duration("0.25") == 0.25  # a bare number is seconds
    assert parse_duration(" 2m ") == 120.0


def test_garbage_durations_are_none() -> None:
    for bad in (None, "", "soon", "5 minutes", "m5", "1x", "-3s", "-1", "nan", "inf", "1s garbage"):
        assert parse_duration(bad) is None, bad


@given(h=st.integers(0, 48), m=st.integers(0, 59), s=st.integers(0, 59), ms=st.integers(0, 999))
def test_duration_roundtrip(h: int, m: int, s: int, ms: int) -> None:
    text = (f"{h}h" if h else "") + (f"{m}m" if m or h else "") + f"{s}.{ms:03d}s"
    got = parse_duration(text)
    assert got is not None and math.isclose(got, h * 3600 + m * 60 + s + ms / 1000, abs_tol=1e-9)


@given(st.text(max_size=20))
def test_duration_never_raises_and_is_never_negative(text: str) -> None:
    got = parse_duration(text)
    assert got is None or (got >= 0 and math.isfinite(got))


# --- OpenAI dialect -------------------------------------------------------------------------


def test_openai_headers() -> None:
    info = parse_openai_ratelimit(httpx2.Headers({
        "X-RateLimit-Limit-Requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "2s"}))
    assert info is not None
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s) == (500, 499, 0.12)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s) == (30000, 29000, 2.0)


def test_plain_dict_is_case_insensitive_too() -> None:
    info = parse_ratelimit({"X-RATELIMIT-LIMIT-REQUESTS": "60"})
    assert info is not None and info.limit_requests == 60


def test_no_headers_no_info() -> None:
    assert parse_ratelimit({}) is None
    assert parse_ratelimit({"content-type": "application/json"}) is None
    assert parse_openai_ratelimit({"x-ratelimit-limit-requests": "lots"}) is None


# --- Anthropic dialect ------------------------------------------------------------------------


def test_anthropic_headers_resets_are_relative_to_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    info = parse_anthropic_ratelimit({
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-01-01T12:00:30Z",
        "anthropic-ratelimit-tokens-limit": "40000", "anthropic-ratelimit-tokens-remaining": "39000",
        "anthropic-ratelimit-tokens-reset": "2026-01-01T12:00:01.500000+00:00"}, now=now)
    assert info is not None
    assert (info.limit_requests, info.remaining_requests, info.reset_requests_s) == (50, 49, 30.0)
    assert (info.limit_tokens, info.remaining_tokens, info.reset_tokens_s) == (40000, 39000, 1.5)


def test_anthropic_input_tokens_stand_in_for_missing_combined_tokens() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    info = parse_anthropic_ratelimit({"anthropic-ratelimit-input-tokens-limit": "30000",
                                      "anthropic-ratelimit-input-tokens-remaining": "100",
                                      "anthropic-ratelimit-input-tokens-reset": "2025-12-31T23:59:00Z"},
                                     now=now)
    assert info is not None and info.limit_tokens == 30000 and info.remaining_tokens == 100
    assert info.reset_tokens_s == 0.0  # a reset in the past means "now", never negative


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.floats(0, 86_400, allow_nan=False))
def test_rfc3339_reset_roundtrip(now: datetime, ahead: float) -> None:
    stamp = (now + timedelta(seconds=ahead)).isoformat().replace("+00:00", "Z")
    info = parse_anthropic_ratelimit({"anthropic-ratelimit-requests-reset": stamp}, now=now)
    assert info is not None and info.reset_requests_s is not None
    assert math.isclose(info.reset_requests_s, ahead, abs_tol=1e-5)


def test_rfc3339_forms() -> None:
    assert parse_rfc3339("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_rfc3339("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_rfc3339("yesterday") is None and parse_rfc3339("") is None and parse_rfc3339(None) is None


# --- Retry-After, in openai-python's order ----------------------------------------------------


def test_retry_after_order_ms_then_seconds_then_date() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "3"}) == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == 20.0
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 50, usegmt=True)}, now=now) == 0.0


def test_retry_after_absent_or_garbage_is_no_hint() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "whenever"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None


def test_retry_after_overflow_is_a_long_wait_not_a_short_one() -> None:
    assert parse_retry_after({"retry-after": "1e999"}) == math.inf
    assert parse_retry_after({"retry-after": "-5"}) == 0.0


@given(st.floats(0, 10_000, allow_nan=False, allow_infinity=False))
def test_retry_after_seconds_and_ms_agree(seconds: float) -> None:
    a = parse_retry_after({"retry-after": repr(seconds)})
    b = parse_retry_after({"retry-after-ms": repr(seconds * 1000)})
    assert a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x-other"]), st.text(max_size=30)))
def test_retry_after_never_raises(headers: dict[str, str]) -> None:
    got = parse_retry_after(headers, now=0.0)
    assert got is None or got >= 0
