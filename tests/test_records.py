"""The boundary models reject what the rest of clearapi must never see, with messages that say why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from clearapi.records import (
    ChatRequest,
    Example,
    Message,
    Reject,
    RowCounts,
    Score,
    TokenLogprob,
)


def _turns(*pairs: tuple[str, str]) -> list[Message]:
    return [Message(role=role, content=content) for role, content in pairs]  # type: ignore[arg-type]


def test_message_rejects_blank_content_and_unknown_roles() -> None:
    with pytest.raises(ValidationError, match="content is empty"):
        Message(role="user", content="  \n")
    with pytest.raises(ValidationError, match="role"):
        Message(role="bot", content="hi")  # type: ignore[arg-type]


def test_example_needs_a_final_assistant_turn_after_a_user_turn() -> None:
    example = Example(id="x", line=4, messages=_turns(("system", "s"), ("user", "q"), ("assistant", "a")))
    assert example.response == "a" and example.prompt_text == "q"
    assert [m.role for m in example.prompt_messages] == ["system", "user"]
    assert example.consumed_keys == [] and example.raw == {}
    with pytest.raises(ValidationError, match="last message must be the assistant"):
        Example(id="x", line=1, messages=_turns(("user", "q"), ("user", "again")))
    with pytest.raises(ValidationError, match="no user turn"):
        Example(id="x", line=1, messages=_turns(("system", "s"), ("assistant", "a")))
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Example(id="x", line=0, messages=_turns(("user", "q"), ("assistant", "a")))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Example(id="x", line=1, messages=_turns(("user", "q"), ("assistant", "a")), colour="red")  # type: ignore[call-arg]


def test_prompt_text_is_the_last_user_turn() -> None:
    example = Example(id="x", line=1, messages=_turns(("user", "first"), ("assistant", "mid"),
                                                      ("user", "second"), ("assistant", "end")))
    assert example.prompt_text == "second"


def test_chat_request_coherence() -> None:
    with pytest.raises(ValidationError, match="top_logprobs needs logprobs=True"):
        ChatRequest(messages=_turns(("user", "q")), top_logprobs=3)
    with pytest.raises(ValidationError, match="mode='score' needs"):
        ChatRequest(messages=_turns(("user", "q")), mode="score")
    ChatRequest(messages=_turns(("user", "q"), ("assistant", "a")), mode="score", logprobs=True, top_logprobs=5)


def test_token_logprob_refuses_probabilities_above_one() -> None:
    assert TokenLogprob(token="a", logprob=-0.5).logprob == -0.5
    assert TokenLogprob(token="a", logprob=None).logprob is None
    with pytest.raises(ValidationError, match="logprob must be <= 0"):
        TokenLogprob(token="a", logprob=0.3)


def test_reject_string_names_file_line_and_field() -> None:
    reject = Reject(file="data.jsonl", line=7, field="messages[2].role", error="unknown role 'bot'")
    assert str(reject) == "data.jsonl:7 [messages[2].role]: unknown role 'bot'"
    assert str(Reject(file="d.csv", line=2, error="invalid")) == "d.csv:2: invalid"


def test_row_counts_add_up_and_score_bounds() -> None:
    assert RowCounts(rows=4, kept=1, corrected=1, dropped=1, rejected=1).adds_up
    assert not RowCounts(rows=5, kept=1).adds_up
    with pytest.raises(ValidationError):
        Score(line=1, id="x", confidence=1.5)
