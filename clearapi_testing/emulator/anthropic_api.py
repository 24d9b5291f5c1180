"""Anthropic Messages, shaped as the official ``anthropic`` SDK parses them.

Reference: the SDK's types (``anthropic/types/message.py``, ``usage.py``, ``stop_reason.py``).
The Messages API has no ``n`` and no logprobs: one text block per answer. Validation follows the
real API for what clearapi sends (``max_tokens`` required, temperature within [0, 1], no
``system`` role inside ``messages``), so an adapter bug fails here as it would there.
"""

from __future__ import annotations

from typing import Any

from clearapi_testing.emulator.openai_api import message_text
from clearapi_testing.emulator.responder import ResponderRequest, count_tokens
from clearapi_testing.emulator.router import Cost, Router
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.wire import ApiError, Request, Response, json_response

__all__ = ["install", "parse_messages_request"]


def install(router: Router, state: State) -> None:
    router.add("POST", "/v1/messages", messages, provider="anthropic", cost=messages_cost)
    router.add("POST", "/v1/messages/count_tokens", count_message_tokens, provider="anthropic")


def _bad(message: str) -> ApiError:
    return ApiError(400, message, type="invalid_request_error")


def _input_tokens(pairs: tuple[tuple[str, str], ...]) -> int:
    return sum(count_tokens(text) + 3 for _, text in pairs) + 1


def parse_messages_request(state: State, request: Request, *, need_max_tokens: bool = True) -> ResponderRequest:
    cached = request.memo.get("anthropic_messages")
    if isinstance(cached, ResponderRequest):
        return cached
    body = request.json_object()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required")
    if body.get("stream"):
        raise _bad("stream: true is not supported by the clearapi emulator; send stream: false")
    max_tokens = body.get("max_tokens")
    if need_max_tokens and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise _bad("max_tokens: Field required (an integer >= 1)")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _bad("messages: at least one message is required")
    pairs: list[tuple[str, str]] = []
    system = body.get("system")
    if system is not None:
        pairs.append(("system", message_text(system, "system")))
    for i, msg in enumerate(msgs):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant"):
            raise _bad(f'messages.{i}.role: Unexpected role "{role}". The Messages API accepts a top-level '
                       "`system` parameter, not \"system\" as an input message role.")
        pairs.append((str(role), message_text(msg.get("content"), f"messages.{i}.content")))
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise _bad("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop_sequences: Input should be a valid list of strings")
    parsed = ResponderRequest(
        provider="anthropic", model=model, messages=tuple(pairs), n=1,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        temperature=float(temperature), stop=tuple(stops), body=body)
    used = _input_tokens(parsed.messages)
    window = state.config.context_window
    if used + (parsed.max_tokens or 0) > window:
        raise _bad(f"prompt is too long: {used + (parsed.max_tokens or 0)} tokens > {window} maximum")
    request.memo["anthropic_messages"] = parsed
    request.memo["input_tokens"] = used
    return parsed


def messages_cost(state: State, request: Request) -> Cost:
    req = parse_messages_request(state, request)
    return (1, int(request.memo["input_tokens"]) + (req.max_tokens or state.config.default_max_tokens))


async def messages(state: State, request: Request) -> Response:
    req = parse_messages_request(state, request)
    comp = state.responder(req)[0]
    if comp.stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif comp.finish_reason == "length":
        stop_reason = "max_tokens"
    else:
        stop_reason = "end_turn"
    input_tokens = int(request.memo["input_tokens"])
    output_tokens = len(comp.tokens)
    body: dict[str, Any] = {
        "id": state.new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [{"type": "text", "text": comp.text, "citations": None}],
        "stop_reason": stop_reason,
        "stop_sequence": comp.stop_sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "service_tier": "standard"},
    }
    resp = json_response(body)
    resp.tokens = (input_tokens, output_tokens)
    return resp


async def count_message_tokens(state: State, request: Request) -> Response:
    parse_messages_request(state, request, need_max_tokens=False)
    return json_response({"input_tokens": int(request.memo["input_tokens"])})
