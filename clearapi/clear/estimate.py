"""What a curate run will cost before it makes a call (``--dry-run``).

The file is streamed once; each row's requests are built the way the pipeline would build
them and their tokens estimated at four characters a token (plus a few per message), the
same rule the engine uses to reserve rate-limit capacity. Completion tokens: 1 for a
rating, the answer budget for the best answer and each sample (an upper bound: sampling
stops at the end of the answer), none for teacher-forced scoring. Pairwise judgements are only asked for rows
below the threshold whose candidate passes the gates, which is unknown before scoring: the
estimate gives the worst case (every row below the cut judged; with ``--filter-fraction F``
only that share of rows can be below it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from clearapi.clear import prompts
from clearapi.clear.demos import DemoPool
from clearapi.clear.pipeline import ScoringPlan
from clearapi.engine.budget import prompt_tokens_estimate
from clearapi.profiles import Price
from clearapi.records import Example, Message, Reject

__all__ = ["Estimate", "estimate_run", "tokens_of"]


def tokens_of(messages: Iterable[Message]) -> int:
    """The engine's reservation estimate for these messages, rounded up."""
    return math.ceil(prompt_tokens_estimate(list(messages)))


@dataclass
class Estimate:
    provider: str
    model: str
    rows: int = 0
    rejected: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judgement_calls_max: int = 0
    judgement_calls_per_row: tuple[int, int] = (2, 2)
    judgement_tokens_max: int = 0
    cost_usd: float | None = 0.0
    cost_usd_max: float | None = 0.0
    #: separate judges (``--judge-provider``), each priced at its own model's price
    judges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scoring_calls(self) -> int:
        return sum(self.calls.values())

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scoring_calls"] = self.scoring_calls
        return out

    def describe(self) -> str:
        examples = self.rows - self.rejected
        per_row = self.scoring_calls / examples if examples else 0.0
        cost = "unknown (no price in the profile)" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        cost_max = "" if self.cost_usd_max is None or self.judges else \
            f" (up to ${self.cost_usd_max:.4f} with every judgement)"
        parts = ", ".join(f"{k} {v}" for k, v in self.calls.items())
        return "\n".join([
            f"dry run: {self.provider} / {self.model}: no call was made",
            f"rows: {self.rows} ({self.rejected} would be rejected by the reader, {examples} scored)",
            f"scoring calls: {self.scoring_calls} ({parts}); {per_row:.2f} per row",
            "pairwise judgements: by the separate judges below (only rows below the threshold whose "
            "candidate passes the gates)" if self.judges else
            f"pairwise judgement calls: 0 to {self.judgement_calls_max} (only rows below the threshold "
            f"whose candidate passes the gates; {self.judgement_calls_per_row[0]} to "
            f"{self.judgement_calls_per_row[1]} per judged row)",
            f"tokens: ~{self.prompt_tokens} prompt + ~{self.completion_tokens} completion for scoring"
            + ("" if self.judges else f", up to ~{self.judgement_tokens_max} more for judgements"),
            f"cost: {cost}{cost_max}",
            *(f"judge {j['provider']} / {j['model']}: 0 to {j['calls_max']} calls ({j['calls_per_row'][0]} to "
              f"{j['calls_per_row'][1]} per judged row), up to ~{j['tokens_max']} tokens, up to "
              + ("an unknown cost" if j["cost_usd_max"] is None else f"${j['cost_usd_max']:.4f}")
              for j in self.judges),
        ])

    def add_judge(self, provider: str, model: str, price: Price | None,
                  calls_per_row: tuple[int, int] | None = None) -> None:
        """Move the judgements to a separate judge: priced at its model, not the scorer's, and counted
        by its own plan (`calls_per_row`: a judge without logprobs samples more verdicts per order)."""
        calls, tokens = self.judgement_calls_max, self.judgement_tokens_max
        per_judged = self.judgement_calls_per_row[1]
        if calls_per_row is not None and per_judged:
            calls = calls // per_judged * calls_per_row[1]
            tokens = math.ceil(tokens * calls_per_row[1] / per_judged)
        self.judges.append({"provider": provider, "model": model, "calls_max": calls, "tokens_max": tokens,
                            "calls_per_row": list(calls_per_row or self.judgement_calls_per_row),
                            "cost_usd_max": _cost(price, tokens, calls)})
        self.cost_usd_max = self.cost_usd


def _cost(price: Price | None, prompt: int, completion: int) -> float | None:
    if price is None:
        return None
    return (prompt * price.input + completion * price.output) / 1_000_000


def estimate_run(items: Iterable[Example | Reject], plan: ScoringPlan, price: Price | None, *, action: str,
                 filter_fraction: float | None, provider: str, model: str,
                 demos: DemoPool | None = None, separate_judge: bool = False) -> Estimate:
    est = Estimate(provider=provider, model=model)
    judge_tokens = 0
    # a separate judge judges by text; the scorer itself by likelihood where it scores given text
    est.judgement_calls_per_row = plan.judge_calls(likelihood=plan.likelihood and not separate_judge)
    per_judged = est.judgement_calls_per_row[1]
    for item in items:
        est.rows += 1
        if isinstance(item, Reject):
            est.rejected += 1
            continue
        prompt = item.prompt_messages
        sets = [shown for shown, _ in demos.sets_for(item, plan.demonstrations, plan.sets())] if demos is not None \
            else [()]
        per_call = plan.calls_per_row(len(sets))
        for purpose, n in per_call.items():
            est.calls[purpose] = est.calls.get(purpose, 0) + n
        rating = tokens_of(prompts.rating_messages(prompt, item.response))
        ratings = 1 if plan.rating == "logprobs" else plan.rating_samples
        est.prompt_tokens += rating * per_call["rating"]
        est.completion_tokens += ratings * (1 if plan.rating == "logprobs" else 3)
        for shown, k in zip(sets, plan.samples_per_set(len(sets)), strict=True):
            if plan.samples:
                best = 1 if plan.best_answer else 0
                calls = best + ((1 if k else 0) if plan.n_per_call else k)
                est.prompt_tokens += tokens_of(prompts.answer_messages(prompt, shown)) * calls
                est.completion_tokens += (k + best) * plan.answer_tokens(item.response)
            if plan.likelihood:
                est.prompt_tokens += tokens_of(prompts.score_messages(prompt, item.response, shown))
                est.prompt_tokens += tokens_of(prompts.baseline_messages(prompt, item.response, shown))
        if action != "filter" and plan.samples:
            candidate = " " * (4 * plan.answer_tokens(item.response) // 2)
            judge_tokens += per_judged * (tokens_of(prompts.pairwise_messages(prompt, item.response, candidate)) + 1)
    examples = est.rows - est.rejected
    share = 1.0 if filter_fraction is None else filter_fraction
    if action != "filter" and plan.samples:
        est.judgement_calls_max = per_judged * math.ceil(share * examples)
        est.judgement_tokens_max = math.ceil(share * judge_tokens)
    est.cost_usd = _cost(price, est.prompt_tokens, est.completion_tokens)
    est.cost_usd_max = _cost(price, est.prompt_tokens + est.judgement_tokens_max, est.completion_tokens
                             + est.judgement_calls_max)
    return est
