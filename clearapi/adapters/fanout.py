"""Run a few calls of one logical request at once, failing like a single call would.

An adapter sometimes needs several HTTP calls for one `ChatRequest` (``n`` samples from a
server without ``n``). They run concurrently in a `TaskGroup`, so the first failure cancels
the rest and nothing is left running. A TaskGroup raises an `ExceptionGroup`, which the
engine's retry policy cannot classify; this unwraps it to the one error that decides what
happens next: among the failures that arrived before the rest were cancelled, a fatal one if
there is one (retrying cannot help), else the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from clearapi.errors import ClearAPIError, FatalError

__all__ = ["gather_calls"]

T = TypeVar("T")


async def gather_calls(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Results in order; on failure, the most decisive single exception, the others cancelled."""
    if len(calls) == 1:
        return [await calls[0]]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_run(call)) for call in calls]
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        fatal = next((e for e in errors if isinstance(e, FatalError)), None)
        first = fatal or next((e for e in errors if isinstance(e, ClearAPIError)), None) or errors[0]
        raise first from None
    return [t.result() for t in tasks]


async def _run(call: Awaitable[T]) -> T:
    return await call


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out
