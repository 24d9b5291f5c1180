"""In-context demonstrations: a few of the dataset's own rows shown before a row's prompt.

Why: asked "What is the capital of Canada?", a small chat model writes a paragraph, while
the dataset says "Ottawa.". Agreement between the model's answers and the dataset's
response, and the response's likelihood, then measure *style* as much as content, and a
correction in the model's register would not fit the dataset. Shown a few of the dataset's
own (prompt, response) pairs first, the model answers the way the dataset does: its answers
can be compared with y, the likelihood of y is not penalised for being terse, and an
auto-correction reads like the rows around it (figures: docs/method.md).

Which rows: the first `POOL_SIZE` rows of the input that are a single user turn (after
any system message) with a short prompt and response. Each scored row gets `k` of them,
drawn by a seeded hash of its line number, so the same row always gets the same
demonstrations (its requests repeat, and a re-run is served from the cache), never itself,
never a row with the same prompt (which would hand the model the answer) and never a row
with the same response (which would make y likelier by showing it, not by being right). The pool is
not vetted (the rows are what is being scored), so a bad row can be a demonstration; the
draw changes per row, so no single row sways them all.

A row can be asked under several **disjoint sets** of demonstrations (`DemoPool.sets_for`,
``--demo-sets``): which three rows a small model is shown moves what it answers, so one draw
makes a row's score depend on luck. The pipeline gives each set its own answer and scoring
passes and averages them; an answer the model gives whichever rows it is shown is one it
knows (docs/method.md).

A row and its demonstrations stay under `MAX_TOTAL_CHARS`, so a long row gets fewer or
none: demonstrations must never make a row too long for the model.

Memory stays flat: the pool holds at most `POOL_SIZE` short rows, read from the start of
the file before scoring begins.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clearapi.clear.similarity import normalize
from clearapi.records import Example, Message, Reject

__all__ = ["MAX_PROMPT_CHARS", "MAX_RESPONSE_CHARS", "MAX_TOTAL_CHARS", "POOL_SIZE", "DemoPool"]

#: rows the demonstrations are drawn from (the first eligible rows of the input)
POOL_SIZE = 32
#: a demonstration is repeated in every request of the rows it serves, so it must be short
MAX_PROMPT_CHARS = 1000
MAX_RESPONSE_CHARS = 400
#: a row and its demonstrations together stay under this (about 1,000 tokens): a long row gets
#: fewer or none rather than outgrowing a small model's context window (2,048 tokens locally)
MAX_TOTAL_CHARS = 4000
#: lines read at most while looking for eligible rows (a file of long rows has none)
_SCAN_LIMIT = 2000


@dataclass(frozen=True)
class _Demo:
    line: int
    key: str
    answer: str
    messages: tuple[Message, Message]


class DemoPool:
    """The dataset's rows that may serve as demonstrations, and the draw for each row."""

    def __init__(self, demos: Sequence[_Demo] = (), seed: int = 0) -> None:
        self._demos = list(demos)
        self.seed = seed

    @classmethod
    def from_rows(cls, rows: Iterable[Example | Reject], seed: int = 0, size: int = POOL_SIZE) -> DemoPool:
        """The first `size` eligible examples of `rows` (rejects and long rows are skipped)."""
        demos: list[_Demo] = []
        for scanned, row in enumerate(rows, 1):
            if isinstance(row, Example) and (demo := _eligible(row)) is not None:
                demos.append(demo)
                if len(demos) >= size:
                    break
            if scanned >= _SCAN_LIMIT:
                break
        return cls(demos, seed)

    def __len__(self) -> int:
        return len(self._demos)

    def for_example(self, example: Example, k: int) -> tuple[tuple[Message, ...], tuple[int, ...]]:
        """Up to `k` demonstrations for `example` as user/assistant turns, and their line numbers."""
        return self.sets_for(example, k, 1)[0]

    def sets_for(self, example: Example, k: int,
                 sets: int) -> tuple[tuple[tuple[Message, ...], tuple[int, ...]], ...]:
        """Up to `sets` disjoint draws of up to `k` demonstrations each, as `for_example` gives one.

        The first draw is the one `for_example` makes. Later draws take rows the earlier ones
        did not; a draw that comes out empty or equal to an earlier one (the pool ran out,
        the row is too long for any) is left out, so at least one set is always returned.
        """
        if k <= 0 or not self._demos:
            return (((), ()),)
        key, answer = _prompt_key(example.prompt_messages), normalize(example.response)
        others = [d for d in self._demos if d.line != example.line and d.key != key and d.answer != answer]
        room = MAX_TOTAL_CHARS - sum(len(m.content) for m in example.messages)
        out: list[tuple[tuple[Message, ...], tuple[int, ...]]] = []
        used: set[int] = set()
        for index in range(max(1, sets)):
            salt = f"{self.seed}:{example.line}" + (f":{index}" if index else "")
            left = [d for d in others if d.line not in used]
            picked = _fit(random.Random(salt).sample(left, min(k, len(left))), room)
            used.update(d.line for d in picked)
            drawn = (tuple(m for d in picked for m in d.messages), tuple(d.line for d in picked))
            if index == 0 or (drawn[1] and drawn not in out):
                out.append(drawn)
        return tuple(out)


def _fit(drawn: Sequence[_Demo], room: int) -> list[_Demo]:
    """The drawn demonstrations that fit in `room` characters, in file order."""
    picked = []
    for demo in drawn:
        size = sum(len(m.content) for m in demo.messages)
        if size <= room:
            picked.append(demo)
            room -= size
    picked.sort(key=lambda d: d.line)
    return picked


def _eligible(example: Example) -> _Demo | None:
    turns = [m for m in example.prompt_messages if m.role not in ("system", "developer")]
    if len(turns) != 1 or turns[0].role != "user":
        return None
    question, answer = turns[0].content, example.response
    if not question.strip() or not answer.strip():
        return None
    if len(question) > MAX_PROMPT_CHARS or len(answer) > MAX_RESPONSE_CHARS:
        return None
    return _Demo(example.line, _prompt_key(example.prompt_messages), normalize(answer),
                 (Message(role="user", content=question), Message(role="assistant", content=answer)))


def _prompt_key(prompt: Sequence[Message]) -> str:
    return "\n".join(normalize(m.content) for m in prompt if m.role == "user")
