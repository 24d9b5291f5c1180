"""An asyncio event loop on a virtual clock, for testing timing logic without waiting.

When the loop has nothing ready to run, real asyncio would block in ``select`` until the
next timer; this loop instead jumps its clock to that timer. ``asyncio.sleep(3600)``
returns at once with ``loop.time()`` an hour later, and the order of events is exactly
the one real time would give. Real I/O still works: ready sockets (and the self-pipe that
thread pools use to report back) are polled without moving the clock, and when no timer
is pending the loop blocks on I/O as usual.

Use ``run_virtual(main())`` from a synchronous test. Only the clock is fake: everything
built on ``loop.time()`` / ``call_at`` (sleeps, timeouts, limiters, tenacity) runs for real.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run_virtual"]

T = TypeVar("T")


class _JumpingSelector:
    """Wraps the loop's selector: a timed wait with no I/O ready moves the clock instead."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return self._inner.select(None)
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self._virtual_now = start
        self._selector: Any = _JumpingSelector(self._selector, self)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(0.0, seconds)


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 1000.0) -> T:
    """Run `main` to completion on a fresh virtual-clock loop and close it."""
    loop = VirtualClockLoop(start)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
