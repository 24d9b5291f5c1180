"""Which requests a row costs under each provider's capabilities, and how answers become signals.

These drive the real `Engine` with a scripted provider (a boundary fake): they check the
method's plan and arithmetic, not the wire; the end-to-end tests are in test_curate_e2e.py.
"""

from __future__ import annotations

import math

import pytest

from clearapi.clear.pipeline import ScoringPlan, judge, score_example
from clearapi.engine import Engine
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Example,
    Message,
    Score,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from clearapi.testing import ScriptedAdapter

OPENAI_LIKE = Capabilities(logprobs=True, max_top_logprobs=20, n=True, max_n=128)
ANTHROPIC_LIKE = Capabilities()
LOCAL_LIKE = Capabilities(logprobs=True, max_top_logprobs=20, n=True, max_n=128, score_given_text=True)

EXAMPLE = Example(id="r1", line=3, messages=[Message(role="user", content="What is the capital of Canada?"),
                                             Message(role="assistant", content="Toronto.")])


def _letter_dist(probs: dict[str, float]) -> ChatResponse:
    top = [TopLogprob(token=k, logprob=math.log(v)) for k, v in probs.items()]
    best = max(probs, key=lambda k: probs[k])
    return ChatResponse(choices=[Choice(text=best, logprobs=[TokenLogprob(token=best, logprob=math.log(probs[best]),
                                                                         top=top)])],
                        usage=Usage(prompt_tokens=50, completion_tokens=1))


class FakeModel:
    """Answers like a model that knows Ottawa and dislikes "Toronto"."""

    def __init__(self, end_logprob: float = -1.0) -> None:
        self.seen: list[ChatRequest] = []
        self.end_logprob = end_logprob

    def __call__(self, request: ChatRequest) -> ChatResponse:
        self.seen.append(request)
        last = request.messages[-1].content
        if request.mode == "score":
            lp = -0.2 if "Write something" not in request.messages[0].content else -2.0
            return ChatResponse(choices=[Choice(text=last, logprobs=[TokenLogprob(token="x", logprob=lp)] * 3,
                                                end_logprob=self.end_logprob)],
                                usage=Usage(prompt_tokens=20))
        if "(C) I am not sure" in last:
            if request.logprobs:
                return _letter_dist({"A": 0.1, "B": 0.8, "C": 0.1})
            return ChatResponse(choices=[Choice(text="B") for _ in range(request.n)])
        if "Which answer is correct" in last:
            # prefers whichever option says Ottawa
            first_is_ottawa = last.index("(A) ") < last.index("Ottawa") < last.index("(B) ")
            return _letter_dist({"A": 0.9, "B": 0.1} if first_is_ottawa else {"A": 0.1, "B": 0.9})
        texts = ["Ottawa is the capital of Canada.", "Ottawa.", "It is Ottawa.", "Montreal."]
        choices = [Choice(text=texts[(request.sample_index + i) % 4],
                          logprobs=[TokenLogprob(token="t", logprob=-0.1)] if request.logprobs else None)
                   for i in range(request.n)]
        return ChatResponse(choices=choices, usage=Usage(prompt_tokens=10, completion_tokens=5 * request.n))


async def _score(caps: Capabilities, samples: int = 4, model: FakeModel | None = None,
                 best_answer: bool | None = None) -> tuple[FakeModel, ScriptedAdapter, Score]:
    model = model or FakeModel()
    adapter = ScriptedAdapter(respond=model, capabilities=caps)
    async with Engine("openai", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities, samples=samples, seed=7, best_answer=best_answer)
        row = await score_example(engine, EXAMPLE, plan, model="gpt-4o-mini")
    return model, adapter, row


def test_plan_call_budget_per_provider_kind() -> None:
    assert ScoringPlan.for_capabilities(OPENAI_LIKE).calls_per_row() == {"rating": 1, "answers": 1}
    assert ScoringPlan.for_capabilities(OPENAI_LIKE, best_answer=True).calls_per_row() == {
        "rating": 1, "best_answer": 1, "answers": 1}
    # self-hosted: a best answer, a sample call and two scoring passes per demonstration set (2 by default)
    assert ScoringPlan.for_capabilities(LOCAL_LIKE).calls_per_row() == {"rating": 1, "best_answer": 2,
                                                                        "answers": 2, "likelihood": 4}
    assert ScoringPlan.for_capabilities(LOCAL_LIKE, demonstrations=0).calls_per_row() == {
        "rating": 1, "best_answer": 1, "answers": 1, "likelihood": 2}
    assert ScoringPlan.for_capabilities(ANTHROPIC_LIKE, samples=4).calls_per_row() == {"rating": 3, "answers": 4}
    assert ScoringPlan.for_capabilities(OPENAI_LIKE, samples=0).calls_per_row() == {"rating": 1}
    assert ScoringPlan.for_capabilities(ANTHROPIC_LIKE).methods()["self_rating"] == "sampled x3"


async def test_logprob_provider_two_calls_with_n() -> None:
    model, adapter, row = await _score(OPENAI_LIKE)
    assert adapter.calls == 2
    rating, answers = sorted(model.seen, key=lambda r: r.n)
    assert rating.max_tokens == 1 and rating.logprobs and rating.top_logprobs == 20 and rating.temperature == 0
    assert answers.n == 4 and answers.temperature == 1.0 and answers.seed == 7
    assert row.calls == 2 and row.tokens > 0
    s = row.signals
    assert s["self_rating"] == pytest.approx(0.1 + 0.05)
    assert s["consistency"] == 0.0  # no sample mentions Toronto
    assert "likelihood" not in s
    assert row.methods["self_rating"] == "logprobs"
    assert "medoid" in row.methods["answer_confidence"]
    cand = row.candidate
    # no separate T=0 call: the sample agreeing most with the others stands in for y′
    assert cand is not None and "Ottawa" in cand.text and cand.text != "Montreal." and cand.agreement == 0.0
    assert row.confidence is not None and row.confidence < 0.3


async def test_best_answer_costs_one_more_call_and_is_the_candidate() -> None:
    model, adapter, row = await _score(OPENAI_LIKE, best_answer=True)
    assert adapter.calls == 3
    rating = next(r for r in model.seen if r.max_tokens == 1)
    best, answers = sorted((r for r in model.seen if r.max_tokens > 1), key=lambda r: r.n)
    assert rating.logprobs and rating.top_logprobs == 20 and rating.temperature == 0
    assert best.n == 1 and best.temperature == 0.0 and best.logprobs
    assert answers.n == 4 and answers.temperature == 1.0 and answers.seed == 7
    assert row.calls == 3 and row.tokens > 0
    assert row.signals["consistency"] == 0.0
    assert "T=0" in row.methods["consistency"] and "T=0" in row.methods["answer_confidence"]
    cand = row.candidate
    # the candidate is the temperature-0 answer; 3 of the 4 samples name Ottawa too
    assert cand is not None and cand.text == "Ottawa is the capital of Canada." and cand.agreement == 0.0
    # a contradiction by an answer the model is fairly sure of (token p 0.9, 3 of 4 samples agree)
    assert row.signals["answer_agreement"] == pytest.approx(1.0 - cand.confidence)
    assert cand.confidence > 0.5
    assert row.details["samples"] == ["Ottawa is the capital of Canada.", "Ottawa.", "It is Ottawa.", "Montreal."]
    assert row.confidence is not None and row.confidence < 0.3


async def test_provider_without_logprobs_or_n_samples_separately() -> None:
    model, adapter, row = await _score(ANTHROPIC_LIKE)
    assert adapter.calls == 3 + 4
    assert all(r.n == 1 and not r.logprobs for r in model.seen)
    assert sorted(r.sample_index for r in model.seen if "(C)" not in r.messages[-1].content) == [0, 1, 2, 3]
    assert row.signals["self_rating"] == 0.0
    assert row.methods["self_rating"] == "sampled x3"
    assert "answer_confidence" not in row.methods


async def test_local_like_provider_adds_likelihood_and_pmi() -> None:
    model, adapter, row = await _score(LOCAL_LIKE)
    assert adapter.calls == 5
    scored = [r for r in model.seen if r.mode == "score"]
    assert len(scored) == 2 and all(r.messages[-1].content == "Toronto." for r in scored)
    s = row.signals
    assert s["likelihood"] == pytest.approx(math.exp(-0.2))
    assert s["pmi"] == pytest.approx(1 / (1 + math.exp(-1.8)))
    assert row.details["pmi_nats_per_token"] == pytest.approx(1.8)
    assert row.details["end_logprob"] == -1.0 and s["completeness"] == pytest.approx(1.0, abs=1e-3)
    assert row.methods["completeness"].startswith("teacher-forced probability that y is finished")


async def test_a_response_the_model_expects_to_go_on_is_gated_down() -> None:
    """Same row, same signals, but the model is all but sure the text continues (cut off)."""
    _, _, finished = await _score(LOCAL_LIKE, model=FakeModel(end_logprob=-1.0))
    _, _, cut = await _score(LOCAL_LIKE, model=FakeModel(end_logprob=-25.0))
    assert {k: v for k, v in cut.signals.items() if k != "completeness"} == {
        k: v for k, v in finished.signals.items() if k != "completeness"}
    assert cut.signals["completeness"] is not None and cut.signals["completeness"] < 0.001
    assert finished.confidence is not None and cut.confidence is not None
    assert cut.confidence == pytest.approx(finished.confidence * cut.signals["completeness"], rel=1e-3)


async def test_judge_asks_both_orders() -> None:
    model = FakeModel()
    adapter = ScriptedAdapter(respond=model, capabilities=OPENAI_LIKE)
    async with Engine("openai", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities)
        j = await judge(engine, plan, EXAMPLE, "Ottawa.")
    assert adapter.calls == 2
    firsts = [r.messages[-1].content for r in model.seen]
    assert any(t.index("Toronto") < t.index("Ottawa") for t in firsts)
    assert any(t.index("Ottawa") < t.index("Toronto") for t in firsts)
    assert j.candidate_second == pytest.approx(0.9) and j.candidate_first == pytest.approx(0.9)
    assert j.wins_both


def test_answer_budget_scales_with_response() -> None:
    plan = ScoringPlan()
    assert plan.answer_tokens("Ottawa.") == plan.min_answer_tokens
    assert plan.answer_tokens("x" * 4000) == plan.max_answer_tokens
    assert plan.min_answer_tokens < plan.answer_tokens("x" * 200) < plan.max_answer_tokens


async def test_sampled_judge_stops_after_a_lost_greedy_order() -> None:
    """Without logprobs a judge that prefers y in either greedy order costs just the two greedy calls."""

    def position_biased(request: ChatRequest) -> ChatResponse:
        return ChatResponse(choices=[Choice(text="A") for _ in range(request.n)])  # always the first answer

    adapter = ScriptedAdapter(respond=position_biased, capabilities=ANTHROPIC_LIKE)
    async with Engine("anthropic", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities)
        j = await judge(engine, plan, EXAMPLE, "Ottawa.")
    assert adapter.calls == 2
    assert (j.candidate_second, j.candidate_first) == (0.0, 1.0) and not j.wins_both


async def test_sampled_judge_measures_confidence_when_both_greedy_orders_win() -> None:
    model = FakeModel()

    def letters(request: ChatRequest) -> ChatResponse:
        dist = model(request)  # the logprob answer, read as text
        return ChatResponse(choices=[Choice(text=dist.text) for _ in range(request.n)])

    adapter = ScriptedAdapter(respond=letters, capabilities=ANTHROPIC_LIKE)
    async with Engine("anthropic", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities)
        j = await judge(engine, plan, EXAMPLE, "Ottawa.")
    assert adapter.calls == 2 + 2 * (plan.rating_samples - 1)
    assert j.candidate_second == 1.0 and j.candidate_first == 1.0
