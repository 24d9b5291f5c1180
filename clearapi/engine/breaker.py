"""The circuit breaker: stop a run whose server has stopped answering, instead of retrying every call.

Counted are failed attempts that say the server itself is down or broken: a refused or reset
connection, a timeout, a 5xx. Any answer that arrives (a success) ends the streak; a 429 or a
malformed body is an answer from a live server and neither counts nor ends it. The breaker
trips when the streak holds `attempts` failed attempts spread over at least `requests` different
requests: a dead server fails every request, while one row the server keeps refusing (its few
calls retried again and again) must fail that row only, not stop the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from clearapi.errors import TransientError

__all__ = ["CircuitBreaker", "counts_against_server"]


def counts_against_server(exc: TransientError) -> bool:
    """Whether a failed attempt says the server is down: no connection, no answer, or a 5xx."""
    reason = exc.reason or ""
    return reason in ("connection", "timeout") or (reason.isdigit() and int(reason) >= 500)


@dataclass
class CircuitBreaker:
    """``CircuitBreaker(attempts=20, requests=5)``; ``attempts=0`` turns it off."""

    attempts: int = 20
    requests: int = 5
    _failed: int = 0
    _keys: set[str] = field(default_factory=set)
    _last_success: float = field(default_factory=time.monotonic)
    _succeeded: bool = False

    def success(self) -> None:
        self._failed = 0
        self._keys.clear()
        self._last_success = time.monotonic()
        self._succeeded = True

    def failure(self, key: str) -> bool:
        """Count one failed attempt of request `key`; True when the breaker trips."""
        self._failed += 1
        if len(self._keys) < self.requests:
            self._keys.add(key)
        return bool(self.attempts) and self._failed >= self.attempts and len(self._keys) >= self.requests

    @property
    def failed(self) -> int:
        """Failed attempts in the current streak."""
        return self._failed

    def since(self) -> str:
        """How long nothing has succeeded, for the stop message."""
        quiet = time.monotonic() - self._last_success
        if not self._succeeded:
            return f"none has succeeded since the engine started {quiet:.1f}s ago"
        return f"none has succeeded in the last {quiet:.1f}s"
