"""The auto-correct judge: is the model's answer y′ better than the dataset's y? With its bias removed.

Two kinds of judge, each returning a `Verdict` that keeps everything a person needs to
check it (both orders, the bias, the preference the decision used):

* **text** (any chat model, the scorer or a separate ``--judge-provider``): CLEAR's pairwise
  prompt, asked with y′ second and with y′ first. A judge with a position bias b (its
  pull towards answer A, in log-odds) reports logit P(y′ | y′ first) = s + b and
  logit P(y′ | y′ second) = s − b; the verdict removes b and keeps s, the preference both
  orders agree on: ``preference = σ(s)``, ``bias = b``. For an unbiased judge this is the
  both-orders rule; for SmolLM2-135M, whose verdicts follow the position (0.6–0.8 first,
  0.25–0.35 second), it is what is left once the position is taken out.
* **likelihood** (a model that scores given text: the local model, vLLM): no verdict text at
  all. Under each demonstration set the row was scored with, y′ and y are teacher-forced
  after the prompt and after the prompt without its last part; each gets PMI = mean
  log P(· | x) − mean log P(· | baseline). y′ is the model's own greedy answer, so its raw
  likelihood is inflated by how the model likes to talk; PMI removes that (the "bias"
  recorded is y′'s likelihood gain over y that PMI takes out). The preference under each
  set is σ((PMI(y′) − PMI(y)) / `PMI_MARGIN_SCALE`), and each set plays the part of one
  order: the correction needs every set to prefer y′.

A panel is several text judges; the correction needs ``majority`` of them (all by default)
to prefer y′ at η. `panel_judgement` folds the verdicts into the policy's `Judgement`, so
`clearapi.clear.policy.decide` applies η unchanged.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from clearapi.clear import prompts
from clearapi.clear.pipeline import Chat, RowWork, ScoringPlan, judge
from clearapi.clear.policy import Judgement
from clearapi.clear.signals import logistic, mean_logprob
from clearapi.errors import ConfigError
from clearapi.records import ChatRequest, ChatResponse, Example, Message

__all__ = [
    "LIKELIHOOD_CORRECT_THRESHOLD",
    "PMI_MARGIN_SCALE",
    "JudgeSpec",
    "Verdict",
    "likelihood_verdict",
    "panel_judgement",
    "text_verdict",
]

#: nats per token of PMI(y′) − PMI(y) that count as one unit of log-odds for the likelihood judge:
#: with η = 0.8 (log-odds ln 4) y′ must gain at least 0.5 nats/token of PMI under every demonstration set
#: (chosen on examples/factual: every clean row's candidate had a negative margin in some set)
PMI_MARGIN_SCALE = 0.5 / math.log(4.0)
#: the candidate-confidence gate before the likelihood judge (the text judge keeps the policy's 0.6):
#: a PMI margin is a stronger check than a verdict, and a small model's right answers are often hesitant
LIKELIHOOD_CORRECT_THRESHOLD = 0.3
#: probabilities are clipped to this distance from 0 and 1 before taking log-odds
_EPS = 1e-4


@dataclass(frozen=True)
class JudgeSpec:
    """A judge model other than the scorer: a provider profile, a model, an optional base URL."""

    provider: str
    model: str | None = None
    base_url: str | None = None

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider


@dataclass
class Verdict:
    """One judge's say on one row: both orders (or sets), the bias it removed, its preference."""

    judge: str
    method: Literal["text", "likelihood"]
    #: text: P(y′ preferred) with y′ shown second (as B) and first (as A); likelihood: the
    #: preference under each demonstration set
    orders: list[float]
    #: text: position bias in log-odds (its pull towards answer A); likelihood: mean nats/token
    #: that y′'s raw likelihood gains over y's and that PMI takes out
    bias: float
    #: the debiased preference for y′ in each order, in [0, 1] (η applies to the weakest)
    preferences: list[float]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def preference(self) -> float:
        return min(self.preferences)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preference"] = self.preference
        return out


def _logit(p: float) -> float:
    p = min(1.0 - _EPS, max(_EPS, p))
    return math.log(p / (1.0 - p))


def debias_orders(candidate_second: float, candidate_first: float) -> tuple[float, float]:
    """(bias, preference) from a pairwise judge's two orders, in log-odds: bias is the pull
    towards position A, preference what is left of the verdict once it is removed."""
    a, b = _logit(candidate_first), _logit(candidate_second)
    return (a - b) / 2, logistic((a + b) / 2)


async def text_verdict(engine: Chat, plan: ScoringPlan, example: Example, candidate: str, *, name: str,
                       work: RowWork | None = None) -> Verdict:
    """The pairwise judge in both orders (`clearapi.clear.pipeline.judge`), position bias removed."""
    raw = await judge(engine, plan, example, candidate, work)
    bias, preference = debias_orders(raw.candidate_second, raw.candidate_first)
    return Verdict(judge=name, method="text", orders=[raw.candidate_second, raw.candidate_first],
                   bias=round(bias, 4), preferences=[preference, preference])


async def _scored(engine: Chat, work: RowWork, messages: list[Message]) -> list[float | None]:
    response: ChatResponse = await work.ask(engine, ChatRequest(messages=messages, mode="score", logprobs=True,
                                                                max_tokens=1, tag="likelihood"))
    choice = response.choices[0] if response.choices else None
    return [t.logprob for t in choice.logprobs] if choice is not None and choice.logprobs else []


async def likelihood_verdict(engine: Chat, example: Example, candidate: str,
                             sets: Sequence[Sequence[Message]], *, name: str,
                             work: RowWork | None = None) -> Verdict | None:
    """y′ against y by PMI under each demonstration set (teacher-forced; y's passes are the scoring
    pass's own requests, so they come from the cache). None when a pass returns no logprobs."""
    work = work or RowWork()
    prompt = example.prompt_messages
    sets = list(sets) or [()]
    texts = (example.response, candidate)
    passes = await asyncio.gather(*(
        _scored(engine, work, build(prompt, text, shown))
        for shown in sets for text in texts
        for build in (prompts.score_messages, prompts.baseline_messages)))
    per_set: list[dict[str, float]] = []
    for i in range(len(sets)):
        y_cond, y_base, c_cond, c_base = passes[4 * i:4 * i + 4]
        values = [mean_logprob(x) for x in (y_cond, y_base, c_cond, c_base)]
        if any(v is None for v in values):
            return None
        lp_y, base_y, lp_c, base_c = (float(v) for v in values if v is not None)
        per_set.append({"logprob_response": lp_y, "logprob_candidate": lp_c, "pmi_response": lp_y - base_y,
                        "pmi_candidate": lp_c - base_c})
    margins = [s["pmi_candidate"] - s["pmi_response"] for s in per_set]
    raw = [s["logprob_candidate"] - s["logprob_response"] for s in per_set]
    preferences = [logistic(m / PMI_MARGIN_SCALE) for m in margins]
    return Verdict(judge=name, method="likelihood", orders=[round(p, 4) for p in preferences],
                   bias=round(sum(r - m for r, m in zip(raw, margins, strict=True)) / len(raw), 4),
                   preferences=preferences,
                   details={"pmi_margin": [round(m, 4) for m in margins],
                            "per_set": [{k: round(v, 4) for k, v in s.items()} for s in per_set]})


def panel_judgement(verdicts: Sequence[Verdict], majority: int | None = None) -> Judgement:
    """The panel's judgement for `policy.decide`: the `majority`-th strongest debiased preference
    (all judges by default), so "preference >= η" reads "at least `majority` judges prefer y′ at η
    in every order"."""
    if not verdicts:
        raise ConfigError("a judgement needs at least one verdict")
    need = len(verdicts) if majority is None else majority
    if not 1 <= need <= len(verdicts):
        raise ConfigError(f"judge majority must be between 1 and {len(verdicts)}, got {need}")
    ranked = sorted((v.preference for v in verdicts), reverse=True)
    value = ranked[need - 1]
    return Judgement(candidate_second=value, candidate_first=value)


@dataclass
class Panel:
    """Who judges a run's candidates: separate judges (each its own engine and plan), else the scorer.

    Without separate judges, a scorer that scores given text judges by likelihood (its text
    verdicts are position-bound on small models); any other scorer asks the text judge."""

    judges: list[tuple[str, Chat, ScoringPlan]] = field(default_factory=list)
    majority: int | None = None

    async def verdicts(self, scorer: Chat, plan: ScoringPlan, example: Example, candidate: str,
                       sets: Sequence[Sequence[Message]], scorer_work: RowWork,
                       judge_work: RowWork) -> list[Verdict]:
        """Every judge's verdict (scorer calls count in `scorer_work`, separate judges' in `judge_work`)."""
        if self.judges:
            return list(await asyncio.gather(*(
                text_verdict(engine, jplan, example, candidate, name=name, work=judge_work)
                for name, engine, jplan in self.judges)))
        if plan.likelihood:
            verdict = await likelihood_verdict(scorer, example, candidate, sets, name="scorer",
                                               work=scorer_work)
            if verdict is not None:
                return [verdict]
        return [await text_verdict(scorer, plan, example, candidate, name="scorer", work=scorer_work)]
