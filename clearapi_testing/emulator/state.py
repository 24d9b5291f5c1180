"""The shared state every handler receives as ``ctx``.

One object, so extensions (Files, fine-tuning jobs, Batches) need no globals: settings, counters,
a seeded RNG, an in-memory store, deterministic ids, a clock, background tasks that die with the
server, and an event that fires at shutdown (for anything that waits).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from clearapi_testing.emulator.config import EmulatorConfig
from clearapi_testing.emulator.limits import Clock
from clearapi_testing.emulator.stats import Stats

if TYPE_CHECKING:
    from clearapi_testing.emulator.responder import Responder

__all__ = ["State"]


class State:
    """Handlers' context. Touch it only from the emulator's event loop."""

    def __init__(self, config: EmulatorConfig, responder: Responder, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.responder = responder
        self.stats = Stats()
        #: seeded by `config.seed`; for handlers that need randomness (ids use their own counter)
        self.rng = random.Random(f"{config.seed}:handlers")
        #: free-form in-memory store shared by all handlers, e.g. ``ctx.store.setdefault("files", {})``
        self.store: dict[str, Any] = {}
        #: monotonic clock (fake-able in tests); use `now()` for wall-clock timestamps
        self.clock = clock
        self.stopping = asyncio.Event()
        self._ids: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def new_id(self, prefix: str) -> str:
        """A deterministic, unique id: ``new_id("file")`` -> ``file-0001a3f09c2b7e4d5c6b``,
        ``new_id("batch_")`` -> ``batch_0001...`` (a prefix ending in ``_`` or ``-`` is kept as is).
        Same seed, same ids."""
        n = self._ids.get(prefix, 0) + 1
        self._ids[prefix] = n
        mixed = (n * 0x9E3779B97F4A7C15 + self.config.seed) & ((1 << 64) - 1)
        sep = "" if prefix.endswith(("_", "-")) else "-"
        return f"{prefix}{sep}{n:04x}{mixed:016x}"

    @staticmethod
    def now() -> int:
        """Wall-clock Unix seconds, as the APIs' ``created``/``created_at`` fields use."""
        return int(time.time())

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task that is cancelled when the emulator stops (e.g. a batch progressing)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_background(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
