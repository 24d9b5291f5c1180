"""The protocol-neutral half of translating SDK exceptions into clearapi's tree.

`clearapi.errors` promises one translation per wire protocol, in the adapters, and that
stays true: each adapter's ``map_error`` is still where its SDK's exceptions are read (which
classes, where the body keeps the message) and where its protocol's own cases are decided
(Anthropic's 529 overload and billing errors, OpenAI's ``insufficient_quota`` and a 400 that
refuses logprobs). What the protocols mean the same way lives here once, so the two
translations cannot drift apart: a timeout, a reset, a body that did not decode, and what an
HTTP status says about retrying. Only adapters (and their batch submitters) use this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import NoReturn

import httpx2
import pydantic

from clearapi.adapters.ratelimit_headers import parse_retry_after
from clearapi.errors import (
    AuthError,
    BadRequest,
    ClearAPIError,
    FatalError,
    RateLimited,
    TransientError,
    redact,
)
from clearapi.records import RateLimitInfo

__all__ = ["BELOW_SDK", "HTTPFailure", "SdkErrors", "below_sdk_error", "map_status", "raise_translated",
           "transport_error"]

_UNDECODABLE = (json.JSONDecodeError, pydantic.ValidationError, UnicodeDecodeError)
#: Failures that reach us past the SDK's own classes: a body that did not decode, or the socket.
BELOW_SDK = (*_UNDECODABLE, httpx2.HTTPError)


@dataclass(frozen=True)
class SdkErrors:
    """Where a Stainless-generated SDK (openai and anthropic share the layout) files non-HTTP failures."""

    timeout: type[Exception]
    connection: type[Exception]
    malformed: type[Exception]


def _scrubbed(provider: str, text: str, key: str | None) -> str:
    return redact(f"{provider}: {text}", key)


def below_sdk_error(provider: str, exc: BaseException) -> TransientError:
    """A failure from `BELOW_SDK` as the transient error it is (the next try may decode)."""
    if isinstance(exc, _UNDECODABLE):
        return TransientError(f"{provider}: malformed response body ({type(exc).__name__})", reason="malformed")
    return TransientError(f"{provider}: connection failed ({type(exc).__name__})", reason="connection")


def transport_error(exc: BaseException, sdk: SdkErrors, *, provider: str, base_url: str,
                    key: str | None) -> ClearAPIError:
    """An SDK exception that carries no HTTP status: timeout, connection, malformed, or unknown (fatal)."""
    if isinstance(exc, sdk.timeout):
        return TransientError(_scrubbed(provider, f"request timed out ({base_url})", key), reason="timeout")
    if isinstance(exc, sdk.connection):
        cause = exc.__cause__ or exc.__context__
        detail = f": {type(cause).__name__}" if cause else ""
        return TransientError(_scrubbed(provider, f"connection failed to {base_url}{detail}", key),
                              reason="connection")
    if isinstance(exc, sdk.malformed):
        return TransientError(_scrubbed(provider, "malformed response body", key), reason="malformed")
    return FatalError(_scrubbed(provider, f"{type(exc).__name__}: {exc}", key))


def raise_translated(exc: Exception, sdk_error: type[Exception], *, provider: str,
                     map_error: Callable[[BaseException], ClearAPIError]) -> NoReturn:
    """Re-raise whatever an SDK call raised as clearapi's error; anything unknown unchanged.

    `sdk_error` is the SDK's base class; `map_error` the adapter's translation of it.
    """
    if isinstance(exc, ClearAPIError):
        raise exc
    if isinstance(exc, sdk_error):
        raise map_error(exc) from exc
    if isinstance(exc, BELOW_SDK):
        raise below_sdk_error(provider, exc) from exc
    raise exc


@dataclass(frozen=True)
class HTTPFailure:
    """An HTTP error answer, as an adapter read it out of its SDK's exception."""

    provider: str
    model: str
    status: int
    kind: str  #: the error's type or code; "" when the body named none
    server: str  #: the server's own message, at most 500 characters
    headers: Mapping[str, str]
    key: str | None  #: scrubbed from every message

    def message(self, text: str) -> str:
        return _scrubbed(self.provider, text, self.key)

    @property
    def label(self) -> str:
        return f"HTTP {self.status}" + (f" {self.kind}" if self.kind else "")

    @property
    def text(self) -> str:
        return self.message(f"{self.label} for model {self.model!r}: {self.server}")

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers)


def map_status(failure: HTTPFailure, *, key_env: str | None,
               ratelimit: Callable[[Mapping[str, str]], RateLimitInfo | None],
               keeps_class: Collection[int]) -> ClearAPIError:
    """What a status means for retrying, once the adapter has ruled out its protocol's own cases.

    A server's ``x-should-retry: false`` makes any status fatal except those in
    `keeps_class`, whose own class (bad request, auth) already says more precisely why;
    ``x-should-retry: true`` makes any status that is not otherwise classed transient.
    `ratelimit` reads the protocol's rate-limit headers off a 429.
    """
    status, headers, text = failure.status, failure.headers, failure.text
    if headers.get("x-should-retry") == "false" and status not in keeps_class:
        return FatalError(failure.message(f"{failure.label} for model {failure.model!r} "
                                          f"(server says do not retry): {failure.server}"))
    if status == 429:
        return RateLimited(text, retry_after=failure.retry_after, ratelimit=ratelimit(headers))
    if status in (401, 403):
        hint = f" (the key comes from {key_env})" if key_env else ""
        return AuthError(text + hint)
    if status in (408, 409) or status >= 500 or headers.get("x-should-retry") == "true":
        return TransientError(text, reason=str(status), retry_after=failure.retry_after)
    return BadRequest(text)
