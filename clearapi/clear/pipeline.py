"""What to ask the model about one example, planned from what the provider can do.

Per row, these scoring requests, all sent concurrently (the engine bounds them):

==============  =====================================================  ===========================
request         what                                                   when
==============  =====================================================  ===========================
rating          reflection prompt, ``max_tokens=1``, top logprobs      always (sampled ×R without
                                                                       logprobs)
best answer     the row's prompt at temperature 0, with logprobs:      ``samples > 0``, where
                the model's own answer y′ (one per demonstration set)  the provider scores text
answers         the row's prompt, ``n=K`` samples at temperature 1,    ``samples > 0`` (K calls
                with logprobs (spread over the demonstration sets)     without ``n``)
likelihood      teacher-forced log P(y | prompt), and log P(end of     provider scores given text
                turn | prompt, y) (one per demonstration set)
baseline        teacher-forced log P(y | prompt minus its last part)   provider scores given text
                (one per demonstration set)
==============  =====================================================  ===========================

On a provider with logprobs and ``n`` (OpenAI-style) that is **2 calls per row** (3 with
``--best-answer``); the local model makes 9 (rating, and per each of its two demonstration
sets a best answer, a call for half the samples and two scoring passes; 5 with one set).
Auto-correct adds **2 pairwise calls** (both orders) only for rows below the
threshold whose candidate passed the cheap gates (`clearapi.clear.policy.needs_judgement`):
rows that are kept anyway, or whose candidate is the same answer or unsure, never pay for a
judgement.

Where the plan asks for them (self-hosted providers by default), the answer and scoring
requests show the model a few of the dataset's own rows first (`clearapi.clear.demos`), so
that it answers, and is measured, in the dataset's style; the rating and judge prompts do
not (they grade, they do not answer). With several demonstration sets (self-hosted default:
2) every set gets its own best answer and scoring passes, the samples are spread over them,
and the signals average over the sets (`score_example`).

The candidate for auto-correct is y′, the temperature-0 answer, as in CLEAR; its confidence
blends its token probability with how many of the K samples (and the other sets' y′) agree
with it; with several sets, the y′ the model is surest of is the candidate. Where that call
is not made, the medoid of the samples stands in (the sample that agrees most with the
others: a self-consistency vote at no extra call); it also stands in for y′ in the
consistency signal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from clearapi.clear import prompts
from clearapi.clear.combine import combine, weights_for
from clearapi.clear.demos import DemoPool
from clearapi.clear.policy import Candidate, Judgement
from clearapi.clear.signals import (
    CONSISTENCY_ALPHA,
    answer_agreement,
    certainty,
    completeness,
    consistency_with,
    copy_ratio,
    focused_agreement,
    geometric_mean_probability,
    logistic,
    mean_logprob,
    option_probabilities,
    pmi_per_token,
    rating_from_letters,
    read_letter,
)
from clearapi.clear.similarity import agreement
from clearapi.errors import ConfigError
from clearapi.records import Capabilities, ChatRequest, ChatResponse, Example, Message, Score, Usage

__all__ = [
    "DEFAULT_DEMONSTRATIONS",
    "DEFAULT_DEMO_SETS",
    "PMI_SCALE",
    "Chat",
    "RowWork",
    "ScoringPlan",
    "judge",
    "rating_request",
    "score_example",
]

#: PMI (nats per token) is mapped to [0, 1] by logistic(pmi / PMI_SCALE)
PMI_SCALE = 1.0
#: how many times a rating is sampled on providers without logprobs
DEFAULT_RATING_SAMPLES = 3
#: the dataset's own rows shown before each answer and scoring request (`clearapi.clear.demos`)
DEFAULT_DEMONSTRATIONS = 3
#: how many different draws of them a row is asked under, where there are demonstrations
DEFAULT_DEMO_SETS = 2


class Chat(Protocol):
    """What the pipeline needs of an engine: one awaitable chat call."""

    async def chat(self, request: ChatRequest) -> ChatResponse: ...


@dataclass(frozen=True)
class ScoringPlan:
    """Which requests a row costs, decided once per run from the provider's capabilities."""

    samples: int = 4
    #: also ask the temperature-0 answer (one more call); off, the samples' medoid stands in
    best_answer: bool = True
    rating: Literal["logprobs", "sampled"] = "logprobs"
    rating_samples: int = DEFAULT_RATING_SAMPLES
    likelihood: bool = False
    n_per_call: bool = True
    answer_logprobs: bool = True
    #: in-context demonstrations from the dataset before the answer and scoring requests
    demonstrations: int = 0
    #: disjoint draws of demonstrations: each gets its own best answer and scoring passes, and
    #: the samples are spread over them (`score_example` averages what they say)
    demo_sets: int = 1
    top_logprobs: int = 20
    seed: int = 0
    temperature: float = 1.0
    min_answer_tokens: int = 24
    max_answer_tokens: int = 512
    #: why the plan is the provider's no-logprobs fallback although its profile has logprobs
    #: (e.g. the server returned none on the run's first rows; `clearapi.clear.probe`)
    fallback: str | None = None

    @classmethod
    def for_capabilities(cls, caps: Capabilities, *, samples: int = 4, seed: int = 0,
                         rating_samples: int = DEFAULT_RATING_SAMPLES,
                         best_answer: bool | None = None, demonstrations: int | None = None,
                         demo_sets: int | None = None) -> ScoringPlan:
        """The plan for a provider. `best_answer=None` asks the temperature-0 answer only where
        the provider can score given text: self-hosted engines (llama.cpp, vLLM), where a call
        costs time, not a bill. On a billed API with ``n`` it would take a row from 2 calls to
        3, so there the samples' medoid stands in unless asked (``--best-answer``).
        `demonstrations=None` follows the same rule: they lengthen every answer and scoring
        prompt, which is measured to help a small self-hosted model and would be billed
        elsewhere, so billed APIs get none unless asked (``--demonstrations K``).
        `demo_sets=None` follows it too: `DEFAULT_DEMO_SETS` draws of demonstrations per row where
        the provider scores given text (each draw adds a best answer and two scoring passes), one
        elsewhere (each would add calls to the bill)."""
        cls.check_counts(samples=samples, demonstrations=demonstrations, demo_sets=demo_sets)
        if rating_samples < 1:
            raise ConfigError(f"rating samples must be >= 1, got {rating_samples}")
        shown = (DEFAULT_DEMONSTRATIONS if caps.score_given_text else 0) if demonstrations is None else demonstrations
        if demo_sets is not None and demo_sets > 1 and not shown:
            raise ConfigError(f"{demo_sets} demonstration sets need demonstrations (--demonstrations K): "
                              "this run shows none")
        return cls(
            samples=samples,
            best_answer=caps.score_given_text if best_answer is None else best_answer,
            demonstrations=shown,
            demo_sets=(DEFAULT_DEMO_SETS if shown and caps.score_given_text else 1) if demo_sets is None
            else demo_sets,
            rating="logprobs" if caps.logprobs and caps.max_top_logprobs >= 2 else "sampled",
            rating_samples=rating_samples,
            likelihood=caps.score_given_text,
            n_per_call=caps.n and caps.max_n >= max(samples, rating_samples),
            answer_logprobs=caps.logprobs,
            top_logprobs=min(20, caps.max_top_logprobs),
            seed=seed,
        )

    @staticmethod
    def check_counts(*, samples: int, demonstrations: int | None, demo_sets: int | None) -> None:
        """Refuse counts no plan can have (None: the provider's default). `CurateOptions.check`
        calls it too, so a bad option fails before an engine or a local model is loaded."""
        if samples < 0:
            raise ConfigError(f"samples must be >= 0, got {samples}")
        if demonstrations is not None and demonstrations < 0:
            raise ConfigError(f"demonstrations must be >= 0, got {demonstrations}")
        if demo_sets is not None and demo_sets < 1:
            raise ConfigError(f"demo sets must be >= 1, got {demo_sets}")

    def answer_tokens(self, response: str) -> int:
        """Room for a sampled answer: about twice the response's length, within bounds."""
        estimate = 2 * math.ceil(len(response) / 4) + 16
        return max(self.min_answer_tokens, min(self.max_answer_tokens, estimate))

    def calls_per_row(self, sets: int | None = None) -> dict[str, int]:
        """Requests per row for scoring, by purpose (judgement calls are extra, per judged row).

        `sets`: the demonstration sets the row got (the plan's number if None; a row too long
        for them, or a small pool, gets fewer)."""
        sets = self.sets() if sets is None else sets
        calls = {"rating": 1 if self.rating == "logprobs" or self.n_per_call else self.rating_samples}
        if self.samples and self.best_answer:
            calls["best_answer"] = sets
        if self.samples:
            calls["answers"] = min(sets, self.samples) if self.n_per_call else self.samples
        if self.likelihood:
            calls["likelihood"] = 2 * sets
        return calls

    def judge_calls(self, *, likelihood: bool | None = None) -> tuple[int, int]:
        """Requests one judged row makes, (fewest, most), as the scorer's own judge sends them.

        By text (`judge`): both orders once; without logprobs, more verdicts are sampled per order
        (one call with ``n``, else one call each) only when both greedy verdicts prefer the candidate.
        By likelihood (None: where this plan scores given text; `clear.judge.likelihood_verdict`):
        y and y′, each conditioned and baseline, under each demonstration set the row gets (one at
        the fewest), and the text judgement after them if a pass comes back without logprobs."""
        extra = 0 if self.rating == "logprobs" else max(0, self.rating_samples - 1)
        text = (2, 2) if not extra else (2, 2 + 2 * (1 if self.n_per_call else extra))
        if self.likelihood if likelihood is None else likelihood:
            return 4, 4 * self.sets() + text[1]
        return text

    def sets(self) -> int:
        """Demonstration sets a row is asked under (at most; a short pool or a long row gets fewer)."""
        return max(1, self.demo_sets) if self.demonstrations else 1

    def samples_per_set(self, sets: int) -> list[int]:
        """The K samples spread over `sets` sets, the first sets taking the remainder."""
        return [self.samples // sets + (1 if i < self.samples % sets else 0) for i in range(sets)]

    def methods(self) -> dict[str, str]:
        """How each signal is obtained under this plan (for `Score.methods`)."""
        out = {"self_rating": "logprobs" if self.rating == "logprobs" else f"sampled x{self.rating_samples}"}
        if self.fallback:
            out["self_rating"] += " (fallback: no token logprobs)"
            out["logprobs"] = f"not used: {self.fallback}; the method's sampled fallback was used"
        if self.samples:
            many = self.sets() > 1 and self.best_answer
            answers = f"the {self.sets()} answers at T=0 (one per demonstration set)" if many else "the answer at T=0"
            if self.best_answer:
                out["consistency"] = (f"lexical agreement: half with {answers}, half with "
                                      f"{self.samples} samples at T={self.temperature:g}")
            else:
                out["consistency"] = f"{self.samples} samples at T={self.temperature:g}, lexical agreement"
            best = answers if self.best_answer else "the samples' medoid"
            if self.answer_logprobs:
                surest = "the surest of the answers at T=0" if many else best
                out["answer_confidence"] = f"logprobs of the model's own answer ({surest})"
            out["answer_agreement"] = f"agreement with the model's own answer ({best}), discounted by its " \
                                      "confidence" + (", averaged" if many else "")
        if self.demonstrations:
            out["demonstrations"] = f"up to {self.demonstrations} of the dataset's rows before each answer and " \
                                    "scoring prompt"
            if self.sets() > 1:
                out["demonstrations"] += (f", in up to {self.sets()} disjoint sets, each with its own answer at "
                                          "T=0 and scoring passes, averaged")
        if self.likelihood:
            out["likelihood"] = "teacher-forced"
            out["pmi"] = "teacher-forced, vs the prompt without its last part (question, or passage)"
            out["completeness"] = ("teacher-forced probability that y is finished: end of turn or a closing mark "
                                   "(a gate)")
        return out


@dataclass
class RowWork:
    """Requests and accounting for one row (calls are counted as they are answered)."""

    calls: int = 0
    api_calls: int = 0
    usage: Usage = field(default_factory=Usage)

    async def ask(self, engine: Chat, request: ChatRequest) -> ChatResponse:
        response = await engine.chat(request)
        self.calls += 1
        if not response.cached:
            self.api_calls += response.calls
        self.usage = self.usage + response.usage
        return response


# --- per-signal requests --------------------------------------------------------------------


def rating_request(plan: ScoringPlan, example: Example) -> ChatRequest:
    """The one-token self-rating request a logprobs plan sends for `example`."""
    return ChatRequest(messages=prompts.rating_messages(example.prompt_messages, example.response), max_tokens=1,
                       temperature=0.0, logprobs=True, top_logprobs=plan.top_logprobs, seed=plan.seed, tag="rating")


async def _self_rating(engine: Chat, work: RowWork, plan: ScoringPlan,
                       example: Example) -> tuple[float | None, dict[str, Any]]:
    messages = prompts.rating_messages(example.prompt_messages, example.response)
    if plan.rating == "logprobs":
        response = await work.ask(engine, rating_request(plan, example))
        choice = response.choices[0] if response.choices else None
        first = choice.logprobs[0] if choice is not None and choice.logprobs else None
        if first is None:
            return None, {"rating_text": response.text}
        pairs = [(t.token, t.logprob) for t in first.top] or [(first.token, first.logprob or 0.0)]
        probs = option_probabilities(pairs)
        if probs is None:
            return None, {"rating_text": response.text}
        got: dict[str, Any] = {"rating_probs": {k: round(v, 4) for k, v in probs.items()}}
        if len(first.top) < plan.top_logprobs and 0.0 in probs.values():  # cut short: renormalised
            got["rating_listed"] = len(first.top)
        return certainty(probs), got
    letters = await _sampled_letters(engine, work, plan, messages, ("A", "B", "C"), "rating")
    return rating_from_letters(letters), {"rating_letters": letters}


async def _sampled_letters(engine: Chat, work: RowWork, plan: ScoringPlan, messages: list[Any],
                           options: Sequence[str], tag: str, k: int | None = None) -> list[str | None]:
    k = plan.rating_samples if k is None else k
    if plan.n_per_call:
        response = await work.ask(engine, ChatRequest(messages=messages, max_tokens=3, temperature=1.0, n=k,
                                                      seed=plan.seed, tag=tag))
        texts = [c.text for c in response.choices]
    else:
        answers = await asyncio.gather(*(work.ask(engine, ChatRequest(
            messages=messages, max_tokens=3, temperature=1.0, seed=plan.seed, sample_index=i, tag=tag))
            for i in range(k)))
        texts = [a.text for a in answers]
    return [read_letter(t, options) for t in texts]


@dataclass(frozen=True)
class _Sample:
    text: str
    confidence: float | None


@dataclass(frozen=True)
class _Answer:
    """One of the model's own answers y′ (one per demonstration set), and how much the rest agree."""

    sample: _Sample
    #: mean agreement with the other answers and the samples (the medoid's: with the other samples)
    support: float

    @property
    def confidence(self) -> float:
        return _candidate_confidence(self.sample.confidence, self.support)


@dataclass(frozen=True)
class _Answers:
    best: list[_Answer]
    samples: list[_Sample]


async def _answers(engine: Chat, work: RowWork, plan: ScoringPlan, example: Example,
                   sets: Sequence[Sequence[Message]]) -> _Answers:
    """The best answer under each demonstration set, and the K samples spread over the sets."""
    if not plan.samples:
        return _Answers([], [])
    best_calls, sample_calls = [], []
    offset = 0
    for shown, k in zip(sets, plan.samples_per_set(len(sets)), strict=True):
        base = dict(messages=prompts.answer_messages(example.prompt_messages, shown),
                    max_tokens=plan.answer_tokens(example.response), logprobs=plan.answer_logprobs,
                    seed=plan.seed, tag="answers")
        if plan.best_answer:
            best_calls.append(work.ask(engine, ChatRequest(temperature=0.0, **base)))
        if k and plan.n_per_call:
            sample_calls.append(work.ask(engine, ChatRequest(n=k, sample_index=offset, temperature=plan.temperature,
                                                             **base)))
        elif k:
            sample_calls.extend(work.ask(engine, ChatRequest(sample_index=offset + i, temperature=plan.temperature,
                                                             **base)) for i in range(k))
        offset += k
    responses = await asyncio.gather(*best_calls, *sample_calls)
    samples = _samples_of(responses[len(best_calls):])
    if not plan.best_answer:
        if not samples:
            return _Answers([], [])
        i, support = _medoid(samples)
        return _Answers([_Answer(samples[i], support)] if samples[i].text else [], samples)
    bests = [b for b in _samples_of(responses[:len(best_calls)]) if b.text]
    out = []
    for i, b in enumerate(bests):
        others = [o.text for j, o in enumerate(bests) if j != i] + [s.text for s in samples]
        out.append(_Answer(b, sum(agreement(b.text, o) for o in others) / len(others) if others else 1.0))
    return _Answers(out, samples)


def _samples_of(responses: Sequence[ChatResponse]) -> list[_Sample]:
    out: list[_Sample] = []
    for response in responses:
        for choice in response.choices:
            text = choice.text.strip()
            conf = None
            if choice.logprobs:
                conf = geometric_mean_probability([t.logprob for t in choice.logprobs])
            out.append(_Sample(text, conf))
    return out


def _medoid(samples: Sequence[_Sample]) -> tuple[int, float]:
    """Index of the sample agreeing most with the others, and that mean agreement."""
    best, best_key = 0, (-1.0, -1.0)
    for i, s in enumerate(samples):
        others = [agreement(s.text, o.text) for j, o in enumerate(samples) if j != i]
        support = sum(others) / len(others) if others else 1.0
        key = (support, s.confidence if s.confidence is not None else 0.0)
        if s.text and key > best_key:
            best, best_key = i, key
    return best, max(0.0, best_key[0])


@dataclass(frozen=True)
class _Scored:
    cond: list[float | None]
    uncond: list[float | None]
    end_logprob: float | None


async def _likelihood(engine: Chat, work: RowWork, example: Example, demos: Sequence[Message]) -> _Scored:
    prompt, response = example.prompt_messages, example.response
    cond, uncond = await asyncio.gather(
        work.ask(engine, ChatRequest(messages=prompts.score_messages(prompt, response, demos),
                                     mode="score", logprobs=True, max_tokens=1, tag="likelihood")),
        work.ask(engine, ChatRequest(messages=prompts.baseline_messages(prompt, response, demos),
                                     mode="score", logprobs=True, max_tokens=1, tag="likelihood")),
    )

    def lps(r: ChatResponse) -> list[float | None]:
        choice = r.choices[0] if r.choices else None
        return [t.logprob for t in choice.logprobs] if choice is not None and choice.logprobs else []

    end = cond.choices[0].end_logprob if cond.choices else None
    return _Scored(lps(cond), lps(uncond), end)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return sum(known) / len(known) if known else None


# --- one row --------------------------------------------------------------------------------


async def score_example(engine: Chat, example: Example, plan: ScoringPlan, *, model: str = "",
                        demos: DemoPool | None = None) -> Score:
    """Every signal for one row, combined; no decision yet (that needs the run's threshold).

    The candidate answer for auto-correct travels typed in `Score.candidate` (and, for
    readers of scores.jsonl, in ``details["candidate*"]``) with its confidence and agreement
    with the response, so the decision pass needs no new calls to
    know whether a judgement is worth asking. `demos` (the run's pool, used when the plan
    asks for demonstrations) supplies the rows shown before the answer and scoring prompts.

    With several demonstration sets, each set gets its own best answer and scoring passes,
    and the signals average over them: which few rows a model is shown moves what a small
    model answers, and an answer it gives whichever rows it sees is one it knows. The
    candidate is the best answer the model is surest of.
    """
    work = RowWork()
    drawn = demos.sets_for(example, plan.demonstrations, plan.sets()) if demos is not None else (((), ()),)
    sets = [shown for shown, _ in drawn]
    rating_task = _self_rating(engine, work, plan, example)
    answers_task = _answers(engine, work, plan, example, sets)
    scored: list[_Scored] = []
    if plan.likelihood:
        (rating, rating_details), answers, *scored = await asyncio.gather(
            rating_task, answers_task, *(_likelihood(engine, work, example, shown) for shown in sets))
    else:
        (rating, rating_details), answers = await asyncio.gather(rating_task, answers_task)

    signals: dict[str, float | None] = {"self_rating": rating}
    details: dict[str, Any] = dict(rating_details)
    candidate: Candidate | None = None
    if any(lines for _, lines in drawn):
        details["demonstrations"] = sorted({line for _, lines in drawn for line in lines})
        if len(drawn) > 1:
            details["demonstration_sets"] = [list(lines) for _, lines in drawn]
    if plan.samples:
        texts = [s.text for s in answers.samples]
        # the medoid is one of the samples: it weighs in as y′ only when it is a separate answer
        references = [b.sample.text for b in answers.best] if plan.best_answer else []
        # answers compared on what they add to the prompt, not on the question's words they repeat
        signals["consistency"] = consistency_with(example.response, references, texts, CONSISTENCY_ALPHA,
                                                  prompt=example.prompt_text)
        if answers.best:
            agreements = [agreement(example.response, b.sample.text) for b in answers.best]
            i = max(range(len(answers.best)), key=lambda j: answers.best[j].confidence)
            best = answers.best[i]
            signals["answer_confidence"] = best.sample.confidence
            signals["answer_agreement"] = _mean([
                answer_agreement(focused_agreement(example.response, b.sample.text, example.prompt_text), b.confidence)
                for b in answers.best])
            if best.sample.text.strip():
                candidate = Candidate(best.sample.text, best.confidence, agreements[i])
            details["candidate"] = best.sample.text
            details["candidate_confidence"] = best.confidence
            details["candidate_agreement"] = agreements[i]
            if len(answers.best) > 1:
                details["candidates"] = [b.sample.text for b in answers.best]
        if texts:
            details["samples"] = texts
    if scored:
        pmis = [pmi_per_token(x.cond, x.uncond) for x in scored]
        lp = _mean([mean_logprob(x.cond) for x in scored])
        pmi = _mean(pmis)
        end = _mean([x.end_logprob for x in scored])
        signals["likelihood"] = None if lp is None else math.exp(lp)
        signals["pmi"] = None if pmi is None else logistic(pmi, scale=PMI_SCALE)
        signals["completeness"] = completeness(end)
        details["mean_logprob"] = lp
        details["pmi_nats_per_token"] = pmi
        details["end_logprob"] = end
        details["response_tokens"] = len(scored[0].cond)
        if len(scored) > 1:
            details["pmi_by_set"] = pmis
    copied = copy_ratio(example.response, example.prompt_text)
    signals["copy"] = None if copied is None else 1.0 - copied
    weights = weights_for(model, {k for k, v in signals.items() if v is not None})
    confidence = combine(signals, weights)
    details["weights"] = weights
    methods = plan.methods()
    if "rating_listed" in details:
        methods["self_rating"] += (f" (renormalised over the {details['rating_listed']} alternatives "
                                   f"the server listed of {plan.top_logprobs} asked)")
    return Score(
        line=example.line, id=example.id, prompt=example.prompt_text, response=example.response,
        confidence=confidence, signals=signals, methods=methods, details=details, candidate=candidate,
        calls=work.calls, tokens=work.usage.total_tokens,
    )


def _candidate_confidence(token_confidence: float | None, support: float) -> float:
    """How sure the model is of y′: its token probability and how many samples agree with it.

    Without logprobs only the vote is known. The mean keeps a fluent but lonely sample
    (high token probability, no support) and a popular but hesitant one both below a
    strict gate.
    """
    if token_confidence is None:
        return min(1.0, max(0.0, support))
    return min(1.0, max(0.0, 0.5 * token_confidence + 0.5 * support))


async def judge(engine: Chat, plan: ScoringPlan, example: Example, candidate: str,
                work: RowWork | None = None) -> Judgement:
    """Ask the pairwise judge in both orders; P(candidate preferred) for each order.

    With logprobs that is one ``max_tokens=1`` call per order. Without, each order is first
    asked once at temperature 0; only if *both* greedy verdicts prefer the candidate (else
    the both-orders rule has already failed) are more verdicts sampled to measure how sure
    the judge is. Most judged rows therefore cost 2 calls, not 2 × the rating samples.
    """
    work = work or RowWork()
    y = example.response
    orders = [(prompts.pairwise_messages(example.prompt_messages, y, candidate), "B"),
              (prompts.pairwise_messages(example.prompt_messages, candidate, y), "A")]
    if plan.rating == "logprobs":
        second, first = await asyncio.gather(*(_prefers(engine, work, plan, m, letter) for m, letter in orders))
        return Judgement(candidate_second=second, candidate_first=first)
    greedy = await asyncio.gather(*(_greedy_letter(engine, work, plan, m) for m, _ in orders))
    if any(g != letter for g, (_, letter) in zip(greedy, orders, strict=True)):
        return Judgement(candidate_second=1.0 if greedy[0] == "B" else 0.0,
                         candidate_first=1.0 if greedy[1] == "A" else 0.0)
    extra = max(0, plan.rating_samples - 1)
    if not extra:
        return Judgement(candidate_second=1.0, candidate_first=1.0)
    sampled = await asyncio.gather(*(
        _sampled_letters(engine, work, plan, m, ("A", "B"), "judge", k=extra) for m, _ in orders))
    shares = []
    for letters, (_, letter) in zip(sampled, orders, strict=True):
        read = [x for x in letters if x is not None]
        shares.append((1 + sum(1 for x in read if x == letter)) / (1 + len(read)))
    return Judgement(candidate_second=shares[0], candidate_first=shares[1])


async def _greedy_letter(engine: Chat, work: RowWork, plan: ScoringPlan, messages: list[Any]) -> str | None:
    response = await work.ask(engine, ChatRequest(messages=messages, max_tokens=3, temperature=0.0,
                                                  seed=plan.seed, tag="judge"))
    return read_letter(response.text, ("A", "B"))


async def _prefers(engine: Chat, work: RowWork, plan: ScoringPlan, messages: list[Any], letter: str) -> float:
    response = await work.ask(engine, ChatRequest(
        messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=plan.top_logprobs,
        seed=plan.seed, tag="judge"))
    choice = response.choices[0] if response.choices else None
    first = choice.logprobs[0] if choice is not None and choice.logprobs else None
    if first is not None:
        pairs = [(t.token, t.logprob) for t in first.top] or [(first.token, first.logprob or 0.0)]
        probs = option_probabilities(pairs, ("A", "B"))
        if probs is not None:
            return probs[letter]
    return 1.0 if read_letter(response.text, ("A", "B")) == letter else 0.0
