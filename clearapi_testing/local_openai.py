"""The local model behind an OpenAI chat-completions endpoint, in process (an httpx2 transport).

Why: cassettes must be recorded through the real openai SDK and our OpenAI adapter, so
they replay exactly as a hosted exchange would, yet the local model has no HTTP server of
its own. Handing ``httpx2.AsyncClient(transport=LocalOpenAITransport(adapter))`` to the SDK
gives it one without a socket. Unlike llama-cpp-python's server it honours ``n`` and
``seed`` per sample, since it speaks through `LocalLlamaAdapter`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx2
import orjson
from pydantic import ValidationError

from clearapi.adapters.local_llama import LocalLlamaAdapter
from clearapi.errors import BadRequest, ClearAPIError
from clearapi.records import ChatRequest, ChatResponse, Message, TokenLogprob

__all__ = ["LocalOpenAITransport", "chat_request_from_openai", "openai_body_from_response"]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    raise ValueError("message content must be a string or a list of parts")


def chat_request_from_openai(body: dict[str, Any]) -> ChatRequest:
    """An OpenAI chat-completions body as a `ChatRequest` (OpenAI's defaults where absent)."""
    stop = body.get("stop")
    return ChatRequest(
        messages=[Message(role=m["role"], content=_text(m.get("content"))) for m in body["messages"]],
        model=body.get("model"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 512,
        temperature=body.get("temperature", 1.0),
        top_p=body.get("top_p"),
        n=body.get("n") or 1,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=body.get("top_logprobs") or 0,
        seed=body.get("seed"),
        stop=[stop] if isinstance(stop, str) else stop,
    )


def _logprob_entry(t: TokenLogprob) -> dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": list(t.token.encode("utf-8")),
        "top_logprobs": [{"token": a.token, "logprob": a.logprob, "bytes": list(a.token.encode("utf-8"))}
                         for a in t.top],
    }


def openai_body_from_response(response: ChatResponse, request: ChatRequest, model: str) -> dict[str, Any]:
    """A `ChatResponse` in the wire shape of an OpenAI ``chat.completion``."""
    choices = []
    for i, c in enumerate(response.choices):
        logprobs = None
        if request.logprobs and c.logprobs is not None:
            logprobs = {"content": [_logprob_entry(t) for t in c.logprobs], "refusal": None}
        choices.append({"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
                        "logprobs": logprobs, "finish_reason": c.finish_reason or "stop"})
    digest = hashlib.blake2b(orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS),
                             digest_size=8).hexdigest()
    return {
        "id": f"chatcmpl-local-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "clearapi-local",
        "choices": choices,
        "usage": {"prompt_tokens": response.usage.prompt_tokens,
                  "completion_tokens": response.usage.completion_tokens,
                  "total_tokens": response.usage.total_tokens},
    }


def _error(status: int, message: str, kind: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"message": message, "type": kind, "param": None,
                                                   "code": None}})


class LocalOpenAITransport(httpx2.AsyncBaseTransport):
    """Answers ``POST …/chat/completions`` from a `LocalLlamaAdapter`; anything else is a 404."""

    def __init__(self, adapter: LocalLlamaAdapter) -> None:
        self._adapter = adapter

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"no route for {request.method} {request.url.path}", "not_found_error")
        try:
            body = orjson.loads(await request.aread())
            chat_request = chat_request_from_openai(body)
        except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError) as exc:
            return _error(400, f"invalid request: {exc}", "invalid_request_error")
        try:
            response = await self._adapter.chat(chat_request)
        except BadRequest as exc:
            return _error(400, exc.message, "invalid_request_error")
        except ClearAPIError as exc:
            return _error(500, exc.message, "server_error")
        model = str(body.get("model") or response.model)
        return httpx2.Response(200, json=openai_body_from_response(response, chat_request, model))

    async def aclose(self) -> None:
        await self._adapter.aclose()
