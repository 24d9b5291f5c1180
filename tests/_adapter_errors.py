"""What the two adapters' error tests share: the cases both protocols map alike, and the check.

The adapters share one status mapping (`clearapi.adapters.errors.map_status`); the cases
it must satisfy for both are listed here once, and each test file adds its protocol's own
(Anthropic's 529 and 413, OpenAI's 400-refusing-logprobs...). Each test keeps its own
protocol-specific assertions on the error `raises_exactly` hands back.
"""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from clearapi.errors import AuthError, BadRequest, FatalError, QuotaExhausted, RateLimited, TransientError

Case = tuple[str, type[Exception], str | None]  # (fault or status, error class, TransientError.reason)

#: Emulator faults (``fault_at``) both adapters map alike.
SHARED_FAULTS: list[Case] = [
    ("429", RateLimited, None),
    ("insufficient_quota", QuotaExhausted, None),  # OpenAI's 429; Anthropic's 400 "credit balance is too low"
    ("401", AuthError, None),
    ("500", TransientError, "500"),
    ("503", TransientError, "503"),
    ("reset", TransientError, "connection"),
    ("truncated", TransientError, "malformed"),
]

#: Statuses served by `_status_routes` that both adapters map alike.
SHARED_STATUSES: list[Case] = [
    ("400", BadRequest, None),
    ("403", AuthError, None),
    ("404", BadRequest, None),
    ("408", TransientError, "408"),
    ("409", TransientError, "409"),
    ("422", BadRequest, None),
    ("500-noretry", FatalError, None),
]


async def raises_exactly(call: Awaitable[object], expected: type[Exception],
                         reason: str | None = None) -> Exception:
    """Await `call`, which must raise `expected` itself: not a subclass, not an ExceptionGroup.

    With `reason`, the error must be a `TransientError` carrying that reason. Returns the
    error for the caller's own checks.
    """
    with pytest.raises(expected) as info:
        await call
    exc = info.value
    assert type(exc) is expected
    if reason is not None:
        assert isinstance(exc, TransientError) and exc.reason == reason
    return exc
