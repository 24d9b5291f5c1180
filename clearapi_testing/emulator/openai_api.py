"""OpenAI Chat Completions and Models, shaped as the official ``openai`` SDK parses them.

Reference: the SDK's own types (``openai/types/chat/chat_completion.py``,
``chat_completion_token_logprob.py``, ``completion_usage.py``). Validation mirrors the real
service's 400s for the parameters clearapi uses, so a client bug fails here as it would there.
"""

from __future__ import annotations

from typing import Any

from clearapi_testing.emulator.responder import Completion, ResponderRequest, prompt_tokens
from clearapi_testing.emulator.router import Cost, Router
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.wire import ApiError, Request, Response, json_response

__all__ = ["install", "message_text", "parse_chat_request"]

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def install(router: Router, state: State) -> None:
    router.add("POST", "/v1/chat/completions", chat_completions, provider="openai", cost=chat_cost)
    router.add("GET", "/v1/models", list_models, provider="auto")
    router.add("GET", "/v1/models/{model}", get_model, provider="auto")


def message_text(content: Any, param: str) -> str:
    """A message's content reduced to text (string, or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out: list[str] = []
        for part in content:
            if not isinstance(part, dict) or "type" not in part:
                raise ApiError(400, f"Invalid content part in '{param}'.", param=param)
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise ApiError(400, f"Missing text in '{param}'.", param=param)
                out.append(text)
        return "\n".join(out)
    raise ApiError(400, f"Invalid type for '{param}': expected a string or an array of parts.", param=param)


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Invalid type for '{name}': expected an integer.", param=name,
                       code="invalid_type")
    if not lo <= value <= hi:
        raise ApiError(400, f"Invalid '{name}': {value} is not within [{lo}, {hi}].", param=name,
                       code="integer_out_of_range" if name != "n" else "invalid_value")
    return value


def parse_chat_request(state: State, request: Request) -> ResponderRequest:
    """Validate a chat.completions body (cached on the request) or raise a 400 `ApiError`."""
    cached = request.memo.get("openai_chat")
    if isinstance(cached, ResponderRequest):
        return cached
    body = request.json_object()
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if body.get("stream"):
        raise ApiError(400, "stream=true is not supported by the clearapi emulator; send stream=false.",
                       param="stream", code="unsupported_value")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Invalid 'messages': expected a non-empty array.", param="messages",
                       code="empty_array" if isinstance(messages, list) else "invalid_type")
    pairs: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise ApiError(400, f"Invalid value for 'messages[{i}].role'.", param=f"messages[{i}].role",
                           code="invalid_value")
        pairs.append((str(msg["role"]), message_text(msg.get("content"), f"messages[{i}].content")))
    n = _int(body, "n", 1, 128) or 1
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ApiError(400, "Invalid type for 'logprobs': expected a boolean.", param="logprobs")
    top = _int(body, "top_logprobs", 0, 20)
    if top is not None and not logprobs:
        raise ApiError(400, "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                       "'top_logprobs' is used.", param="top_logprobs", code="invalid_value")
    max_tokens = _int(body, "max_completion_tokens", 1, 1 << 20)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, 1 << 20)
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise ApiError(400, "Invalid 'temperature': expected a number within [0, 2].", param="temperature",
                       code="decimal_out_of_range")
    stop = body.get("stop")
    stops: tuple[str, ...]
    if stop is None:
        stops = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise ApiError(400, "Invalid 'stop': expected a string or up to 4 strings.", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, "Invalid type for 'seed': expected an integer.", param="seed")
    parsed = ResponderRequest(
        provider="openai", model=model, messages=tuple(pairs), n=n, max_tokens=max_tokens,
        temperature=float(temperature), seed=seed, logprobs=bool(logprobs), top_logprobs=top or 0,
        stop=stops, body=body)
    used = prompt_tokens(parsed.messages)
    window = state.config.context_window
    if used + (max_tokens or 0) > window:
        raise ApiError(400, f"This model's maximum context length is {window} tokens. However, you requested "
                       f"{used + (max_tokens or 0)} tokens ({used} in the messages, {max_tokens or 0} in the "
                       "completion). Please reduce the length of the messages or completion.",
                       param="messages", code="context_length_exceeded")
    request.memo["openai_chat"] = parsed
    request.memo["prompt_tokens"] = used
    return parsed


def chat_cost(state: State, request: Request) -> Cost:
    """Prompt tokens + max_tokens x n, as OpenAI charges a request against TPM."""
    req = parse_chat_request(state, request)
    completion = (req.max_tokens or state.config.default_max_tokens) * req.n
    return (1, int(request.memo["prompt_tokens"]) + completion)


def _logprob_entry(text: str, lp: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in top]}


def _choice(index: int, comp: Completion, req: ResponderRequest, returns_logprobs: bool) -> dict[str, Any]:
    logprobs = None
    if req.logprobs and returns_logprobs:
        logprobs = {"content": [_logprob_entry(t.text, t.logprob, t.top[: req.top_logprobs])
                                for t in comp.tokens], "refusal": None}
    return {"index": index, "finish_reason": comp.finish_reason, "logprobs": logprobs,
            "message": {"role": "assistant", "content": comp.text, "refusal": None, "annotations": []}}


async def chat_completions(state: State, request: Request) -> Response:
    req = parse_chat_request(state, request)
    comps = state.responder(req)
    if len(comps) != req.n:
        raise ApiError(500, f"responder returned {len(comps)} choices for n={req.n}", type="server_error")
    prompt = int(request.memo["prompt_tokens"])
    completion = sum(len(c.tokens) for c in comps)
    body = {
        "id": state.new_id("chatcmpl"),
        "object": "chat.completion",
        "created": state.now(),
        "model": req.model,
        "choices": [_choice(i, c, req, state.config.returns_logprobs) for i, c in enumerate(comps)],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_clearapi_emulator",
    }
    resp = json_response(body)
    resp.tokens = (prompt, completion)
    return resp


def _is_anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _model_obj(state: State, request: Request, model_id: str) -> dict[str, Any]:
    if _is_anthropic(request):
        return {"type": "model", "id": model_id, "display_name": model_id,
                "created_at": "2024-10-22T00:00:00Z"}
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "clearapi-emulator"}


async def list_models(state: State, request: Request) -> Response:
    data = [_model_obj(state, request, m) for m in state.config.models]
    if _is_anthropic(request):
        return json_response({"data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})
    return json_response({"object": "list", "data": data})


async def get_model(state: State, request: Request) -> Response:
    model_id = request.params["model"]
    if model_id not in state.config.models:
        raise ApiError(404, f"The model '{model_id}' does not exist or you do not have access to it.",
                       type="invalid_request_error" if not _is_anthropic(request) else "not_found_error",
                       param="model", code="model_not_found")
    return json_response(_model_obj(state, request, model_id))
