"""The Anthropic Messages wire protocol.

Messages differs from chat completions in ways the method must not notice: the system
prompt is a separate field (so system/developer turns are lifted out), turns must
alternate (so consecutive same-role turns are merged), temperature stops at 1, there is
no ``n`` (so n samples are n concurrent calls) and no ``seed``. And there are no token
log-probabilities at all: the capabilities say so, a request for them is refused with
`CapabilityError` before any call, and the method falls back to sampled self-ratings.

This module is the one place where the anthropic SDK's exceptions become clearapi's;
529 ``overloaded_error`` is transient (Anthropic's "busy, try again"), unlike a 4xx. What
a status means to both protocols alike is decided in `clearapi.adapters.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import anthropic
import httpx2
from anthropic.types import Message as AnthropicMessage

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
from clearapi.adapters.ratelimit_headers import parse_anthropic_ratelimit
from clearapi.errors import (
    BadRequest,
    CapabilityError,
    ClearAPIError,
    QuotaExhausted,
    TransientError,
)
from clearapi.profiles import Profile
from clearapi.protocols import BatchSubmitter
from clearapi.records import Capabilities, ChatRequest, ChatResponse, Choice, Message, Usage

__all__ = ["AnthropicMessagesAdapter", "to_anthropic_messages"]

_SDK_ERRORS = SdkErrors(timeout=anthropic.APITimeoutError, connection=anthropic.APIConnectionError,
                        malformed=anthropic.APIResponseValidationError)
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def to_anthropic_messages(messages: list[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """(system prompt, alternating turns) from provider-neutral messages.

    System and developer turns become the system prompt wherever they appear; tool turns
    are read as user turns (their text is what the model should see); consecutive turns of
    one role are joined with a blank line, since the API requires alternation.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            system.append(m.content)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": role, "content": m.content})
    return ("\n\n".join(system) if system else None), turns


class AnthropicMessagesAdapter(HostedAdapter[anthropic.AsyncAnthropic]):
    """`Adapter` over ``anthropic.AsyncAnthropic``: one client per adapter, SDK retries off."""

    def __init__(self, profile: Profile, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, timeout: float = 120.0, max_concurrency: int = 16,
                 http_client: httpx2.AsyncClient | None = None) -> None:
        super().__init__(profile, model=model, base_url=base_url, api_key=api_key)
        if http_client is None:
            http_client = anthropic.DefaultAsyncHttpxClient(timeout=timeout, limits=pool_limits(max_concurrency))
        # Explicit key always, so the SDK never falls back to env vars or profile files.
        self._client = anthropic.AsyncAnthropic(api_key=api_key or NO_KEY, base_url=self._base_url,
                                                timeout=timeout, max_retries=0, http_client=http_client)

    @property
    def capabilities(self) -> Capabilities:
        return self._profile.capabilities_for(self._model)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        model = request.model or self._model
        caps = self._profile.capabilities_for(model)
        if request.mode == "score":
            raise CapabilityError(f"{self._profile.name}: the Messages API cannot score given text "
                                  f"(model {model!r}); the method falls back to ratings")
        if request.logprobs and not caps.logprobs:
            raise CapabilityError(f"{self._profile.name}: model {model!r} returns no token logprobs "
                                  "(the Messages API has none); use sampled ratings instead")
        notes: list[str] = []
        params = self._params(request, model, notes)
        if request.n > 1:
            notes.append(f"n not supported: {request.n} separate calls")
        calls = await gather_calls([self._call(params) for _ in range(request.n)])
        choices: list[Choice] = []
        usage = Usage()
        for message, _ in calls:
            choices.append(self._choice(message))
            usage = usage + self._usage(message)
        return ChatResponse(choices=choices, usage=usage, model=model, provider=self._profile.name,
                            calls=len(calls), notes=notes, ratelimit=parse_anthropic_ratelimit(calls[0][1]))

    def _params(self, request: ChatRequest, model: str, notes: list[str]) -> dict[str, Any]:
        system, turns = to_anthropic_messages(request.messages)
        if not turns:
            raise BadRequest(f"{self._profile.name}: the request has only system turns; "
                             "the Messages API needs a user turn")
        params: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens, "messages": turns}
        if system is not None:
            params["system"] = system
        temperature = min(max(request.temperature, 0.0), 1.0)
        if temperature != request.temperature:
            notes.append(f"temperature {request.temperature} clamped to {temperature} (Anthropic max is 1)")
        # anthropic 2.x's create() has no temperature/top_p keywords any more; the Messages
        # API still takes them, so they travel in the body as extra fields.
        sampling: dict[str, float] = {"temperature": temperature}
        if request.top_p is not None:
            sampling["top_p"] = request.top_p
        params["extra_body"] = sampling
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.seed is not None:
            notes.append("seed not supported; omitted")
        return params

    async def _call(self, params: dict[str, Any]) -> tuple[AnthropicMessage, httpx2.Headers]:
        try:
            raw = await self._client.messages.with_raw_response.create(**params)
            message = await raw.parse()
        except anthropic.AnthropicError as exc:
            self._raise_mapped(exc, str(params.get("model")))
        except BELOW_SDK as exc:
            raise below_sdk_error(self._profile.name, exc) from exc
        if not isinstance(message, AnthropicMessage) or not isinstance(getattr(message, "content", None), list):
            raise TransientError(f"{self._profile.name}: malformed response body (no content)",
                                 reason="malformed")
        return message, raw.headers

    def _choice(self, message: AnthropicMessage) -> Choice:
        try:
            text = "".join(str(getattr(block, "text", "")) for block in message.content
                           if getattr(block, "type", None) == "text")
            stop = getattr(message, "stop_reason", None)
        except (AttributeError, TypeError) as exc:
            raise TransientError(f"{self._profile.name}: malformed response body ({exc})",
                                 reason="malformed") from exc
        return Choice(text=text, finish_reason=_FINISH.get(str(stop), stop) if stop else None)

    @staticmethod
    def _usage(message: AnthropicMessage) -> Usage:
        usage = getattr(message, "usage", None)
        if usage is None:
            return Usage()
        return Usage(prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                     completion_tokens=int(getattr(usage, "output_tokens", 0) or 0))

    # -- batch: the same params and message mapping, one entry per request ------------

    def batch_submitter(self) -> BatchSubmitter:
        from clearapi.adapters.anthropic_batch import AnthropicBatchSubmitter

        return AnthropicBatchSubmitter(self, self._client)

    def batch_params(self, request: ChatRequest) -> dict[str, Any]:
        """The online call's params; temperature/top_p are plain params inside a batch request."""
        params = self._params(request, request.model or self._model, [])
        params.update(params.pop("extra_body", None) or {})
        return params

    def batch_response(self, request: ChatRequest, message: AnthropicMessage) -> ChatResponse:
        """A succeeded batch result, read exactly as the online answer would be."""
        return ChatResponse(choices=[self._choice(message)], usage=self._usage(message),
                            model=request.model or self._model, provider=self._profile.name, calls=1, notes=[])

    # -- errors ------------------------------------------------------------------------

    def _raise_mapped(self, exc: anthropic.AnthropicError, model: str) -> NoReturn:
        raise self.map_error(exc, model) from exc

    def map_error(self, exc: BaseException, model: str | None = None) -> ClearAPIError:
        """The one translation of anthropic SDK exceptions into clearapi's tree.

        Anthropic's own cases (529 ``overloaded_error``, billing and credit
        balance) are decided here; what every status means to both protocols alike, in `clearapi.adapters.errors`.
        """
        name = self._profile.name
        model = model or self._model
        if not isinstance(exc, anthropic.APIStatusError):
            return transport_error(exc, _SDK_ERRORS, provider=name, base_url=self._base_url, key=self._key)
        failure = HTTPFailure(provider=name, model=model, status=exc.status_code, kind=exc.type or "",
                              server=(exc.api_message or _body_text(exc.body) or exc.message)[:500],
                              headers=exc.response.headers, key=self._key)
        if failure.status == 529 or failure.kind == "overloaded_error":
            return TransientError(failure.text, reason="529", retry_after=failure.retry_after)
        if failure.status == 402 or failure.kind == "billing_error" or "credit balance" in failure.server.lower():
            return QuotaExhausted(failure.text)
        return map_status(failure, key_env=self._profile.api_key_env, ratelimit=parse_anthropic_ratelimit,
                          keeps_class=(400, 401, 403, 404, 413, 422))


def _body_text(body: object) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str):
        return body.strip()
    return ""
