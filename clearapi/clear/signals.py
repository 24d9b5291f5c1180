"""The maths of CLEAR's confidence signals: pure functions, no I/O, no model calls.

Every signal is a number in [0, 1] where higher means "the dataset's response looks right",
or None when it could not be computed (the provider has no logprobs, the call failed).
Raw quantities (mean log-probabilities, option masses) are kept alongside in
`Score.details` so a reader can recompute or re-weight.

Signals
-------
``self_rating``
    The model is shown the prompt and the response and asked (A) correct (B) incorrect
    (C) not sure, with ``max_tokens=1``. From the first token's top logprobs, the
    probability mass of every variant of each letter (``"A"``, ``" A"``, ``"a"``, ``"(A"``)
    is summed and renormalised over the three options; certainty = P(A) + 0.5·P(C). This is
    BSDetector's A=1, B=0, C=0.5 scale made continuous. Without logprobs the same prompt is
    sampled and the letters counted (`rating_from_letters`).
``consistency``
    BSDetector's observed consistency: mean over the model's own answers of
    α·agreement + (1-α)·exact-match, α = 0.8 (the open implementation's value), agreement
    from `clearapi.clear.similarity` on the words each answer adds to the prompt
    (`focused_agreement`), so "The capital of England is Copenhagen." and "... London." agree
    on nothing rather than on five words of six. Half of it is agreement with the model's best answers
    y′ (temperature 0; one per demonstration set), half the mean over K samples at
    temperature 1: a small model's samples wander, and its modal answer is the one that
    knows most; the halves together separate bad rows better than either (docs/method.md).
``answer_confidence``
    How sure the model is of *its own* answer y′: geometric-mean token probability from
    the returned logprobs. Used to gate auto-correct, and to tell how much a disagreement
    between y and y′ means.
``answer_agreement``
    Agreement of y with the model's own answer y′ on the words each adds to the prompt
    (`focused_agreement`), discounted by how sure the model is of
    y′: 1 − (1 − agreement(y, y′)) · confidence(y′), with y′'s confidence as for
    auto-correct (token probability and the samples' support). A disagreement with a
    hesitant y′ means little; with a confident one it is the strongest evidence a small
    model has that y is wrong — CLEAR's reason for gating corrections on y′'s confidence,
    used here for scoring too. With one y′ per demonstration set, the mean over them.
``completeness``
    The model's probability that the response is *finished* where it ends: the chat
    template's end-of-turn token next, or a sentence-closing mark (". ! ?", quotes or
    brackets around it allowed), read from the same teacher-forced pass as ``likelihood``.
    The closing mark counts because a small model rarely ends a turn without one: after a
    bare "William Shakespeare" the end of turn alone is e^-20, with the full stop e^-1.5.
    Mapped by a logistic centred at −11 nats with a 1-nat scale, between where clean and
    cut-off answers fall (docs/method.md). A gate, not a vote (`clearapi.clear.combine`).
``likelihood``
    Geometric-mean token probability of the dataset response y itself under the prompt
    (teacher forcing; only providers that can score given text, i.e. the local model).
``pmi``
    Pointwise mutual information per token: mean log P(y | x) − mean log P(y | baseline),
    squashed to [0, 1] by a logistic. The baseline is the prompt without its last part: the
    question after a passage, or the passage after an instruction
    (`clearapi.clear.prompts.baseline_prompt`). It asks whether that part makes y *more*
    likely, which plain likelihood cannot: short generic text, a response that belongs to
    another row and a sentence copied from the passage are likely without it.

``copy``
    1 − the longest run of y's tokens found verbatim in the prompt over y's length
    (`copy_ratio`): near 0 for a response that *is* a sentence of the passage. No call.
    Recorded, not yet weighted.

How they are combined lives in `clearapi.clear.combine`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from clearapi.clear.similarity import STOP_WORDS, agreement, exact_match, tokens

__all__ = [
    "CONSISTENCY_ALPHA",
    "SIGNAL_NAMES",
    "answer_agreement",
    "answer_tokens",
    "certainty",
    "completeness",
    "consistency_with",
    "copy_ratio",
    "focused_agreement",
    "geometric_mean_probability",
    "logistic",
    "mean_logprob",
    "numeric_rating",
    "observed_consistency",
    "option_probabilities",
    "pmi_per_token",
    "rating_from_letters",
    "read_letter",
]

#: every signal a row can carry, in the order summaries and benchmarks list them
SIGNAL_NAMES: tuple[str, ...] = ("self_rating", "consistency", "answer_agreement", "answer_confidence",
                                 "likelihood", "pmi", "completeness", "copy")
CONSISTENCY_ALPHA = 0.8
#: where the end-of-turn log-probability maps to completeness 0.5, and how fast it falls
END_CENTER = -11.0
END_SCALE = 1.0
#: the option letters of the reflection prompt and their certainty value
OPTION_VALUES: dict[str, float] = {"A": 1.0, "B": 0.0, "C": 0.5}

_OPTION_TOKEN = re.compile(r"^[\s(\[\"'*]*([A-Za-z])[\s)\].:,\"'*]*$")


def _option_of(token: str, options: Iterable[str]) -> str | None:
    """The option letter a token stands for (``" a"``, ``"(A"``, ``"A."``), else None."""
    m = _OPTION_TOKEN.match(token)
    if not m:
        return None
    letter = m.group(1).upper()
    return letter if letter in options else None


def option_probabilities(
    top: Mapping[str, float] | Sequence[tuple[str, float]],
    options: Sequence[str] = ("A", "B", "C"),
) -> dict[str, float] | None:
    """Probability of each option from one position's top logprobs, renormalised over the options.

    `top` maps token text to log-probability (or is a list of pairs, where the same text
    may appear twice with different token ids). Returns None when no option letter is
    among the tokens: the model did not answer the question, and 0.5 would be a lie.
    """
    items = top.items() if isinstance(top, Mapping) else top
    mass = dict.fromkeys(options, 0.0)
    for token, logprob in items:
        letter = _option_of(token, options)
        if letter is not None and logprob is not None and math.isfinite(logprob):
            mass[letter] += math.exp(min(0.0, logprob))
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return {k: v / total for k, v in mass.items()}


def certainty(probs: Mapping[str, float], values: Mapping[str, float] = OPTION_VALUES) -> float:
    """Expected option value: P(A)·1 + P(B)·0 + P(C)·0.5 for the default scale; in [0, 1]."""
    total = sum(probs.get(k, 0.0) for k in values)
    if total <= 0:
        raise ValueError("no probability mass on any option")
    value = sum(probs.get(k, 0.0) * v for k, v in values.items()) / total
    return min(1.0, max(0.0, value))


def read_letter(text: str, options: Sequence[str] = ("A", "B", "C")) -> str | None:
    """The option a sampled reply chose: its first standalone letter ("(B) Incorrect" -> "B")."""
    for m in re.finditer(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])", text):
        letter = m.group(1).upper()
        if letter in options:
            return letter
    return None


def rating_from_letters(letters: Iterable[str | None],
                        values: Mapping[str, float] = OPTION_VALUES) -> float | None:
    """Certainty from sampled ratings (providers without logprobs); unreadable replies ignored."""
    got = [values[x] for x in letters if x is not None and x in values]
    return sum(got) / len(got) if got else None


def numeric_rating(text: str, scale: float = 10.0) -> float | None:
    """A "rate 0-10" reply as a number in [0, 1]; None when there is no number in range."""
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)", text)
    if not m:
        return None
    value = float(m.group(1))
    if value > scale:
        return None
    return value / scale


def mean_logprob(logprobs: Sequence[float | None]) -> float | None:
    """Mean log-probability per token; tokens with an unknown logprob are left out."""
    known = [lp for lp in logprobs if lp is not None and math.isfinite(lp)]
    if not known:
        return None
    return sum(min(0.0, lp) for lp in known) / len(known)


def geometric_mean_probability(logprobs: Sequence[float | None]) -> float | None:
    """exp(mean logprob): a length-normalised probability in [0, 1]."""
    m = mean_logprob(logprobs)
    return None if m is None else math.exp(m)


def pmi_per_token(conditional: Sequence[float | None], unconditional: Sequence[float | None]) -> float | None:
    """Mean log P(y|x) − mean log P(y|baseline): how much the question raises y's probability."""
    c, u = mean_logprob(conditional), mean_logprob(unconditional)
    if c is None or u is None:
        return None
    return c - u


def logistic(x: float, center: float = 0.0, scale: float = 1.0) -> float:
    """1 / (1 + e^-(x - center)/scale), safe for large |x|."""
    z = (x - center) / scale
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def observed_consistency(response: str, samples: Sequence[str], alpha: float = CONSISTENCY_ALPHA,
                         prompt: str | None = None) -> float | None:
    """BSDetector's O: mean of α·agreement(y, yᵢ) + (1−α)·[y == yᵢ] over samples; None without samples.
    With `prompt`, agreement is `focused_agreement`: on what each answer adds to the prompt."""
    if not samples:
        return None
    total = 0.0
    for s in samples:
        agree = agreement(response, s) if prompt is None else focused_agreement(response, s, prompt)
        total += alpha * agree + (1 - alpha) * (1.0 if exact_match(response, s) else 0.0)
    return total / len(samples)


def completeness(end_logprob: float | None) -> float | None:
    """How plausible it is that the response is finished, from log P(end of turn or closing mark | x, y)."""
    if end_logprob is None or not math.isfinite(end_logprob):
        return None
    return logistic(min(0.0, end_logprob), center=END_CENTER, scale=END_SCALE)


def consistency_with(response: str, best: Sequence[str], samples: Sequence[str],
                     alpha: float = CONSISTENCY_ALPHA, prompt: str | None = None) -> float | None:
    """Observed consistency: half agreement with the best answers (one per demonstration set),
    half with the samples (on what they add to `prompt`, when given).

    Either half alone when the other is missing; None without any answer.
    """
    parts = [x for x in (observed_consistency(response, best, alpha, prompt),
                         observed_consistency(response, samples, alpha, prompt)) if x is not None]
    return sum(parts) / len(parts) if parts else None


def answer_agreement(agreement: float, confidence: float) -> float:
    """1 − (1 − agreement(y, y′)) · confidence(y′): a confident contradiction scores low."""
    a = min(1.0, max(0.0, agreement))
    c = min(1.0, max(0.0, confidence))
    return 1.0 - (1.0 - a) * c


def _content(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOP_WORDS]


def answer_tokens(text: str, prompt: str) -> list[str]:
    """The tokens of `text` that say something the prompt does not: its own words minus the prompt's."""
    asked = set(tokens(prompt))
    return [t for t in _content(text) if t not in asked]


def focused_agreement(response: str, answer: str, prompt: str) -> float:
    """Agreement of two answers on what they add to the prompt, not on the words they repeat from it.

    "The capital of England is Copenhagen." and "... London." share every word but the answer;
    with the question's words gone, only "copenhagen" and "london" are compared. Falls back to
    plain agreement when either side adds nothing of its own.
    """
    a, b = answer_tokens(response, prompt), answer_tokens(answer, prompt)
    if not a or not b:
        return agreement(response, answer)
    return agreement(" ".join(a), " ".join(b))


def copy_ratio(response: str, prompt: str) -> float | None:
    """Longest run of the response's tokens found verbatim (contiguous) in the prompt, over its length.

    Near 1: the response *is* a piece of the prompt (a passage sentence); a short span inside a
    longer answer is a response that uses the passage. None for an empty response.
    """
    ys, xs = tokens(response), tokens(prompt)
    if not ys:
        return None
    best = 0
    prev = [0] * (len(xs) + 1)
    for y in ys:
        cur = [0] * (len(xs) + 1)
        for j, x in enumerate(xs, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best / len(ys)
