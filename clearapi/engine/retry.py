"""The retry policy: which errors are retried, and how long to wait before the next try.

Modelled on openai-python's loop, which users already trust, but owned by the engine (the
SDKs run with ``max_retries=0``) so limits and counters stay true:

* retried: `RateLimited` and `TransientError` (5xx, 529 overloaded, timeouts, resets,
  malformed bodies); never a `FatalError` (401/403, ``insufficient_quota``, 400/404/422,
  budget, capabilities) and never an exception outside clearapi's tree (a bug is not
  fixed by trying again);
* the wait is the server's ``Retry-After`` when it lies in ``(0, cap]``; otherwise
  ``0.5 * 2**n`` seconds capped at 8 s, shortened by up to 25% jitter so a crowd of
  failed calls does not return in step. A hint above the cap is not obeyed blindly.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from clearapi.errors import RateLimited, TransientError

__all__ = ["RETRYABLE", "backoff_seconds", "reason_of", "retry_policy"]

RETRYABLE = (RateLimited, TransientError)

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
JITTER = 0.25


def reason_of(exc: BaseException) -> str:
    """The accounting name of a retryable error (``"429"``, ``"500"``, ``"timeout"``...)."""
    if isinstance(exc, RateLimited):
        return "429"
    if isinstance(exc, TransientError):
        return exc.reason or "transient"
    return type(exc).__name__


def backoff_seconds(retry_number: int, hint: float | None, cap: float,
                    rand: Callable[[], float] = random.random) -> float:
    """Wait before retry number `retry_number` (1 = first retry) given the server's hint."""
    if hint is not None and 0 < hint <= cap:
        return float(hint)
    delay: float = min(INITIAL_BACKOFF_S * 2.0 ** (retry_number - 1), MAX_BACKOFF_S)
    return delay * (1.0 - JITTER * rand())


class _Wait:
    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        hint = getattr(exc, "retry_after", None)
        return backoff_seconds(state.attempt_number, hint if isinstance(hint, int | float) else None,
                               self.cap)


def retry_policy(*, max_attempts: int, retry_after_cap: float,
                 sleep: Callable[[float], Awaitable[None]],
                 on_retry: Callable[[BaseException, float], None]) -> AsyncRetrying:
    """An `AsyncRetrying` for one logical call (tenacity keeps per-call state: copy per call).

    `sleep` is the engine's stoppable sleep, so a run-stopping error elsewhere ends a
    backoff at once; `on_retry(exc, wait)` counts the retry by reason.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if exc is not None:
            on_retry(exc, wait)

    return AsyncRetrying(
        sleep=sleep,
        retry=retry_if_exception_type(RETRYABLE),
        stop=stop_after_attempt(max_attempts),
        wait=_Wait(retry_after_cap),
        before_sleep=before_sleep,
        reraise=True,
    )
