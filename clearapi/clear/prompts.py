"""The prompts CLEAR sends, in one place so they can be read, versioned and cached as a set.

Each builder returns the message list of one `ChatRequest`. Wording follows BSDetector's
self-reflection prompt (options (A) correct, (B) incorrect, (C) not sure) and CLEAR's
pairwise judge, changed in one way: the answer letter must come *first*, so a
``max_tokens=1`` call with logprobs reads the whole judgement from one token's
distribution instead of parsing a sampled explanation.

`PROMPT_VERSION` is part of every request's text, hence of its cache key: changing a prompt
must not reuse answers given to the old one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from clearapi.records import Message

__all__ = [
    "NEUTRAL_PROMPT",
    "PROMPT_VERSION",
    "answer_messages",
    "baseline_messages",
    "baseline_prompt",
    "pairwise_messages",
    "prompt_parts",
    "question_text",
    "rating_messages",
    "score_messages",
]

PROMPT_VERSION = "clear-v1"

#: the "no prompt" context for the unconditional likelihood behind PMI
NEUTRAL_PROMPT = "Write something."

_RATING = """Question:
{question}

Proposed answer:
{answer}

Is the proposed answer a correct, relevant and complete answer to the question?
(A) Correct
(B) Incorrect
(C) I am not sure
Reply with just the letter: A, B or C."""

_PAIRWISE = """Question:
{question}

Which answer is correct and better answers the question?
(A) {first}
(B) {second}
Reply with just the letter: A or B."""

_PARAGRAPH = re.compile(r"\n\s*\n")

_SYSTEM = f"You are a careful grader of question-answer pairs. ({PROMPT_VERSION})"


def question_text(prompt: Sequence[Message]) -> str:
    """The prompt as one question: the lone user turn, or a transcript of a longer conversation.

    A system message is kept (it can define what a good answer is); earlier assistant
    turns are labelled so the grader sees whose words they were.
    """
    turns = [m for m in prompt if m.content.strip()]
    users = [m for m in turns if m.role == "user"]
    if len(turns) == 1 and users:
        return users[0].content
    label = {"system": "Instructions", "developer": "Instructions", "user": "User", "assistant": "Assistant",
             "tool": "Tool"}
    return "\n\n".join(f"{label[m.role]}: {m.content}" for m in turns)


def rating_messages(prompt: Sequence[Message], answer: str) -> list[Message]:
    """Self-reflection: is `answer` right for `prompt`? One letter, A/B/C."""
    return [
        Message(role="system", content=_SYSTEM),
        Message(role="user", content=_RATING.format(question=question_text(prompt), answer=answer)),
    ]


def pairwise_messages(prompt: Sequence[Message], first: str, second: str) -> list[Message]:
    """Pairwise judge: which of two answers is better? One letter, A/B. Ask it in both orders."""
    return [
        Message(role="system", content=_SYSTEM),
        Message(role="user", content=_PAIRWISE.format(question=question_text(prompt), first=first, second=second)),
    ]


def answer_messages(prompt: Sequence[Message], demos: Sequence[Message] = ()) -> list[Message]:
    """The row's own prompt, after any demonstrations: the model answers it as the dataset should have.

    Demonstrations (user/assistant turns) come after the system prompt, which governs them
    too, and before the row's own turns, so the row's question is still the last thing the
    model reads.
    """
    head = 0
    while head < len(prompt) and prompt[head].role in ("system", "developer"):
        head += 1
    return [*prompt[:head], *demos, *prompt[head:]]


def score_messages(prompt: Sequence[Message], response: str, demos: Sequence[Message] = ()) -> list[Message]:
    """Teacher forcing: the prompt (after any demonstrations) followed by the response to score."""
    return [*answer_messages(prompt, demos), Message(role="assistant", content=response)]


_QUESTION_LABEL = re.compile(r"^\s*(question|q)\s*[:.]", re.IGNORECASE)
#: a leading instruction is one line of at most this many characters
_LEAD_CHARS = 300


def prompt_parts(prompt: Sequence[Message]) -> list[str]:
    """The last user turn in its parts: [instruction,] passage[, question]; one part for a
    one-paragraph turn, none when the prompt does not end with a user turn.

    Three layouts are common, and each is read by its shape, not by its source format: an
    instruction then a passage (Alpaca's instruction and input, "Write a subject line for
    this email." then the email), a passage then a question ("...?", "Question: ..."), and
    both ("Read the passage and answer the question.", the passage, the question). A leading
    paragraph is an instruction when it is one line, shorter than the rest of the turn and
    more than a two-word label ("Context:"); the paragraphs between the instruction and the
    question, however many, are one passage. With neither, the last paragraph is the part
    that asks.
    """
    last = prompt[-1] if prompt else None
    if last is None or last.role != "user":
        return []
    paragraphs = [p for p in _PARAGRAPH.split(last.content) if p.strip()]  # as written: baselines are cache keys
    if len(paragraphs) < 2:
        return paragraphs
    final = paragraphs[-1]
    question_last = final.strip().endswith("?") or bool(_QUESTION_LABEL.match(final))
    body = paragraphs[:-1] if question_last else paragraphs
    first = body[0].strip()
    lead = (len(body) >= 2 and "\n" not in first and len(first) <= _LEAD_CHARS and len(first.split()) > 2
            and len(first) < sum(len(p.strip()) for p in body[1:]))
    if not lead and not question_last:
        return ["\n\n".join(paragraphs[:-1]), final]
    head = [body[0]] if lead else []
    passage = body[1:] if lead else body
    return [*head, "\n\n".join(passage), *([final] if question_last else [])]


def baseline_prompt(prompt: Sequence[Message]) -> list[Message]:
    """The context PMI compares against: the prompt without its last part (`prompt_parts`).

    After a passage, the question: PMI says what asking adds, and a sentence copied from the
    passage gains nothing. After an instruction, the whole passage however many paragraphs
    it has (an email, a documentation section): PMI says what the passage adds, and a
    response that belongs to another row, or would fit any passage, gains nothing. A
    one-paragraph prompt is compared with a neutral prompt instead.
    """
    parts = prompt_parts(prompt)
    if len(parts) < 2:
        return [Message(role="user", content=NEUTRAL_PROMPT)]
    return [*prompt[:-1], Message(role="user", content="\n\n".join(parts[:-1]))]


def baseline_messages(prompt: Sequence[Message], response: str, demos: Sequence[Message] = ()) -> list[Message]:
    """The response after the baseline prompt: its likelihood without the prompt's last part.

    The demonstrations stay, so PMI measures what that part adds, not what they do.
    """
    return [*answer_messages(baseline_prompt(prompt), demos), Message(role="assistant", content=response)]
