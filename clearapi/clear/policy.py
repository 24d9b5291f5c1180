"""Turning a row's confidence into keep / drop / correct, with the reason written down.

The rules (CLEAR's auto-filter and auto-correct, made conservative):

* confidence >= threshold: **keep**.
* below it, with ``action="filter"``: **drop**.
* below it, with ``action="correct"`` or ``"both"``: replace the response by the model's own
  answer y′ only if every gate passes, in this order (the first that fails is the reason):

  1. there is a candidate y′ and it says something different from y (agreement below
     `same_answer`); correcting y into itself would change nothing;
  2. y′'s own confidence >= ``correct_threshold``;
  3. the pairwise judge prefers y′ over y in **both** orders (position bias: small models
     tend to pick whichever answer comes first, or second), and the weaker of the two
     preferences is >= ``eta`` (0.8, CLEAR's value).

  A row that fails a gate is dropped (``both``) or kept as it was (``correct``).

Defaults. The cut is absolute, 0.5 ("below even odds that the response is right"), not the
paper's dataset median: a user expects a clean file to stay (nearly) whole, and the median
drops half of any file however good it is. ``--filter-fraction 0.5`` gives the paper's rule.
A candidate needs confidence 0.6 (token probability and sample agreement averaged, see
`clearapi.clear.pipeline`) before a judge is even asked: on SmolLM2-135M that gate plus the
judge refused every correction on both example sets, the right outcome for a judge whose
preferences sit near 0.5 and flip with the order of the answers.

Taking the *weaker* order as the judgement's confidence is stricter than averaging: a
judge that prefers y′ strongly in one order and weakly in the other is mostly showing
position bias. This matches the asymmetry of the job: a clean row damaged by a wrong
"correction" poisons training data, a bad row left uncorrected is only dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from clearapi.errors import ConfigError
from clearapi.records import Candidate, Decision

__all__ = [
    "DEFAULT_CORRECT_THRESHOLD",
    "DEFAULT_ETA",
    "DEFAULT_THRESHOLD",
    "SAME_ANSWER",
    "Candidate",
    "CurationAction",
    "Judgement",
    "PolicySettings",
    "decide",
    "fraction_threshold",
    "needs_judgement",
]

CurationAction = Literal["filter", "correct", "both"]

#: default absolute cut: below even odds that the response is right
DEFAULT_THRESHOLD = 0.5
#: default confidence a candidate answer needs before it may replace a response
DEFAULT_CORRECT_THRESHOLD = 0.6
#: CLEAR's η: confidence the pairwise judgement needs (here: in its weaker order)
DEFAULT_ETA = 0.8
#: agreement at or above which the candidate counts as the same answer as the response
SAME_ANSWER = 0.8


@dataclass(frozen=True)
class PolicySettings:
    action: CurationAction = "both"
    correct_threshold: float = DEFAULT_CORRECT_THRESHOLD
    eta: float = DEFAULT_ETA
    same_answer: float = SAME_ANSWER

    def __post_init__(self) -> None:
        if self.action not in ("filter", "correct", "both"):
            raise ConfigError(f"action must be filter, correct or both, got {self.action!r}")
        for name in ("correct_threshold", "eta", "same_answer"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")

    @property
    def corrects(self) -> bool:
        return self.action in ("correct", "both")


@dataclass(frozen=True)
class Judgement:
    """P(judge prefers the candidate) with the candidate shown second, and shown first."""

    candidate_second: float
    candidate_first: float

    @property
    def wins_both(self) -> bool:
        return self.candidate_second > 0.5 and self.candidate_first > 0.5

    @property
    def confidence(self) -> float:
        """The weaker of the two orders' preference for the candidate."""
        return min(self.candidate_second, self.candidate_first)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _below(confidence: float, threshold: float) -> str:
    return f"confidence {_fmt(confidence)} < threshold {_fmt(threshold)}"


def _candidate_gate(candidate: Candidate | None, settings: PolicySettings) -> str | None:
    """Why the candidate cannot be used before any judgement is asked, or None if it may be."""
    if candidate is None or not candidate.text.strip():
        return "no candidate answer from the model"
    if candidate.agreement >= settings.same_answer:
        return f"the model's answer agrees with the response (agreement {_fmt(candidate.agreement)})"
    if candidate.confidence < settings.correct_threshold:
        return (f"candidate confidence {_fmt(candidate.confidence)} < correct threshold "
                f"{_fmt(settings.correct_threshold)}")
    return None


def needs_judgement(confidence: float | None, threshold: float, candidate: Candidate | None,
                    settings: PolicySettings) -> bool:
    """Whether asking the pairwise judge could change this row's decision (else skip the calls)."""
    if not settings.corrects or confidence is None or confidence >= threshold:
        return False
    return _candidate_gate(candidate, settings) is None


def decide(confidence: float | None, threshold: float, settings: PolicySettings, *,
           candidate: Candidate | None = None, judgement: Judgement | None = None,
           judgement_error: str | None = None) -> Decision:
    """The decision for one row and a reason a person can check against the numbers."""
    if confidence is None:
        # No signal at all: keeping is the conservative choice, and it says so.
        return Decision(action="keep", reason="no confidence could be computed; kept unchanged")
    if confidence >= threshold:
        return Decision(action="keep", reason=f"confidence {_fmt(confidence)} >= threshold {_fmt(threshold)}")
    below = _below(confidence, threshold)
    fallback: Literal["drop", "keep"] = "keep" if settings.action == "correct" else "drop"
    if not settings.corrects:
        return Decision(action="drop", reason=below)
    then = "kept unchanged" if fallback == "keep" else "dropped"
    gate = _candidate_gate(candidate, settings)
    if gate is not None:
        return Decision(action=fallback, reason=f"{below}; not corrected: {gate}; {then}")
    assert candidate is not None
    if judgement is None:
        why = judgement_error or "pairwise judgement not available"
        return Decision(action=fallback, reason=f"{below}; not corrected: {why}; {then}")
    orders = f"({_fmt(judgement.candidate_second)} as B, {_fmt(judgement.candidate_first)} as A)"
    if not judgement.wins_both:
        return Decision(action=fallback,
                        reason=f"{below}; not corrected: the judge did not prefer the candidate in both "
                               f"orders {orders}; {then}")
    if judgement.confidence < settings.eta:
        return Decision(action=fallback,
                        reason=f"{below}; not corrected: pairwise judgement {_fmt(judgement.confidence)} < "
                               f"eta {_fmt(settings.eta)} {orders}; {then}")
    return Decision(
        action="correct",
        correction=candidate.text,
        reason=(f"{below}; corrected: candidate confidence {_fmt(candidate.confidence)} >= "
                f"{_fmt(settings.correct_threshold)} and preferred in both orders {orders} >= eta "
                f"{_fmt(settings.eta)}"),
    )


def fraction_threshold(confidences: Sequence[float], fraction: float) -> float:
    """The cut that drops the lowest `fraction` of rows: the smallest confidence to keep.

    Rows strictly below the returned value fall under the threshold: at most
    ``floor(fraction * n)`` of them, exactly that many when confidences are distinct (rows
    tied at the cut are all kept). ``fraction=0`` keeps everything, ``1`` cuts everything.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"filter fraction must be in [0, 1], got {fraction}")
    if not confidences:
        return 0.0
    ordered = sorted(confidences)
    k = math.floor(fraction * len(ordered) + 1e-9)
    if k <= 0:
        return 0.0
    if k >= len(ordered):
        return math.nextafter(ordered[-1], math.inf)
    return ordered[k]
