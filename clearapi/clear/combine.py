"""One confidence per row from several signals, without letting a weak signal drown a strong one.

Rule: a **weighted logarithmic opinion pool** — each signal in [0, 1] is read as a
probability that the response is right, turned into log-odds (clipped to [0.02, 0.98] so one
signal cannot veto), averaged with per-model weights, and mapped back:

    confidence = σ( Σ wᵢ · logit(sᵢ) / Σ wᵢ )      over the signals present

Why this shape:

* a signal sitting near 0.5 ("no idea") adds almost nothing in log-odds, while a decisive
  one moves the result; in a plain weighted mean an undecided signal pulls every row toward
  the middle and hides the decisive ones;
* a signal that is constant across rows (a small model that answers "A" to every rating)
  shifts every row alike, so it cannot reorder them;
* weights are *per model*, because what a signal is worth depends on the model that gives
  it: measured weights for the models we could measure, and a conservative default that
  follows BSDetector (observed consistency 0.7, self-reflection 0.3) for the rest;
* missing signals (no logprobs, no scoring endpoint) drop out and the weights renormalise,
  so a row's confidence is always on the same [0, 1] scale.

**Gates** multiply instead of pooling. ``completeness`` (the model's probability that the
response ends where it does) says nothing about whether a finished answer is right, and a
response cut off mid-sentence is bad however right its words are; so the pooled confidence
is multiplied by it — "complete *and* right" — rather than averaged with it, where its
near-1 value on every ordinary row would only dilute the other signals. It sits near 1 for
every ending a model finds plausible, so it moves only the rows it is sure about.

    confidence = σ( Σ wᵢ · logit(sᵢ) / Σ wᵢ ) · Π gates

The weights are in `WEIGHTS`; the figures behind them are in docs/method.md and
`bench/quality.py` recomputes them.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping

__all__ = ["CLIP", "DEFAULT_WEIGHTS", "GATES", "WEIGHTS", "combine", "logit", "weights_for"]

CLIP = 0.02

#: signals that multiply the pooled confidence instead of joining the pool (see above)
GATES: frozenset[str] = frozenset({"completeness"})

#: signal weights when no table below matches the model (BSDetector's β = 0.7 / 0.3, plus
#: a modest share for likelihood signals where a provider can score given text)
DEFAULT_WEIGHTS: dict[str, float] = {
    "consistency": 0.5,
    "self_rating": 0.3,
    "answer_agreement": 0.0,
    "answer_confidence": 0.0,
    "likelihood": 0.1,
    "pmi": 0.1,
}

#: measured per-model tables, matched on the model name (glob, case-insensitive)
WEIGHTS: dict[str, dict[str, float]] = {
    # SmolLM2-135M-Instruct: the signals that separate bad rows share the weight (figures: docs/method.md)
    "*smollm2-135m*": {
        "pmi": 0.4,
        "consistency": 0.4,
        "answer_agreement": 0.4,
        "self_rating": 0.2,
        "likelihood": 0.0,
        "answer_confidence": 0.0,
    },
}


def weights_for(model: str, available: Iterable[str] | None = None) -> dict[str, float]:
    """The weight table for `model`, restricted to the `available` signals (all if None)."""
    name = (model or "").lower()
    table = DEFAULT_WEIGHTS
    for pattern in sorted(WEIGHTS, key=len, reverse=True):
        if fnmatch.fnmatchcase(name, pattern.lower()):
            table = WEIGHTS[pattern]
            break
    keep = set(available) if available is not None else set(table)
    return {k: w for k, w in table.items() if k in keep and w > 0 and k not in GATES}


def logit(p: float, clip: float = CLIP) -> float:
    p = min(1.0 - clip, max(clip, p))
    return math.log(p / (1.0 - p))


def combine(signals: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """The pooled confidence times the gates present, in [0, 1]; None without a weighted signal."""
    total = 0.0
    acc = 0.0
    for name, w in weights.items():
        value = signals.get(name)
        if name in GATES or value is None or w <= 0 or not math.isfinite(value):
            continue
        acc += w * logit(value)
        total += w
    if total <= 0:
        return None
    z = acc / total
    pooled = 1.0 / (1.0 + math.exp(-z))
    for gate in GATES:
        value = signals.get(gate)
        if value is not None and math.isfinite(value):
            pooled *= min(1.0, max(0.0, value))
    return pooled
