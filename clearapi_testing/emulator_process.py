"""The emulator as a child process, for benchmarks that need it out of their own event loop.

Why a process: a benchmark measures the client; an emulator in the same interpreter would share
its CPU and its event loop with what is being measured. The child prints its address on its first
line, so readiness needs no polling.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["emulator_process"]

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def emulator_process(*args: str, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m clearapi_testing.emulator --port 0 ARGS`` and yield its root URL (no ``/v1``)."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "clearapi_testing.emulator", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip().rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
