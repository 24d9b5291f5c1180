"""The adapter protocol: one module per wire protocol implements it.

An adapter is the only place that knows an SDK. It turns a `ChatRequest` into one (or a
few, to paper over a server's quirks) SDK calls, the SDK's answer into a `ChatResponse`,
and every SDK exception into clearapi's tree (`clearapi.errors`). It never retries: the
engine owns retries, so counters and rate limits stay true (SDK `max_retries=0`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from clearapi.records import Capabilities, ChatRequest, ChatResponse

__all__ = ["Adapter"]


@runtime_checkable
class Adapter(Protocol):
    """Three methods. Implementations must be safe to call concurrently from one loop."""

    @property
    def capabilities(self) -> Capabilities:
        """What this provider/model can do, after anything learned from its answers."""
        ...

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One logical call. Raises only `clearapi.errors` exceptions."""
        ...

    async def aclose(self) -> None:
        """Release the SDK client / model. Idempotent."""
        ...
