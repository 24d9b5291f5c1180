"""What the engine asks of an adapter: the `Adapter` protocol and its optional batch capability.

One module per wire protocol (`clearapi.adapters`) implements these; the engine sees only
this module, so dependencies point one way (records/errors ◄ protocols ◄ adapters, engine).

An adapter is the only place that knows an SDK. It turns a `ChatRequest` into one (or a
few, to paper over a server's quirks) SDK calls, the SDK's answer into a `ChatResponse`,
and every SDK exception into clearapi's tree (`clearapi.errors`). It never retries: the
engine owns retries, so counters and rate limits stay true (SDK `max_retries=0`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from clearapi.errors import ClearAPIError
from clearapi.records import Capabilities, ChatRequest, ChatResponse

__all__ = ["Adapter", "BatchCapable", "BatchPoll", "BatchSubmitter", "LineResult"]


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


# --- the batch capability ---------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPoll:
    """One look at a batch: `done` once results can be read (whatever the outcome)."""

    status: str
    done: bool
    detail: dict[str, object] = field(default_factory=dict)


@dataclass
class LineResult:
    """One request's outcome: an answer, a permanent error, or a reason to retry."""

    custom_id: str
    response: ChatResponse | None = None
    error: ClearAPIError | None = None
    retry: str | None = None


class BatchSubmitter(Protocol):
    """One provider's batch API, over its adapter's SDK client and wire format."""

    provider: str
    max_requests: int
    max_bytes: int

    def accepts(self, request: ChatRequest) -> bool:
        """Can this request go into a batch (else it is served online)?"""
        ...

    def entry(self, custom_id: str, request: ChatRequest) -> bytes:
        """The request as one line of the batch (its size counts against `max_bytes`)."""
        ...

    async def submit(self, entries: Sequence[bytes]) -> tuple[str, str | None]:
        """Create a batch of these entries; (batch id, input file id or None)."""
        ...

    async def poll(self, batch_id: str) -> BatchPoll: ...

    async def results(self, batch_id: str, poll: BatchPoll,
                      requests: Mapping[str, ChatRequest]) -> list[LineResult]:
        """Every line the provider reports, decoded with the request that produced it."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class BatchCapable(Protocol):
    """An adapter whose service has a batch API builds its own submitter."""

    def batch_submitter(self) -> BatchSubmitter: ...
