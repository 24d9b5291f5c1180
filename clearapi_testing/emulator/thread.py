"""`EmulatorThread`: the emulator on its own event loop in a daemon thread.

Why: a sync test, or an async test whose loop must stay free (the client under test runs there),
needs a server that does not share its loop. Calls from the test's thread (`stats`, `reset`,
`configure`) are marshalled onto the emulator's loop, so counters are never read mid-update.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from clearapi_testing.emulator.app import Extension
from clearapi_testing.emulator.config import EmulatorConfig
from clearapi_testing.emulator.limits import Clock
from clearapi_testing.emulator.responder import Responder
from clearapi_testing.emulator.server import Emulator
from clearapi_testing.emulator.stats import StatsSnapshot

__all__ = ["EmulatorThread"]

T = TypeVar("T")


class EmulatorThread:
    """``with EmulatorThread(EmulatorConfig(rpm=60)) as emu: ... emu.base_url ...``."""

    def __init__(self, config: EmulatorConfig | None = None, *, responder: Responder | None = None,
                 extensions: Iterable[Extension] = (), clock: Clock = time.monotonic,
                 **overrides: Any) -> None:
        self._args = (config, responder, list(extensions), clock, overrides)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emu: Emulator | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def emulator(self) -> Emulator:
        if self._emu is None:
            raise RuntimeError("the emulator thread is not started")
        return self._emu

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def config(self) -> EmulatorConfig:
        return self.emulator.config

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="clearapi-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError(f"emulator failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[Emulator], T]) -> T:
        """Run `fn(emulator)` on the emulator's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator thread is not started")
        emu = self.emulator

        async def run() -> T:
            return fn(emu)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    def stats(self) -> StatsSnapshot:
        return self.call(lambda e: e.stats())

    def reset(self) -> None:
        self.call(lambda e: e.reset())

    def configure(self, **changes: Any) -> EmulatorConfig:
        return self.call(lambda e: e.configure(**changes))

    def wait_requests(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` API requests have arrived since start or the last reset."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the emulator thread is not started")
        asyncio.run_coroutine_threadsafe(self.emulator.wait_requests(count), loop).result(timeout=timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        config, responder, extensions, clock, overrides = self._args
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emu = Emulator(config, responder=responder, extensions=extensions, clock=clock, **overrides)
        await emu.start()
        self._emu = emu
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await emu.stop()
