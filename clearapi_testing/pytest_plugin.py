"""pytest fixtures for clearapi's and its users' tests: a loopback API emulator per test.

Enable with ``pytest_plugins = ["clearapi_testing.pytest_plugin"]`` in a ``conftest.py``.

- ``emulator``: a started `EmulatorThread` with the default config (no limits, no faults, no key).
- ``emulator_factory(config=None, *, responder=None, extensions=(), clock=..., **fields)``: start one
  with any `EmulatorConfig` fields (``emulator_factory(rpm=60, fault_rate=0.1)``).

Both run the server on its own event loop in a thread, so they serve sync tests and async tests
alike (the test's loop stays free for the client under test), and stop at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clearapi_testing.emulator import EmulatorThread

__all__ = ["emulator", "emulator_factory"]


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorThread]]:
    started: list[EmulatorThread] = []

    def make(*args: Any, **kwargs: Any) -> EmulatorThread:
        emu = EmulatorThread(*args, **kwargs).start()
        started.append(emu)
        return emu

    try:
        yield make
    finally:
        for emu in reversed(started):
            emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorThread]) -> EmulatorThread:
    return emulator_factory()
