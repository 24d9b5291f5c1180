"""The OpenAI chat-completions wire protocol: OpenAI itself and every compatible server.

Compatible servers differ in quiet ways, and the only trustworthy witness is the response
itself. This adapter watches each answer and remembers, per model, what it learned:

* ``n`` ignored (fewer choices than asked, llama-cpp-python's server does this): the
  missing samples come from separate calls, with ``seed + k`` so they differ, and later
  calls go straight to separate calls.
* ``top_logprobs`` lists shorter than asked (many servers cut some tokens' lists): taken as
  they come, noted, never a lower cap for later calls, so scores do not depend on the order
  in which answers arrive.
* logprobs asked for and not returned: that answer has none, noted. Nothing is learned from
  it (which answer arrives first would then decide what later rows are asked); whether a
  server returns logprobs at all is the method's question, settled on the run's first rows
  before any row is scored (`clearapi.clear.probe`). Only a 400 that refuses logprobs is a
  `CapabilityError`.
* sentinels for "not in the list" (OpenAI's -9999, ``-inf``, anything below -1000)
  become ``None``: a sentinel is not a probability.

Each workaround is written into `ChatResponse.notes` so a report can say what happened.
Model knowledge (which models want ``max_completion_tokens`` or refuse logprobs) is
profile data (``[models."o*"]``), not code here.

This module is also the one place where the openai SDK's exceptions become clearapi's
(what a status means to both protocols alike is decided in `clearapi.adapters.errors`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx2
import openai
import orjson

from clearapi.adapters.errors import (
    BELOW_SDK,
    HTTPFailure,
    SdkErrors,
    below_sdk_error,
    map_status,
    transport_error,
)
from clearapi.adapters.fanout import gather_calls
from clearapi.adapters.hosted import NO_KEY, HostedAdapter, pool_limits
from clearapi.adapters.ratelimit_headers import parse_ratelimit
from clearapi.errors import (
    CapabilityError,
    ClearAPIError,
    QuotaExhausted,
    TransientError,
)
from clearapi.profiles import Profile
from clearapi.protocols import BatchSubmitter
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    RateLimitInfo,
    TokenLogprob,
    TopLogprob,
    Usage,
)

__all__ = ["SENTINEL_FLOOR", "OpenAIChatAdapter", "convert_logprob", "loads_lenient"]

#: Log-probabilities below this are "not in the list" sentinels, not probabilities
#: (e^-1000 is far below anything a float32 softmax can represent).
SENTINEL_FLOOR = -1000.0
_SDK_ERRORS = SdkErrors(timeout=openai.APITimeoutError, connection=openai.APIConnectionError,
                        malformed=openai.APIResponseValidationError)


@dataclass
class _Learned:
    """What a model's answers revealed about the server (per adapter, per model)."""

    n_ignored: bool = False
    top_logprobs_cap: int | None = None
    #: a 400 refused them (an answer that merely lacks them teaches nothing)
    logprobs_missing: bool = False
    prompt_logprobs_missing: bool = False


@dataclass
class _Call:
    #: the answer's JSON as it came: a dict with a non-empty ``choices`` list
    body: dict[str, Any]
    headers: httpx2.Headers


class _Malformed(ValueError):
    """An answer whose JSON is not a chat completion a reader can use."""


def convert_logprob(value: object) -> tuple[float | None, bool]:
    """A server's logprob as a float, or None if it is a sentinel; second item: was it one.

    Tiny positive values (float noise around 0) become 0.0; NaN and anything above that
    cannot be a log-probability and count as unknown too.
    """
    try:
        v = float(value)  # type: ignore[arg-type]  # numpy scalars, strings of numbers
    except (TypeError, ValueError):
        return None, True
    if math.isnan(v) or v < SENTINEL_FLOOR or v > 1e-3:
        return None, True
    return min(v, 0.0), False


class OpenAIChatAdapter(HostedAdapter[openai.AsyncOpenAI]):
    """`Adapter` over ``openai.AsyncOpenAI``: one client per adapter, reused, SDK retries off."""

    def __init__(self, profile: Profile, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, timeout: float = 120.0, max_concurrency: int = 16,
                 http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(profile, model=model, base_url=base_url, api_key=api_key)
        if http_client is None:
            http_client = openai.DefaultAsyncHttpxClient(timeout=timeout, limits=pool_limits(max_concurrency))
        # An explicit key always: otherwise the SDK would read OPENAI_API_KEY from the
        # environment and send the user's OpenAI key to whatever server base_url names.
        self._client = openai.AsyncOpenAI(api_key=api_key or NO_KEY, base_url=self._base_url, timeout=timeout,
                                          max_retries=0, http_client=http_client)
        self._learned: dict[str, _Learned] = {}

    # -- Adapter protocol --------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self.capabilities_for(self._model)

    def capabilities_for(self, model: str) -> Capabilities:
        """The profile's view of `model`, narrowed by what its answers have shown."""
        caps = self._profile.capabilities_for(model)
        learned = self._learned.get(model)
        if learned is None:
            return caps
        if learned.n_ignored:
            caps.n, caps.max_n = False, 1
        if learned.logprobs_missing:
            caps.logprobs, caps.max_top_logprobs = False, 0
        if learned.top_logprobs_cap is not None:
            caps.max_top_logprobs = min(caps.max_top_logprobs, learned.top_logprobs_cap)
        if learned.prompt_logprobs_missing:
            caps.score_given_text = False
        return caps

    async def chat(self, request: ChatRequest) -> ChatResponse:
        model = request.model or self._model
        caps = self.capabilities_for(model)
        if request.mode == "score":
            return await self._score(request, model, caps)
        notes: list[str] = []
        if request.logprobs and not caps.logprobs:
            raise CapabilityError(self._no_logprobs_message(model))
        params = self._params(request, model, caps, notes)
        choices, usage, calls, ratelimit = await self._sample(request, model, caps, params, notes)
        return ChatResponse(choices=choices, usage=usage, model=model, provider=self._profile.name,
                            calls=calls, notes=notes, ratelimit=ratelimit)

    # -- building the request ----------------------------------------------------------

    def _learn(self, model: str) -> _Learned:
        return self._learned.setdefault(model, _Learned())

    def _no_logprobs_message(self, model: str) -> str:
        learned = self._learned.get(model)
        why = ("the server refused them earlier" if learned and learned.logprobs_missing
               else f"profile {self._profile.name!r} says so")
        return (f"{self._profile.name}: model {model!r} does not return token logprobs ({why}); "
                "choose a model/provider with logprobs, or let the method fall back to sampled ratings")

    def _params(self, request: ChatRequest, model: str, caps: Capabilities, notes: list[str]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(m) for m in request.messages],
        }
        token_param = str(self._profile.setting_for(model, "max_tokens_param"))
        params[token_param] = request.max_tokens
        if self._profile.setting_for(model, "sampling_params"):
            params["temperature"] = request.temperature
            if request.top_p is not None:
                params["top_p"] = request.top_p
        else:
            notes.append(f"temperature/top_p not accepted by {model}; the model's fixed sampling was used")
        if request.seed is not None:
            if caps.seed:
                params["seed"] = request.seed
            else:
                notes.append("seed not supported; omitted")
        if request.stop:
            params["stop"] = list(request.stop)
        if request.logprobs:
            params["logprobs"] = True
            top = request.top_logprobs
            if top > caps.max_top_logprobs:
                notes.append(f"top_logprobs clamped from {top} to {caps.max_top_logprobs} "
                             f"(the most {self._profile.name} returns for {model})")
                top = caps.max_top_logprobs
            if top > 0:
                params["top_logprobs"] = top
        return params

    # -- sampling n choices ------------------------------------------------------------

    async def _sample(self, request: ChatRequest, model: str, caps: Capabilities, params: dict[str, Any],
                      notes: list[str]) -> tuple[list[Choice], Usage, int, RateLimitInfo | None]:
        want = request.n
        seed = params.get("seed")
        per_call = min(want, caps.max_n) if caps.n else 1
        if want > 1 and not caps.n:
            notes.append(f"n not supported: {want} separate calls")
        results: list[_Call] = []
        offset = 0

        async def batch(sizes: list[int]) -> list[_Call]:
            nonlocal offset
            jobs = []
            for size in sizes:
                p = dict(params, n=size) if size > 1 else {k: v for k, v in params.items() if k != "n"}
                if seed is not None:
                    p["seed"] = seed + offset
                offset += 1
                jobs.append(p)
            return await gather_calls([self._call(p) for p in jobs])

        first_sizes = [per_call] if caps.n else [1] * want
        got = await batch(first_sizes)
        results += got
        count = sum(len(c.body["choices"]) for c in got)
        if caps.n and per_call > 1 and count < per_call:
            self._learn(model).n_ignored = True
            per_call = 1
            extra = want - count
            notes.append(f"n ignored by server ({count} of {want} choices): {extra} extra calls")
        while count < want:
            remaining = want - count
            sizes = [min(per_call, remaining - i) for i in range(0, remaining, per_call)]
            got = await batch(sizes)
            results += got
            new = sum(len(c.body["choices"]) for c in got)
            if new == 0:  # pragma: no cover - _call rejects empty answers
                raise TransientError(f"{self._profile.name}: no choices returned", reason="malformed")
            count += new
        choices: list[Choice] = []
        usage = Usage()
        sent_top = int(params.get("top_logprobs", 0))
        for call in results:
            choices += self._choices(call.body, request, sent_top, notes)
            usage = usage + _usage(call.body, notes)
        ratelimit = parse_ratelimit(results[0].headers)
        return choices[:want], usage, len(results), ratelimit

    async def _call(self, params: dict[str, Any]) -> _Call:
        """One POST through the SDK's client (auth, headers, status errors), read as plain JSON.

        The typed ``chat.completions.create`` walks every request through the SDK's
        TypedDict transform and builds a model tree for every answer: about a fifth of a
        hosted row's CPU, for fields this adapter reads once. The params are already wire
        JSON, so they are posted as they are and the answer is read with orjson.
        """
        try:
            response = await self._client.post("/chat/completions", body=params, cast_to=httpx2.Response,
                                               options={"security": {"bearer_auth": True}})
            content = await response.aread()
        except openai.OpenAIError as exc:
            self._raise_mapped(exc, str(params.get("model")))
        except BELOW_SDK as exc:
            raise below_sdk_error(self._profile.name, exc) from exc
        try:
            body = _completion_body(loads_lenient(content))
        except ValueError as exc:  # undecodable JSON, or a `_Malformed` body
            raise TransientError(f"{self._profile.name}: malformed response body ({exc})",
                                 reason="malformed") from exc
        return _Call(body=body, headers=response.headers)

    # -- reading the answer ------------------------------------------------------------

    def _choices(self, body: dict[str, Any], request: ChatRequest, sent_top: int,
                 notes: list[str]) -> list[Choice]:
        out: list[Choice] = []
        try:
            ordered = sorted(body["choices"], key=lambda c: c.get("index") if isinstance(c.get("index"), int) else 0)
            for choice in ordered:
                message = choice.get("message")
                if not isinstance(message, Mapping):
                    raise _Malformed("a choice has no message")
                text = message.get("content") or ""
                if not isinstance(text, str):
                    raise _Malformed("a message's content is not text")
                if not text and message.get("refusal"):
                    _note_once(notes, "refusal returned instead of content")
                logprobs = None
                if request.logprobs:
                    logprobs = self._token_logprobs(choice, text, sent_top, notes)
                finish = choice.get("finish_reason")
                out.append(Choice(text=text, logprobs=logprobs, finish_reason=finish if isinstance(finish, str) else None))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise TransientError(f"{self._profile.name}: malformed response body ({exc})",
                                 reason="malformed") from exc
        return out

    def _token_logprobs(self, choice: Mapping[str, Any], text: str, asked: int,
                        notes: list[str]) -> list[TokenLogprob] | None:
        items = _raw_logprobs(choice.get("logprobs"))
        if items is None:
            if text:
                _note_once(notes, "logprobs asked for but not returned in this answer")
            return None
        tokens: list[TokenLogprob] = []
        sentinels = 0
        widest = 0
        for token, logprob, alternatives in items:
            value, sentinel = convert_logprob(logprob)
            sentinels += sentinel
            top: list[TopLogprob] = []
            widest = max(widest, len(alternatives))
            for alt_token, alt_logprob in alternatives:
                alt_value, alt_sentinel = convert_logprob(alt_logprob)
                sentinels += alt_sentinel
                if alt_value is not None:
                    top.append(TopLogprob(token=alt_token, logprob=alt_value))
            tokens.append(TokenLogprob(token=token, logprob=value, top=top))
        if sentinels:
            _note_once(notes, f"{sentinels} sentinel logprob(s) (e.g. -9999) treated as unknown")
        if tokens and asked > 0 and widest < asked:
            # taken as it came (readers renormalise over what is listed); learning a cap from
            # one answer would make every later score depend on which answer arrived first
            _note_once(notes, f"top_logprobs list shorter than asked ({widest} of {asked})")
        return tokens

    # -- teacher-forced scoring (vLLM prompt_logprobs) ---------------------------------

    async def _score(self, request: ChatRequest, model: str, caps: Capabilities) -> ChatResponse:
        """Log-probabilities of the final assistant message as given.

        Chat completions cannot do this; vLLM can, through ``prompt_logprobs`` (extra body)
        with ``continue_final_message`` so the assistant turn is the end of the prompt. vLLM
        returns, per prompt token, a dict of ``{token_id: {logprob, rank, decoded_token}}``;
        with ``prompt_logprobs=0`` it holds just the actual token. The assistant text's
        tokens are the trailing ones whose decoded text adds up to it; vLLM's -9999 stand-in
        for ``-inf`` becomes None like any sentinel.

        Written from vLLM's source and documentation (``prompt_logprobs``, the -9999 clamp in
        ``clamp_prompt_logprobs``, ``continue_final_message``); tested against recorded shapes.
        """
        if not caps.score_given_text:
            raise CapabilityError(
                f"{self._profile.name}: model {model!r} cannot score given text over chat completions "
                "(only servers with prompt_logprobs, e.g. vLLM, can); the method falls back to ratings")
        params: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(m) for m in request.messages],
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
            "add_generation_prompt": False,
            "continue_final_message": True,
        }
        call = await self._call(params)
        raw = call.body.get("prompt_logprobs")
        if not isinstance(raw, list):
            self._learn(model).prompt_logprobs_missing = True
            raise CapabilityError(f"{self._profile.name}: server did not return prompt_logprobs for "
                                  f"{model!r}; it cannot score given text")
        notes: list[str] = []
        tokens = _tail_tokens(raw, request.messages[-1].content, notes)
        choice = Choice(text=request.messages[-1].content, logprobs=tokens, finish_reason="score")
        return ChatResponse(choices=[choice], usage=_usage(call.body, notes), model=model,
                            provider=self._profile.name, calls=1, notes=notes,
                            ratelimit=parse_ratelimit(call.headers))

    # -- errors ------------------------------------------------------------------------

    def _raise_mapped(self, exc: openai.OpenAIError, model: str) -> NoReturn:
        raise self.map_error(exc, model) from exc

    def map_error(self, exc: BaseException, model: str | None = None) -> ClearAPIError:
        """The one translation of openai SDK exceptions into clearapi's tree.

        OpenAI's own cases (``insufficient_quota``, 402, a 400 that refuses
        logprobs) are decided here; what every status means to both protocols alike, in `clearapi.adapters.errors`.
        """
        name = self._profile.name
        model = model or self._model
        if not isinstance(exc, openai.APIStatusError):
            return transport_error(exc, _SDK_ERRORS, provider=name, base_url=self._base_url, key=self._key)
        failure = HTTPFailure(provider=name, model=model, status=exc.status_code, kind=exc.code or exc.type or "",
                              server=_server_message(exc.body, exc.message), headers=exc.response.headers,
                              key=self._key)
        if failure.status == 402 or (failure.status == 429 and "insufficient_quota" in (exc.code, exc.type)):
            return QuotaExhausted(failure.text)
        if failure.status == 400 and "logprob" in failure.server.lower():
            self._learn(model).logprobs_missing = True
            return CapabilityError(failure.message(f"model {model!r} refused logprobs "
                                                   f"(HTTP 400: {failure.server})"))
        return map_status(failure, key_env=self._profile.api_key_env, ratelimit=parse_ratelimit,
                          keeps_class=(400, 401, 403, 404, 422))

    # -- batch: the same wire format, one JSONL line per request -----------------------

    def batch_submitter(self) -> BatchSubmitter:
        from clearapi.adapters.openai_batch import OpenAIBatchSubmitter

        return OpenAIBatchSubmitter(self, self._client)

    def batch_body(self, request: ChatRequest) -> dict[str, Any]:
        """The body the online call would send, with ``n`` as one call with n sends it."""
        model = request.model or self._model
        params = self._params(request, model, self.capabilities_for(model), [])
        if request.n > 1:
            params["n"] = request.n
        return params

    def batch_response(self, request: ChatRequest, body: dict[str, Any]) -> ChatResponse:
        """A batch output line's body, read exactly as the online answer would be."""
        model = request.model or self._model
        try:
            completion = _completion_body(body)
        except _Malformed as exc:
            raise TransientError(f"{self._profile.name}: malformed batch output line ({exc})",
                                 reason="malformed") from exc
        notes: list[str] = []
        sent_top = int(self.batch_body(request).get("top_logprobs", 0))
        choices = self._choices(completion, request, sent_top, notes)
        if len(choices) < request.n:
            raise TransientError(f"{self._profile.name}: batch line has {len(choices)} of {request.n} choices",
                                 reason="n_ignored")
        return ChatResponse(choices=choices[:request.n], usage=_usage(completion, notes), model=model,
                            provider=self._profile.name, calls=1, notes=notes)


def loads_lenient(content: bytes) -> object:
    """JSON as servers really write it: orjson, and stdlib json for what strict JSON lacks."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        # Python-written servers send NaN and -Infinity for logprobs, which strict JSON lacks
        return json.loads(content)


def _completion_body(data: object) -> dict[str, Any]:
    """`data` if it is a chat completion's JSON with at least one choice (each an object)."""
    if not isinstance(data, dict):
        raise _Malformed("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Malformed("no choices")
    if not all(isinstance(c, dict) for c in choices):
        raise _Malformed("a choice is not an object")
    return data


def _wire_message(message: Message) -> dict[str, str]:
    # "developer" is OpenAI's newer name for "system"; every model and compatible server
    # understands "system", not every compatible server understands "developer".
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": message.content}


_RawToken = tuple[str, object, list[tuple[str, object]]]


def _raw_logprobs(logprobs: object) -> list[_RawToken] | None:
    """(token, logprob, alternatives) per token, from either layout servers use.

    The chat layout is ``content: [{token, logprob, top_logprobs: [{token, logprob}]}]``.
    Some compatible servers (Together, Fireworks, older vLLM) answer chat requests in the
    completions layout: parallel ``tokens`` / ``token_logprobs`` lists and
    ``top_logprobs`` as one ``{token: logprob}`` dict per position.
    """
    if not isinstance(logprobs, Mapping):
        return None
    content = logprobs.get("content")
    if isinstance(content, list):
        return [(str(item["token"]), item.get("logprob"),
                 [(str(alt["token"]), alt.get("logprob")) for alt in (item.get("top_logprobs") or [])])
                for item in content]
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
        return None
    tops = logprobs.get("top_logprobs")
    tops = tops if isinstance(tops, list) and len(tops) == len(tokens) else [None] * len(tokens)
    return [(str(t), v, [(str(k), lp) for k, lp in top.items()] if isinstance(top, Mapping) else [])
            for t, v, top in zip(tokens, values, tops, strict=True)]


def _usage(body: Mapping[str, Any], notes: list[str]) -> Usage:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        _note_once(notes, "usage not reported by server")
        return Usage()
    return Usage(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                 completion_tokens=int(usage.get("completion_tokens") or 0))


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def _server_message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(message, Mapping):
            message = message.get("message")
        if message:
            return str(message)[:500]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback[:500]


def _tail_tokens(prompt_logprobs: list[Any], text: str, notes: list[str]) -> list[TokenLogprob]:
    """The trailing prompt tokens whose decoded text covers `text` (vLLM ``prompt_logprobs``)."""
    picked: list[TokenLogprob] = []
    covered = ""
    target = text.strip()
    for entry in reversed(prompt_logprobs):
        info = next(iter(entry.values()), None) if isinstance(entry, Mapping) else None
        if not isinstance(info, Mapping):
            break  # the first prompt token has no logprob (None): nothing earlier to read
        token = str(info.get("decoded_token", ""))
        value, sentinel = convert_logprob(info.get("logprob"))
        if sentinel:
            _note_once(notes, "sentinel logprob(s) (e.g. -9999) in the scored text treated as unknown")
        picked.append(TokenLogprob(token=token, logprob=value))
        covered = token + covered
        if len(covered.strip()) >= len(target) and covered.strip().endswith(target):
            break
    if not covered.strip().endswith(target):
        notes.append("could not align prompt tokens with the scored text; returned the tokens read")
    picked.reverse()
    return picked
