"""What the emulated model "says": deterministic texts with plausible per-token logprobs.

A `Responder` is any callable from a `ResponderRequest` (the chat request reduced to what matters,
the same for both wire protocols) to one `Completion` per requested choice. The default one
(`DefaultResponder`) is a pure function of (model, messages, seed, temperature, and the choice
index when temperature > 0), so cached and re-run requests get identical answers, and at
temperature 0 all `n` choices are identical, as with a greedy model.

- Tokens are words and punctuation marks, a word carrying its leading space (``" cat"``), so
  `count_tokens` of the text equals the number of tokens returned.
- The chosen token's logprob lies in (-5, 0]; ``top_logprobs`` lists the chosen token and
  alternatives, sorted, with probabilities that sum to at most 1. At temperature 0 the chosen
  token is the most likely one.
- Multiple choice: when the last user message offers options ``(A)``, ``(B)``... (or lines
  starting ``A)``, ``A.``, ``A:``; a run from A), or asks for "yes or no", and max_tokens is at
  most `mc_max_tokens`, the answer is one bare option (``"B"``, ``"Yes"``) and ``top_logprobs``
  is a distribution over the options (what clients need for continuous self-ratings).
- ``answers`` (substring of the last user message -> text) fixes the answer for tests; a fixed
  answer that is an option letter of a multiple-choice question gets most of the probability.
- Rude like real servers when asked: some ``top_logprobs`` lists are shorter than asked
  (``exact_top_logprobs=False``) and some free-text completions are empty (``empty_rate``). Which
  ones is a pure function of the seed and the request, never of arrival order, so a retry gets the
  same answer.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "Completion",
    "DefaultResponder",
    "Responder",
    "ResponderRequest",
    "Token",
    "count_tokens",
    "prompt_tokens",
    "tokenize",
]

_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])")
_COUNT_RE = re.compile(r"\w+|[^\w\s]")
# "(A) ..." anywhere, or "A) ..." / "A. ..." / "A: ..." at the start of a line
_OPTION_RE = re.compile(r"\(([A-Z])\)|^[ \t]*([A-Z])[).:][ \t]", re.MULTILINE)
_YES_NO_RE = re.compile(r"\byes\s*(?:or|/)\s*no\b", re.IGNORECASE)


def count_tokens(text: str) -> int:
    """Cheap deterministic token count: words plus punctuation marks."""
    return len(_COUNT_RE.findall(text))


def prompt_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """Prompt tokens, with OpenAI's per-message overhead (4 per message + 3 for the reply)."""
    return sum(count_tokens(text) + 4 for _, text in messages) + 3


def tokenize(text: str) -> list[str]:
    """Split into word/punctuation tokens that concatenate back to `text` (minus trailing space)."""
    return _TOKEN_RE.findall(text)


@dataclass(frozen=True)
class ResponderRequest:
    provider: Literal["openai", "anthropic"]
    model: str
    #: (role, text) pairs, system prompt first when there is one
    messages: tuple[tuple[str, str], ...]
    n: int = 1
    max_tokens: int | None = None
    temperature: float = 1.0
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    stop: tuple[str, ...] = ()
    #: the request body as sent, for responders that need more
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def last_user(self) -> str:
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""


@dataclass
class Token:
    text: str
    logprob: float
    #: alternatives including the chosen token, most likely first
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Completion:
    tokens: list[Token]
    finish_reason: Literal["stop", "length"] = "stop"
    #: the stop sequence that ended the text, if one did
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)


class Responder(Protocol):
    def __call__(self, request: ResponderRequest) -> Sequence[Completion]: ...


_VOCABULARY = (
    "the answer is that a model can learn from clear data and small steps make each result better "
    "when we check every example with care so the final set holds only what is true useful and kind "
    "data quality matters more than size because noise in labels teaches wrong patterns to any learner "
    "this response explains the main idea gives one short reason and then ends with a simple summary "
    "water boils at one hundred degrees while light travels fast across space and time in most cases"
)
_WORDS = tuple(_VOCABULARY.split())
_ALT_WORDS = ("it", "this", "one", "data", "model", "value", "result", "true", "more", "also", "well",
              "each", "some", "then", "here", "such", "only", "just", "very", "still")


def _digest(*parts: object) -> int:
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


class DefaultResponder:
    """Deterministic answers; see the module docstring."""

    def __init__(self, answers: Mapping[str, str] | None = None, mc_max_tokens: int = 5, *, seed: int = 0,
                 exact_top_logprobs: bool = True, empty_rate: float = 0.0) -> None:
        self.answers = dict(answers or {})
        self.mc_max_tokens = mc_max_tokens
        self.seed = seed
        self.exact_top_logprobs = exact_top_logprobs
        self.empty_rate = empty_rate

    def __call__(self, request: ResponderRequest) -> Sequence[Completion]:
        last = request.last_user
        fixed = next((a for key, a in self.answers.items() if key in last), None)
        letters = self._options(last)
        mc = (len(letters) >= 2 and request.max_tokens is not None
              and request.max_tokens <= self.mc_max_tokens)
        base = _digest(request.model, request.messages, request.seed, request.temperature)
        out: list[Completion] = []
        for i in range(request.n):
            salt = _digest(base, i) if request.temperature > 0 else base
            rng = random.Random(salt)
            if mc and (fixed is None or fixed.strip() in letters):
                comp = self._choice(request, letters, fixed, base, rng)
            elif fixed is not None:
                comp = self._text(request, tokenize(fixed), rng, greedy=True)
            else:
                comp = self._text(request, self._sentence(rng), rng, greedy=request.temperature == 0)
                if self.empty_rate and random.Random(_digest(self.seed, salt, "empty")).random() < self.empty_rate:
                    comp = Completion([], "stop")
            if not self.exact_top_logprobs:
                self._shorten(comp, random.Random(_digest(self.seed, salt, "short")))
            out.append(comp)
        return out

    @staticmethod
    def _shorten(comp: Completion, rng: random.Random) -> None:
        """Cut some tokens' alternatives short, as real servers do (llama.cpp, vLLM, gateways)."""
        for token in comp.tokens:
            if len(token.top) > 1 and rng.random() < 0.3:
                token.top = token.top[: rng.randint(1, len(token.top) - 1)]

    @staticmethod
    def _options(text: str) -> list[str]:
        """Option letters A, B, C... (only a run starting at A counts), or Yes/No."""
        letters: list[str] = []
        for paren, bare in _OPTION_RE.findall(text):
            letter = paren or bare
            if letter not in letters:
                letters.append(letter)
        letters.sort()
        run = [chr(ord("A") + i) for i in range(len(letters))]
        if len(letters) >= 2 and letters == run:
            return letters
        if _YES_NO_RE.search(text):
            return ["Yes", "No"]
        return []

    @staticmethod
    def _sentence(rng: random.Random) -> list[str]:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 24))]
        words[0] = words[0].capitalize()
        tokens = [words[0]] + [" " + w for w in words[1:]]
        if len(tokens) > 8 and rng.random() < 0.5:
            tokens.insert(rng.randint(3, len(tokens) - 3), ",")
        tokens.append(".")
        return tokens

    def _choice(self, request: ResponderRequest, letters: list[str], fixed: str | None, base: int,
                rng: random.Random) -> Completion:
        # the letter distribution depends on the question only, not on the sample index
        q = random.Random(base ^ 0x5DEECE66D)
        logits = [q.gauss(0.0, 1.5) for _ in letters]
        if fixed is not None:
            logits[letters.index(fixed.strip())] = max(logits) + 3.0
        z = max(logits)
        weights = [math.exp(v - z) for v in logits]
        total = sum(weights)
        probs = [0.97 * w / total for w in weights]  # leave mass for tokens that are not letters
        if request.temperature > 0 and fixed is None:
            tempered = [p ** (1.0 / request.temperature) for p in probs]
            pick = rng.choices(range(len(letters)), weights=tempered)[0]
        else:
            pick = max(range(len(letters)), key=lambda k: probs[k])
        top = sorted(((letters[k], math.log(probs[k])) for k in range(len(letters))),
                     key=lambda t: -t[1])
        token = Token(letters[pick], math.log(probs[pick]), top[: max(request.top_logprobs, 0)])
        return Completion([token], "stop")

    @staticmethod
    def _text(request: ResponderRequest, texts: list[str], rng: random.Random, greedy: bool) -> Completion:
        limit = request.max_tokens
        want_top = request.top_logprobs if request.logprobs else 0
        tokens: list[Token] = []
        finish: Literal["stop", "length"] = "stop"
        stop_seq: str | None = None
        so_far = ""
        expo = rng.expovariate
        rate = 6.0 if greedy else 1.2
        floor = 0.69 if greedy else 4.99  # greedy: p > 0.5, so the chosen token is the argmax
        stops = request.stop
        for text in texts:
            if limit is not None and len(tokens) >= limit:
                finish = "length"
                break
            lp = -min(floor, expo(rate)) - 1e-4
            token = Token(text, lp)
            if want_top:
                token.top = _alternatives(text, lp, want_top, greedy, rng)
            if stops:
                cut = _first_stop(so_far + text, stops, len(so_far))
                if cut is not None:
                    pos, seq = cut
                    keep = (so_far + text)[len(so_far):pos] if pos > len(so_far) else ""
                    if keep:
                        token.text = keep
                        tokens.append(token)
                    stop_seq = seq
                    break
                so_far += text
            tokens.append(token)
        return Completion(tokens, finish, stop_seq)


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for seq in stops:
        if not seq:
            continue
        pos = text.find(seq, max(0, start - len(seq) + 1))
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, seq)
    return best


def _alternatives(chosen: str, lp: float, k: int, greedy: bool, rng: random.Random) -> list[tuple[str, float]]:
    """`k` entries: the chosen token and lower-mass alternatives; probabilities sum below 1."""
    rest = 1.0 - math.exp(lp)
    lead = " " if chosen.startswith(" ") else ""
    alts: list[tuple[str, float]] = []
    used = {chosen}
    share = rest * 0.9
    while len(alts) < k - 1:
        word = lead + rng.choice(_ALT_WORDS)
        if word in used:
            word = f"{word}{len(alts)}"
        used.add(word)
        part = share * (0.5 if greedy else rng.uniform(0.3, 0.7))
        share -= part
        alts.append((word, math.log(max(part, 1e-300))))
    entries = [(chosen, lp), *alts]
    entries.sort(key=lambda t: -t[1])
    return entries[:k]
