"""Anthropic Message Batches as a `clearapi.protocols.BatchSubmitter`, built by the adapter.

``messages.batches.create(requests=[{custom_id, params}])``, ``retrieve`` until
``processing_status == "ended"``, then ``results()``: a JSONL stream of ``succeeded`` /
``errored`` / ``canceled`` / ``expired`` results, in no particular order (joined by
custom_id). Each request's ``params`` are `AnthropicMessagesAdapter.batch_params` and each
succeeded message is read by its `batch_response`, so a batch answer equals the online one.

Only single-sample generate requests are batched: the Messages API has no ``n`` and no
logprobs, so anything else is served online, where the adapter handles (or refuses) it.

Per-batch limits: see docs/batch.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import anthropic
import orjson

from clearapi.adapters.anthropic_messages import AnthropicMessagesAdapter
from clearapi.adapters.errors import raise_translated
from clearapi.errors import AuthError, BadRequest
from clearapi.protocols import BatchPoll, LineResult
from clearapi.records import ChatRequest

__all__ = ["AnthropicBatchSubmitter"]

_PERMANENT = {"invalid_request_error": BadRequest, "not_found_error": BadRequest,
              "request_too_large": BadRequest, "authentication_error": AuthError,
              "permission_error": AuthError}


class AnthropicBatchSubmitter:
    provider = "anthropic"
    max_requests = 100_000
    max_bytes = 256_000_000

    def __init__(self, adapter: AnthropicMessagesAdapter, client: anthropic.AsyncAnthropic) -> None:
        self._adapter = adapter
        self._client = client  # the adapter's own: one HTTP stack, SDK retries off
        self._name = adapter.profile.name

    def accepts(self, request: ChatRequest) -> bool:
        return request.mode == "generate" and not request.logprobs and request.n == 1

    def entry(self, custom_id: str, request: ChatRequest) -> bytes:
        return orjson.dumps({"custom_id": custom_id, "params": self._adapter.batch_params(request)})

    async def submit(self, entries: Sequence[bytes]) -> tuple[str, str | None]:
        try:
            batch = await self._client.messages.batches.create(requests=[orjson.loads(e) for e in entries])
        except Exception as exc:
            self._raise(exc)
        return batch.id, None

    async def poll(self, batch_id: str) -> BatchPoll:
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except Exception as exc:
            self._raise(exc)
        counts = batch.request_counts
        return BatchPoll(status=batch.processing_status, done=batch.processing_status == "ended", detail={
            "succeeded": counts.succeeded, "errored": counts.errored, "expired": counts.expired,
            "canceled": counts.canceled, "processing": counts.processing})

    async def results(self, batch_id: str, poll: BatchPoll,
                      requests: Mapping[str, ChatRequest]) -> list[LineResult]:
        out: list[LineResult] = []
        try:
            decoder = await self._client.messages.batches.results(batch_id)
            async for item in decoder:
                request = requests.get(item.custom_id)
                if request is not None:
                    out.append(self._line(item.custom_id, request, item.result))
        except Exception as exc:
            self._raise(exc)
        return out

    async def aclose(self) -> None:
        return None  # the client belongs to the adapter

    def _line(self, cid: str, request: ChatRequest, result: Any) -> LineResult:
        kind = getattr(result, "type", None)
        if kind == "succeeded":
            return LineResult(cid, response=self._adapter.batch_response(request, result.message))
        if kind in ("expired", "canceled"):
            return LineResult(cid, retry="expired" if kind == "expired" else "cancelled")
        error = getattr(getattr(result, "error", None), "error", None)
        etype = str(getattr(error, "type", "") or "api_error")
        message = str(getattr(error, "message", "") or etype)[:500]
        permanent = _PERMANENT.get(etype)
        if permanent is not None:
            text = self._adapter.redact(f"{self._name}: batch request {etype} for model "
                                        f"{request.model or self._adapter.model!r}: {message}")
            return LineResult(cid, error=permanent(text))
        return LineResult(cid, retry=etype)

    def _raise(self, exc: Exception) -> NoReturn:
        raise_translated(exc, anthropic.AnthropicError, provider=self._name, map_error=self._adapter.map_error)
