"""Word-level diffs between a dataset response and its correction, computed once in Python.

The page shows the original and the correction side by side with what changed marked.
Doing the diff here (difflib) rather than in the browser keeps the page's script small and
its cost paid only for corrected rows. The result is a list of ``[op, text]`` runs with
``op`` 0 (in both), -1 (only in the original) or 1 (only in the correction); the two texts
are recovered from it, so the report embeds the runs instead of both texts.
"""

from __future__ import annotations

import difflib
import re

__all__ = ["DiffOp", "corrected_of", "original_of", "word_diff"]

DiffOp = tuple[int, str]

# Words and single punctuation marks, each with the whitespace after it: fine enough that
# "Paris." vs "Paris!" marks one character, and (unlike separate whitespace tokens, which
# are so common that difflib slows to a crawl) about six times faster to align.
_TOKEN = re.compile(r"\w+\s*|[^\w\s]\s*|\s+", re.UNICODE)

# difflib is quadratic in the worst case; past this many tokens a side it diffs lines.
MAX_WORD_TOKENS = 4000
MAX_LINE_TOKENS = 4000


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _diff_tokens(a: list[str], b: list[str]) -> list[DiffOp]:
    ops: list[DiffOp] = []

    def push(op: int, text: str) -> None:
        if not text:
            return
        if ops and ops[-1][0] == op:
            ops[-1] = (op, ops[-1][1] + text)
        else:
            ops.append((op, text))

    # The shared head and tail cost nothing to find and are most of a typical correction.
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    push(0, "".join(a[:head]))
    mid_a, mid_b = a[head:len(a) - tail], b[head:len(b) - tail]
    matcher = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            push(0, "".join(mid_a[i1:i2]))
        else:
            # Deletions before insertions, so each side reads in order when split apart.
            push(-1, "".join(mid_a[i1:i2]))
            push(1, "".join(mid_b[j1:j2]))
    push(0, "".join(a[len(a) - tail:]))
    return _tidy(ops)


def _tidy(ops: list[DiffOp]) -> list[DiffOp]:
    """Move whitespace that a removal and its replacement both end with out of the change,
    so "six " -> "eight " marks the words, not the space after them."""
    out: list[DiffOp] = []
    k = 0
    while k < len(ops):
        if k + 1 < len(ops) and ops[k][0] == -1 and ops[k + 1][0] == 1:
            old, new = ops[k][1], ops[k + 1][1]
            ws = len(old) - len(old.rstrip())
            ws = min(ws, len(new) - len(new.rstrip()))
            if ws and old[len(old) - ws:] == new[len(new) - ws:] and old.strip() and new.strip():
                space = old[len(old) - ws:]
                out += [(-1, old[:len(old) - ws]), (1, new[:len(new) - ws])]
                if k + 2 < len(ops) and ops[k + 2][0] == 0:
                    out.append((0, space + ops[k + 2][1]))
                    k += 3
                else:
                    out.append((0, space))
                    k += 2
                continue
        out.append(ops[k])
        k += 1
    return out


def word_diff(original: str, corrected: str) -> list[DiffOp]:
    """Runs that rebuild `original` (ops 0 and -1) and `corrected` (ops 0 and 1).

    Falls back to a line-level diff for long texts, and to "all removed, all added" for
    texts with more lines than is sensible to align, so one huge row cannot stall a report.
    """
    a, b = _tokens(original), _tokens(corrected)
    if len(a) <= MAX_WORD_TOKENS and len(b) <= MAX_WORD_TOKENS:
        return _diff_tokens(a, b)
    la, lb = _lines(original), _lines(corrected)
    if len(la) <= MAX_LINE_TOKENS and len(lb) <= MAX_LINE_TOKENS:
        return _diff_tokens(la, lb)
    return [op for op in ((-1, original), (1, corrected)) if op[1]]


def original_of(ops: list[DiffOp]) -> str:
    return "".join(text for op, text in ops if op <= 0)


def corrected_of(ops: list[DiffOp]) -> str:
    return "".join(text for op, text in ops if op >= 0)
