"""The Anthropic Messages wire protocol.

Messages differs from chat completions in ways the method must not notice: the system
prompt is a separate field (so system/developer turns are lifted out), turns must
alternate (so consecutive same-role turns are merged), temperature stops at 1, there is
no ``n`` (so n samples are n concurrent calls) and no ``seed``. And there are no token
log-probabilities at all: the capabilities say so, a request for them is refused with
`CapabilityError` before any call, and the method falls back to sampled self-ratings.

This module is the one place where the anthropic SDK's exceptions become clearapi's;
529 ``overloaded_error`` is transient (Anthropic's "busy, try again"), unlike a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

import anthropic
import httpx2
import pydantic
from anthropic.types import Message as AnthropicMessage

from clearapi.adapters.fanout import gather_calls
from clearapi.adapters.ratelimit_headers import parse_anthropic_ratelimit, parse_retry_after
from clearapi.errors import (
    AuthError,
    BadRequest,
    CapabilityError,
    ClearAPIError,
    ConfigError,
    FatalError,
    QuotaExhausted,
    RateLimited,
    TransientError,
    redact,
)
from clearapi.profiles import Profile
from clearapi.records import Capabilities, ChatRequest, ChatResponse, Choice, Message, Usage

__all__ = ["AnthropicMessagesAdapter", "to_anthropic_messages"]

_NO_KEY = "no-key-required"
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


class AnthropicMessagesAdapter:
    """`Adapter` over ``anthropic.AsyncAnthropic``: one client per adapter, SDK retries off."""

    def __init__(self, profile: Profile, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, timeout: float = 120.0, max_concurrency: int = 16,
                 http_client: httpx2.AsyncClient | None = None) -> None:
        url = base_url or profile.base_url
        if not url:
            raise ConfigError(f"provider {profile.name!r} has no base_url; pass --base-url")
        self._profile = profile
        self._model = model or profile.default_model
        self._base_url = url
        self._key = api_key
        if http_client is None:
            http_client = anthropic.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=httpx2.Limits(max_connections=max_concurrency,
                                     max_keepalive_connections=max_concurrency),
            )
        # Explicit key always, so the SDK never falls back to env vars or profile files.
        self._client = anthropic.AsyncAnthropic(api_key=api_key or _NO_KEY, base_url=url, timeout=timeout,
                                                max_retries=0, http_client=http_client)
        self._closed = False

    @property
    def capabilities(self) -> Capabilities:
        return self._profile.capabilities_for(self._model)

    @property
    def model(self) -> str:
        return self._model

    @property
    def profile(self) -> Profile:
        return self._profile

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

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()

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
        except (json.JSONDecodeError, pydantic.ValidationError, UnicodeDecodeError) as exc:
            raise TransientError(f"{self._profile.name}: malformed response body ({type(exc).__name__})",
                                 reason="malformed") from exc
        except httpx2.HTTPError as exc:
            raise TransientError(f"{self._profile.name}: connection failed ({type(exc).__name__})",
                                 reason="connection") from exc
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

    # -- errors ------------------------------------------------------------------------

    def _raise_mapped(self, exc: anthropic.AnthropicError, model: str) -> NoReturn:
        raise self.map_error(exc, model) from exc

    def map_error(self, exc: BaseException, model: str | None = None) -> ClearAPIError:
        """The one translation of anthropic SDK exceptions into clearapi's tree."""
        name = self._profile.name
        model = model or self._model
        key = self._key

        def msg(text: str) -> str:
            return redact(f"{name}: {text}", key)

        if isinstance(exc, anthropic.APITimeoutError):
            return TransientError(msg(f"request timed out ({self._base_url})"), reason="timeout")
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f": {type(cause).__name__}" if cause else ""
            return TransientError(msg(f"connection failed to {self._base_url}{detail}"), reason="connection")
        if isinstance(exc, anthropic.APIResponseValidationError):
            return TransientError(msg("malformed response body"), reason="malformed")
        if not isinstance(exc, anthropic.APIStatusError):
            return FatalError(msg(f"{type(exc).__name__}: {exc}"))
        status = exc.status_code
        headers = exc.response.headers
        kind = exc.type or ""
        server = (exc.api_message or _body_text(exc.body) or exc.message)[:500]
        label = f"HTTP {status}" + (f" {kind}" if kind else "")
        text = msg(f"{label} for model {model!r}: {server}")
        retry_after = parse_retry_after(headers)
        if status == 529 or kind == "overloaded_error":
            return TransientError(text, reason="529", retry_after=retry_after)
        if status == 402 or kind == "billing_error" or "credit balance" in server.lower():
            return QuotaExhausted(text)
        if headers.get("x-should-retry") == "false" and status not in (400, 401, 403, 404, 413, 422):
            return FatalError(msg(f"{label} for model {model!r} (server says do not retry): {server}"))
        if status == 429:
            return RateLimited(text, retry_after=retry_after, ratelimit=parse_anthropic_ratelimit(headers))
        if status in (401, 403):
            env = self._profile.api_key_env
            hint = f" (the key comes from {env})" if env else ""
            return AuthError(text + hint)
        if status in (408, 409) or status >= 500 or headers.get("x-should-retry") == "true":
            return TransientError(text, reason=str(status), retry_after=retry_after)
        return BadRequest(text)


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
