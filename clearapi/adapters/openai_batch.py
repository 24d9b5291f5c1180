"""The OpenAI Batch API as a `clearapi.protocols.BatchSubmitter`, built by `OpenAIChatAdapter.batch_submitter`.

A batch is a JSONL file of ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}`` lines uploaded with ``purpose="batch"``, then ``batches.create(completion_window=
"24h")``, ``batches.retrieve`` until the status is terminal, and the output / error files.

Why it sits on top of `OpenAIChatAdapter`: the body of each line is the adapter's
`batch_body` and each output line's ``response.body`` is read by its `batch_response`, so an
answer served by a batch is the same `ChatResponse` the online call would have produced
(and caches under the same key). The SDK client is the adapter's (one HTTP stack, one
connection pool, SDK retries off), and SDK exceptions go through the adapter's `map_error`.

Per-batch limits: see docs/batch.md (200 MB is read as 200 x 10^6 bytes, the safe side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

import openai
import orjson

from clearapi.adapters.errors import raise_translated
from clearapi.adapters.openai_chat import OpenAIChatAdapter, loads_lenient
from clearapi.errors import AuthError, BadRequest, TransientError
from clearapi.protocols import BatchPoll, LineResult
from clearapi.records import ChatRequest

__all__ = ["OpenAIBatchSubmitter"]

ENDPOINT: Final = "/v1/chat/completions"
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class OpenAIBatchSubmitter:
    provider = "openai"
    max_requests = 50_000
    max_bytes = 200_000_000

    def __init__(self, adapter: OpenAIChatAdapter, client: openai.AsyncOpenAI) -> None:
        self._adapter = adapter
        self._client = client  # the adapter's own: one HTTP stack, SDK retries off
        self._name = adapter.profile.name

    # -- building lines -----------------------------------------------------------------
    def accepts(self, request: ChatRequest) -> bool:
        if request.mode != "generate":
            return False
        caps = self._adapter.capabilities_for(request.model or self._adapter.model)
        if request.logprobs and not caps.logprobs:
            return False  # online, where the adapter raises its CapabilityError
        return request.n == 1 or (caps.n and request.n <= caps.max_n)

    def entry(self, custom_id: str, request: ChatRequest) -> bytes:
        return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                             "body": self._adapter.batch_body(request)})

    # -- the job ------------------------------------------------------------------------
    async def submit(self, entries: Sequence[bytes]) -> tuple[str, str | None]:
        data = b"\n".join(entries) + b"\n"
        try:
            upload = await self._client.files.create(file=("clearapi-batch.jsonl", data, "application/jsonl"),
                                                     purpose="batch")
            batch = await self._client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT,
                                                      completion_window="24h",
                                                      metadata={"created_by": "clearapi"})
        except Exception as exc:
            self._raise(exc)
        return batch.id, upload.id

    async def poll(self, batch_id: str) -> BatchPoll:
        try:
            batch = await self._client.batches.retrieve(batch_id)
        except Exception as exc:
            self._raise(exc)
        counts = batch.request_counts
        return BatchPoll(status=batch.status, done=batch.status in _TERMINAL, detail={
            "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
            "total": counts.total if counts else None, "completed": counts.completed if counts else None,
            "failed": counts.failed if counts else None,
            "errors": [e.message for e in (batch.errors.data or [])] if batch.errors else [],
        })

    async def results(self, batch_id: str, poll: BatchPoll,
                      requests: Mapping[str, ChatRequest]) -> list[LineResult]:
        out: list[LineResult] = []
        for name in ("output_file_id", "error_file_id"):
            file_id = poll.detail.get(name)
            if not isinstance(file_id, str) or not file_id:
                continue
            try:
                content = await self._client.files.content(file_id)
                data = content.content
            except Exception as exc:
                self._raise(exc)
            for raw in data.splitlines():
                if raw.strip():
                    line = self._line(raw, requests)
                    if line is not None:
                        out.append(line)
        if poll.status == "failed" and not out:  # rejected as a whole (validation): every line again
            out = [LineResult(cid, retry="batch_failed") for cid in requests]
        return out

    async def aclose(self) -> None:
        return None  # the client belongs to the adapter

    # -- reading lines ------------------------------------------------------------------
    def _line(self, raw: bytes, requests: Mapping[str, ChatRequest]) -> LineResult | None:
        try:
            obj = loads_lenient(raw)
        except ValueError:  # orjson's and json's decode errors both are
            return None
        if not isinstance(obj, dict):
            return None
        cid = obj.get("custom_id")
        request = requests.get(cid) if isinstance(cid, str) else None
        if request is None or not isinstance(cid, str):
            return None
        response: dict[str, Any] = obj["response"] if isinstance(obj.get("response"), dict) else {}
        error: dict[str, Any] = obj["error"] if isinstance(obj.get("error"), dict) else {}
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                return LineResult(cid, response=self._adapter.batch_response(request, body))
            except TransientError as exc:
                return LineResult(cid, retry=exc.reason or "malformed")
        code = str(error.get("code") or "")
        if code in ("batch_expired", "batch_cancelled"):
            return LineResult(cid, retry=code.removeprefix("batch_"))
        message = _error_message(body) or str(error.get("message") or code or "error")
        text = self._adapter.redact(f"{self._name}: batch line HTTP {status} for model "
                                    f"{request.model or self._adapter.model!r}: {message}")
        if status in (400, 404, 422):
            return LineResult(cid, error=BadRequest(text))
        if status in (401, 403):
            return LineResult(cid, error=AuthError(text))
        return LineResult(cid, retry=str(status) if status else (code or "error"))

    def _raise(self, exc: Exception) -> NoReturn:
        raise_translated(exc, openai.OpenAIError, provider=self._name, map_error=self._adapter.map_error)


def _error_message(body: object) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if body.get("message"):
            return str(body["message"])[:500]
    return ""
