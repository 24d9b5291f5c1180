"""Does this server return token logprobs? Settled once, on the run's first rows, before any row is scored.

A profile says whether a provider returns logprobs, but an OpenAI-compatible server behind
``--base-url`` may not (a gateway, a server that drops them). Learning it from whichever answer
arrives first would make the plan, and so the scores, depend on arrival order; a fatal stop
would lose the run. So before pass 1 the self-rating requests of the first `PROBE_ROWS` rows
are sent together (together, so a dead server trips the circuit breaker as fast as the run
itself would). Any answer with logprobs keeps the plan, and those answers are handed to their
rows, so no call is repeated. Answers with text and no logprobs, and none with them, switch the
run to the provider's no-logprobs plan (sampled ratings, as on Anthropic), which every row then
uses: a few one-token calls are the price. An empty answer or a failed call says nothing. The
probe goes through the engine's cache, so a re-run reaches the same plan at no cost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterable, Mapping

from clearapi.clear.pipeline import Chat, ScoringPlan, rating_request
from clearapi.errors import BadRequest, CapabilityError, RateLimited, TransientError
from clearapi.records import ChatRequest, ChatResponse, Example

__all__ = ["PROBE_ROWS", "Primed", "settle_logprobs"]

#: rows whose rating request may be asked before the run, at most
PROBE_ROWS = 10


class Primed:
    """An engine whose answers to the probe's requests are already known (each used once)."""

    def __init__(self, engine: Chat, answers: Mapping[str, ChatResponse]) -> None:
        self._engine = engine
        self._answers = dict(answers)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        if self._answers:
            known = self._answers.pop(_key(request), None)
            if known is not None:
                return known
        return await self._engine.chat(request)


def _key(request: ChatRequest) -> str:
    return request.model_dump_json()


async def settle_logprobs(engine: Chat, examples: Iterable[Example], plan: ScoringPlan,
                          fallback: ScoringPlan) -> tuple[ScoringPlan, dict[str, ChatResponse]]:
    """The plan the run uses (`plan`, or `fallback` marked with why), and the probe's answers
    that `plan`'s rows will ask again (empty when the fallback is chosen).

    Run-stopping errors (a bad key, no quota, a dead server) propagate: the run stops as it would
    on its first rows."""
    if plan.rating != "logprobs":
        return plan, {}
    requests = [rating_request(plan, example) for example in itertools.islice(examples, PROBE_ROWS)]
    got = await asyncio.gather(*(engine.chat(r) for r in requests), return_exceptions=True)
    answers: dict[str, ChatResponse] = {}
    refused: CapabilityError | None = None
    with_logprobs = without = 0
    for request, answer in zip(requests, got, strict=True):
        if isinstance(answer, CapabilityError):  # a 400 that refuses logprobs
            refused = refused or answer
        elif isinstance(answer, (TransientError, RateLimited, BadRequest)):
            continue  # says nothing about logprobs; the row itself will fail or be asked again
        elif isinstance(answer, BaseException):
            raise answer
        else:
            answers[_key(request)] = answer
            with_logprobs += any(choice.logprobs for choice in answer.choices)
            without += bool(answer.text.strip()) and not any(choice.logprobs for choice in answer.choices)
    if with_logprobs:
        return plan, answers
    if refused is not None:
        return _fallback(fallback, f"the server refused them ({refused})"), {}
    if without:
        return _fallback(fallback, f"the server returned none in the {without} answer(s) with text to the "
                                   f"first rows' rating requests"), {}
    return plan, answers


def _fallback(plan: ScoringPlan, why: str) -> ScoringPlan:
    return dataclasses.replace(plan, fallback=why)
