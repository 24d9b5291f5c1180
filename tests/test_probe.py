"""Whether a server returns logprobs is settled on the first rows, before any row is scored
(`clearapi.clear.probe`). The whole run through the CLI is in test_curate_e2e; here the rule
itself, against a scripted chat."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from clearapi.clear.pipeline import ScoringPlan, rating_request
from clearapi.clear.probe import PROBE_ROWS, Primed, settle_logprobs
from clearapi.errors import AuthError, CapabilityError, TransientError
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Example,
    Message,
    TokenLogprob,
    TopLogprob,
)

CAPS = Capabilities(logprobs=True, max_top_logprobs=20, n=True, max_n=8, seed=True)
PLAN = ScoringPlan.for_capabilities(CAPS)
FALLBACK = ScoringPlan.for_capabilities(CAPS.model_copy(update={"logprobs": False, "max_top_logprobs": 0}))

WITH = ChatResponse(choices=[Choice(text="A", logprobs=[TokenLogprob(token="A", logprob=-0.1,
                                                                     top=[TopLogprob(token="A", logprob=-0.1)])])])
WITHOUT = ChatResponse(choices=[Choice(text="A")])
EMPTY = ChatResponse(choices=[Choice(text="")])


def examples(n: int) -> list[Example]:
    return [Example(id=f"r{i}", line=i + 1, messages=[Message(role="user", content=f"What is {i} + {i}?"),
                                          Message(role="assistant", content=str(2 * i))]) for i in range(n)]


class Script:
    """Answers the probe's requests in order, recording them."""

    def __init__(self, steps: Sequence[ChatResponse | Exception]) -> None:
        self.steps = list(steps)
        self.asked: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.asked.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


async def test_an_answer_with_logprobs_keeps_the_plan_and_every_answer_is_handed_to_its_row() -> None:
    rows = examples(5)
    chat = Script([EMPTY, TransientError("down", reason="500"), WITH, WITHOUT, EMPTY])
    plan, primed = await settle_logprobs(chat, rows, PLAN, FALLBACK)
    assert plan is PLAN and plan.fallback is None
    assert chat.asked == [rating_request(PLAN, r) for r in rows]  # all of them, whatever the first says
    # the answers received (the empty one too) are used by their rows instead of a second call
    assert len(primed) == 4
    engine = Script([WITH])
    served = Primed(engine, primed)
    assert (await served.chat(rating_request(PLAN, rows[2]))) is WITH
    assert (await served.chat(rating_request(PLAN, rows[0]))) is EMPTY
    assert engine.asked == []
    await served.chat(rating_request(PLAN, rows[2]))  # once each: the next ask goes to the engine
    assert engine.asked == [rating_request(PLAN, rows[2])]


async def test_answers_without_logprobs_switch_to_the_fallback_and_say_why() -> None:
    chat = Script([EMPTY, WITHOUT, WITHOUT, TransientError("down", reason="500"), WITHOUT])
    plan, primed = await settle_logprobs(chat, examples(5), PLAN, FALLBACK)
    assert plan.rating == "sampled" and not plan.answer_logprobs and primed == {}
    assert plan.fallback is not None and "returned none in the 3 answer(s) with text" in plan.fallback
    assert plan.methods()["self_rating"] == "sampled x3 (fallback: no token logprobs)"
    assert "sampled fallback" in plan.methods()["logprobs"]


async def test_one_answer_with_logprobs_among_the_first_keeps_the_plan() -> None:
    plan, _ = await settle_logprobs(Script([WITHOUT, WITH]), examples(2), PLAN, FALLBACK)
    assert plan is PLAN


async def test_a_refusal_switches_and_a_run_stopping_error_propagates() -> None:
    plan, _ = await settle_logprobs(Script([CapabilityError("model refused logprobs")]), examples(1),
                                    PLAN, FALLBACK)
    assert plan.rating == "sampled" and plan.fallback is not None and "refused" in plan.fallback
    with pytest.raises(AuthError):
        await settle_logprobs(Script([WITH, AuthError("bad key")]), examples(2), PLAN, FALLBACK)


async def test_nothing_learned_keeps_the_profiles_plan_and_a_short_file_is_probed_whole() -> None:
    chat = Script([EMPTY] * PROBE_ROWS)
    plan, primed = await settle_logprobs(chat, examples(PROBE_ROWS + 3), PLAN, FALLBACK)
    assert plan is PLAN and len(primed) == PROBE_ROWS and len(chat.asked) == PROBE_ROWS
    plan, _ = await settle_logprobs(Script([WITHOUT]), examples(1), PLAN, FALLBACK)
    assert plan.fallback is not None  # one row, one answer without: nothing says otherwise


async def test_a_plan_that_needs_no_logprobs_asks_nothing() -> None:
    chat = Script([])
    plan, primed = await settle_logprobs(chat, examples(3), FALLBACK, FALLBACK)
    assert plan is FALLBACK and primed == {} and chat.asked == []
