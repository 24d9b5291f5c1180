"""An in-process `Adapter` that answers from a script, for testing logic above the adapters.

It is a boundary fake in the spirit of httpx's ``MockTransport``: the engine, cache,
limits and retries run for real; only the provider is replaced. Each call takes the next
*step* of the script; when the script runs out, `respond` (or a default echo) answers.
A step is one of:

* a `ChatResponse` (returned as is, copied);
* an exception instance (raised: ``RateLimited("slow down", retry_after=2)``);
* a callable ``(request) -> ChatResponse | Exception`` (sync or async), for answers that
  depend on the request or that wait on an `asyncio.Event` the test controls.

It records every request, counts calls, and tracks in-flight and peak in-flight calls,
so tests can assert what reached the "provider" rather than what the engine claims.
Delays use ``asyncio.sleep`` and so follow a virtual clock when one drives the loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from clearapi.records import Capabilities, ChatRequest, ChatResponse, Choice, Usage

__all__ = ["ScriptedAdapter", "Step", "echo", "reply"]

Responder = Callable[[ChatRequest], ChatResponse | BaseException | Awaitable[ChatResponse | BaseException]]
Step = ChatResponse | BaseException | Responder


def reply(text: str, *, prompt_tokens: int = 10, completion_tokens: int | None = None,
          model: str = "scripted", provider: str = "scripted", calls: int = 1) -> ChatResponse:
    """A plain one-choice answer."""
    return ChatResponse(
        choices=[Choice(text=text, finish_reason="stop")],
        usage=Usage(prompt_tokens=prompt_tokens,
                    completion_tokens=max(1, len(text) // 4) if completion_tokens is None else completion_tokens),
        model=model, provider=provider, calls=calls,
    )


def echo(request: ChatRequest) -> ChatResponse:
    """The default answer: the last message's text, echoed, once per requested sample."""
    text = f"echo: {request.messages[-1].content}"
    chars = sum(len(m.content) for m in request.messages)
    return ChatResponse(
        choices=[Choice(text=text, finish_reason="stop") for _ in range(request.n)],
        usage=Usage(prompt_tokens=max(1, chars // 4), completion_tokens=max(1, len(text) // 4) * request.n),
        model=request.model or "scripted", provider="scripted",
    )


class ScriptedAdapter:
    def __init__(self, script: Iterable[Step] = (), *, respond: Responder | None = None,
                 capabilities: Capabilities | None = None, latency: float = 0.0,
                 model: str | None = None, record: bool = True) -> None:
        self._script: deque[Step] = deque(script)
        self._respond: Responder = respond or echo
        self._capabilities = capabilities or Capabilities(n=True, max_n=128, logprobs=True, max_top_logprobs=20)
        self.latency = latency
        self.model = model
        self.record = record  # False keeps memory flat over millions of calls (benchmarks)
        self.requests: list[ChatRequest] = []
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.closed = False

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def remaining(self) -> int:
        """Script steps not used yet."""
        return len(self._script)

    def push(self, *steps: Step) -> None:
        """Append steps to the script."""
        self._script.extend(steps)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        if self.closed:
            raise RuntimeError("ScriptedAdapter used after aclose()")
        self.calls += 1
        if self.record:
            self.requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            step: Step = self._script.popleft() if self._script else self._respond
            if callable(step) and not isinstance(step, BaseException | ChatResponse):
                outcome = step(request)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
            else:
                outcome = step
            if isinstance(outcome, BaseException):
                raise outcome
            assert isinstance(outcome, ChatResponse), f"a script step gave {type(outcome).__name__}"
            return outcome.model_copy()  # the caller may mark it; the script's object stays as it was
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True
