"""llama-cpp-python's own OpenAI-compatible server, run as a subprocess on 127.0.0.1.

Why: the emulator is ours, so it can only agree with our reading of the OpenAI API. A
real third-party server that speaks the same protocol, with its own quirks (it ignores
``n``; its logprobs come from a real model), keeps the OpenAI adapter honest. Used by
tests, by the cassette recorder and by ``bench/``.

Readiness is found by polling the TCP port against a deadline: the server offers no
other signal, and this runs only in test fixtures and tools, never in the library path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LlamaServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF file; a context manager.

    `base_url` is the OpenAI-style root (``http://127.0.0.1:PORT/v1``). The model is served
    under the alias `model_alias` so requests name it like a hosted model.
    """

    def __init__(self, model_path: str | os.PathLike[str], *, n_ctx: int = 2048,
                 model_alias: str = "smollm2-135m-instruct", startup_timeout: float = 120.0,
                 extra_args: list[str] | None = None) -> None:
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.model_alias = model_alias
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        self.port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
               "--model_alias", self.model_alias, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--verbose", "False", *self.extra_args]
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log")  # noqa: SIM115
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"llama_cpp.server exited with {self._proc.returncode}:\n{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return self
            if time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"llama_cpp.server not listening after {self.startup_timeout}s:\n{log}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_bytes()[-chars:].decode("utf-8", errors="replace")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
