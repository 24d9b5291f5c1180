"""The status rules both wire protocols share (`clearapi.adapters.errors.map_status`).

The adapters' own test files prove the mapping end to end through each SDK; these pin the
shared precedence rules directly, including the ``x-should-retry`` cases no emulator route
serves, so a change to the shared half shows up here and not as a puzzle in one adapter.
"""

from __future__ import annotations

import httpx2
import pytest

from clearapi.adapters.errors import HTTPFailure, below_sdk_error, map_status
from clearapi.adapters.ratelimit_headers import parse_ratelimit
from clearapi.errors import AuthError, BadRequest, FatalError, RateLimited, TransientError
from clearapi.records import RateLimitInfo

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz012345"
KEEPS_CLASS = (400, 401, 403, 404, 422)


def mapped(status: int, headers: dict[str, str] | None = None, server: str = "nope") -> Exception:
    failure = HTTPFailure(provider="openai", model="m", status=status, kind="", server=server,
                          headers=headers or {}, key=KEY)
    return map_status(failure, key_env="OPENAI_API_KEY", ratelimit=parse_ratelimit, keeps_class=KEEPS_CLASS)


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (400, {"x-should-retry": "false"}, BadRequest),  # keeps its class: says more than "do not retry"
    (401, {"x-should-retry": "false"}, AuthError),
    (500, {"x-should-retry": "false"}, FatalError),
    (429, {"x-should-retry": "false"}, FatalError),
    (400, {"x-should-retry": "true"}, TransientError),
    (418, {}, BadRequest),
    (418, {"x-should-retry": "true"}, TransientError),
    (599, {}, TransientError),
])
def test_should_retry_header_against_status(status: int, headers: dict[str, str],
                                            expected: type[Exception]) -> None:
    assert type(mapped(status, headers)) is expected


def test_rate_limit_carries_retry_after_and_parsed_limits() -> None:
    exc = mapped(429, {"retry-after": "2", "x-ratelimit-limit-requests": "60"})
    assert isinstance(exc, RateLimited) and exc.retry_after == 2.0
    assert isinstance(exc.ratelimit, RateLimitInfo) and exc.ratelimit.limit_requests == 60


def test_messages_name_provider_status_model_and_never_the_key() -> None:
    exc = mapped(401, server=f"Incorrect API key provided: {KEY}")
    assert isinstance(exc, AuthError)
    text = str(exc)
    assert KEY not in text and text.startswith("openai: HTTP 401 for model 'm'")
    assert text.endswith("(the key comes from OPENAI_API_KEY)")


def test_below_sdk_failures_are_transient_with_a_reason() -> None:
    assert below_sdk_error("p", httpx2.ConnectError("refused")).reason == "connection"
    assert below_sdk_error("p", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")).reason == "malformed"
