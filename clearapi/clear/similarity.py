"""How much two short answers agree: the similarity under observed consistency.

BSDetector compares sampled answers with an NLI model. None is reachable offline, and an
LLM equivalence judgement would cost one more call per sample, so clearapi uses a lexical
measure built for short answers:

* both texts are normalised the way SQuAD's scorer does (lower case, punctuation and the
  articles a/an/the removed, number words mapped to digits: "eight" == "8");
* `agreement` is the larger of token F1 and *containment* (the share of the shorter
  answer's content tokens found in the longer one). Containment is there because a
  model's own answer is often a full sentence around the dataset's short span
  ("Marie Curie was born in Warsaw" vs "Warsaw"), which F1 alone would call a poor match;
  it is taken only once the shorter side has a content token, so an empty or
  stop-word-only answer agrees with nothing.

A lexical measure cannot see paraphrase ("the heart" vs "the cardiac muscle"); on the
short-answer data CLEAR targets that costs little, and it is free. Long free-text
responses are where an embedding or NLI model would help; that is a documented gap.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

__all__ = ["STOP_WORDS", "agreement", "containment", "exact_match", "normalize", "token_f1", "tokens"]

_ARTICLES = {"a", "an", "the"}
# Words that carry no answer content: kept out of containment so "It is" does not match.
_STOP = _ARTICLES | {
    "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "of", "in", "on", "at", "to",
    "and", "or", "for", "with", "by", "as", "from", "about", "answer", "i", "you", "he", "she", "they",
    "we", "there", "has", "have", "had", "do", "does", "did", "so", "which",
}
#: words that carry no answer content (public for signals that compare answers)
STOP_WORDS: frozenset[str] = frozenset(_STOP)
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20",
    "hundred": "100", "thousand": "1000",
}
_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-cased, accent-folded, punctuation-free text with number words as digits."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(tokens(folded))


def tokens(text: str) -> list[str]:
    """Answer tokens: words and numbers, articles dropped, thousands separators removed."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    out: list[str] = []
    for word in _WORD.findall(folded):
        if word in _ARTICLES:
            continue
        if word[0].isdigit():
            word = word.replace(",", "")
        out.append(_NUMBER_WORDS.get(word, word))
    return out


def exact_match(a: str, b: str) -> bool:
    """Equal after normalisation (the "rᵢ" indicator of BSDetector)."""
    return normalize(a) == normalize(b)


def token_f1(a: str, b: str) -> float:
    """SQuAD-style token F1 of the normalised answers; 1.0 when both are empty."""
    return _f1(tokens(a), tokens(b))


def containment(a: str, b: str) -> float:
    """Share of the shorter answer's content tokens that occur in the longer one."""
    return _containment(tokens(a), tokens(b))


def agreement(a: str, b: str) -> float:
    """Similarity in [0, 1]: max(token F1, containment); symmetric."""
    ta, tb = tokens(a), tokens(b)  # once: tokenising is most of the cost, and this runs per sample pair
    return max(_f1(ta, tb), _containment(ta, tb))


def _f1(ta: list[str], tb: list[str]) -> float:
    if not ta or not tb:
        return 1.0 if not ta and not tb else 0.0
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def _containment(ta: list[str], tb: list[str]) -> float:
    ca = [t for t in ta if t not in _STOP]
    cb = [t for t in tb if t not in _STOP]
    if not ca or not cb:
        return 0.0
    short, long_ = (ca, cb) if len(ca) <= len(cb) else (cb, ca)
    pool = Counter(long_)
    hits = sum(min(n, pool[t]) for t, n in Counter(short).items())
    return hits / len(short)
