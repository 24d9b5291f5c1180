"""clearapi's exceptions.

The tree, drawn once::

    ClearAPIError
    ├── RateLimited(retry_after)       429 from a rate limit: wait, then retry
    ├── TransientError(reason)         5xx, 529 overloaded, timeouts, resets, malformed bodies: retry
    └── FatalError                     retrying cannot help: stop the run, keep what finished
        ├── AuthError                  401/403, missing API key
        ├── QuotaExhausted             429 `insufficient_quota`: the account is out of money
        ├── BudgetExceeded             the run's own --max-cost would be passed
        ├── ServiceDown                many requests in a row failed (connection, 5xx, timeout)
        ├── BadRequest                 400/404/422: our request is wrong
        ├── CapabilityError            the provider cannot do what the method needs (e.g. logprobs)
        ├── ConfigError                unknown provider, bad profile, bad option
        └── InputError(file, line, field)  the user's file cannot be read at all

SDK exceptions are translated to these in exactly one place per wire protocol (the
adapters), so the engine's retry policy and the CLI only ever see this tree. Messages
never contain an API key: adapters build them from status, type and the server's own
error message, which `redact()` scrubs of anything that looks like a key.
"""

from __future__ import annotations

import re

from clearapi.redact import redact_urls

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetExceeded",
    "CapabilityError",
    "ClearAPIError",
    "ConfigError",
    "FatalError",
    "InputError",
    "QuotaExhausted",
    "RateLimited",
    "ServiceDown",
    "TransientError",
    "redact",
]

# sk-... (OpenAI, Anthropic sk-ant-, OpenRouter sk-or-), gsk_ (Groq), fw_ (Fireworks), xai-, tgp_,
# nvapi-, Bearer tokens, and long opaque runs that are not part of a path.
_KEY_PATTERNS = re.compile(
    r"(?:(?<![A-Za-z0-9])(?:sk|gsk|fw|xai|tgp|nvapi)[-_][A-Za-z0-9_\-]{8,})"
    r"|(?:Bearer\s+[A-Za-z0-9._\-]{8,})"
    r"|(?:(?<![A-Za-z0-9_\-/.])[A-Za-z0-9_\-]{40,}(?![A-Za-z0-9_\-/.]))"
)


def redact(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like an API key, URL credentials, and the given secrets, from `text`."""
    text = redact_urls(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_PATTERNS.sub("***", text)


class ClearAPIError(Exception):
    """Base of every error clearapi raises on purpose."""

    #: how many times the engine tried the call before giving up (None: not an engine call)
    attempts: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RateLimited(ClearAPIError):
    """The service said slow down. `retry_after` is its hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None,
                 ratelimit: object | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: a `clearapi.records.RateLimitInfo` parsed from the 429's headers, when present
        self.ratelimit = ratelimit


class TransientError(ClearAPIError):
    """A failure worth retrying. `reason` names it for accounting (``"500"``, ``"timeout"``...)."""

    def __init__(self, message: str, reason: str = "transient", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class FatalError(ClearAPIError):
    """Retrying cannot help; the run stops cleanly and keeps what finished."""


class AuthError(FatalError):
    """The key is missing, wrong or not allowed."""


class QuotaExhausted(FatalError):
    """The account has no credit left (OpenAI's 429 `insufficient_quota`)."""


class BudgetExceeded(FatalError):
    """The next call would take the run past its `--max-cost`."""


class ServiceDown(FatalError):
    """The engine's circuit breaker: request after request failed with no success in between, so
    the server is down or unreachable and every further call would only wait and fail."""


class BadRequest(FatalError):
    """The service rejected the request itself (400, 404, 422)."""


class CapabilityError(FatalError):
    """The provider or model cannot do what was asked (e.g. no logprobs)."""


class ConfigError(FatalError):
    """Unknown provider, invalid profile or contradictory options."""


class InputError(FatalError):
    """An input file that cannot be read at all. Row-level problems are `Reject`s, not this."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field!r})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.file = file
        self.line = line
        self.field = field
