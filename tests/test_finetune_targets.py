"""Each target's output passes `validate` AND independent checks of the services' published rules.

The `*_problems` functions below are written from the services' documents (read 2026-11-25),
not from clearapi's validator, so a bug shared by renderer and validator still fails here:
- OpenAI chat SFT: developers.openai.com/api/docs/guides/supervised-fine-tuning, the cookbook's
  chat_finetuning_data_prep checks, the OpenAPI spec (weight 0/1 on assistant messages only).
- OpenAI DPO: developers.openai.com/api/docs/guides/direct-preference-optimization.
- Bedrock (Claude): platform.claude.com/cookbook/finetuning-finetuning-on-bedrock.
- Together: docs.together.ai/docs/fine-tuning/data-preparation (+ preference-tuning).
- Fireworks: docs.fireworks.ai/fine-tuning/fine-tuning-models (+ dpo-fine-tuning).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearapi.datasets import read_examples
from clearapi.errors import ConfigError
from clearapi.finetune import TARGETS, RenderError, render, render_preference, validate_file
from clearapi.records import Example, Message

# --- independent rule checks -----------------------------------------------------------------


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def openai_sft_problems(rec: dict[str, Any]) -> list[str]:
    out = []
    if not set(rec) <= {"messages", "tools", "functions", "parallel_tool_calls"}:
        out.append(f"top-level keys {sorted(rec)}")
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return [*out, "messages must be a non-empty list"]
    for m in msgs:
        if not set(m) <= {"role", "content", "name", "weight", "function_call", "tool_calls"}:
            out.append(f"message keys {sorted(m)}")
        if m.get("role") not in {"system", "developer", "user", "assistant", "tool", "function"}:
            out.append(f"role {m.get('role')}")
        if not _text(m.get("content")):
            out.append("content must be non-empty text")
        if "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1)):
            out.append("weight only 0/1 on assistant")
    if not any(m.get("role") == "assistant" for m in msgs):
        out.append("no assistant message")
    return out


def bedrock_problems(rec: dict[str, Any]) -> list[str]:
    out = []
    if not set(rec) <= {"system", "messages"}:
        out.append(f"extraneous keys {sorted(rec)}")
    if "system" in rec and not _text(rec["system"]):
        out.append("system must be text")
    msgs = rec.get("messages") or []
    if len(msgs) < 2:
        out.append("at least two messages")
    if msgs and msgs[0].get("role") != "user":
        out.append("first message must be user")
    if msgs and msgs[-1].get("role") != "assistant":
        out.append("last message must be assistant")
    for a, b in itertools.pairwise(msgs):
        if a.get("role") == b.get("role"):
            out.append("user and assistant must alternate")
    for m in msgs:
        if set(m) != {"role", "content"} or m["role"] not in ("user", "assistant") or not _text(m["content"]):
            out.append(f"bad message {m}")
    return out


def _alternates_after_system(msgs: list[dict[str, Any]]) -> bool:
    roles = [m.get("role") for m in msgs]
    if roles and roles[0] == "system":
        roles = roles[1:]
    return all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles))


def together_problems(rec: dict[str, Any]) -> list[str]:
    out = []
    if set(rec) != {"messages"}:
        out.append(f"keys {sorted(rec)}")
    msgs = rec.get("messages") or []
    if not msgs or msgs[0].get("role") not in ("system", "user"):
        out.append("must start with system or user")
    if not _alternates_after_system(msgs):
        out.append("must alternate user/assistant after the system message")
    for m in msgs:
        if m.get("role") not in ("system", "user", "assistant") or not _text(m.get("content")):
            out.append(f"bad message {m}")
    if not any(m.get("role") == "assistant" for m in msgs):
        out.append("no assistant")
    return out


def fireworks_problems(rec: dict[str, Any]) -> list[str]:
    out = []
    if not set(rec) <= {"messages", "tools"}:
        out.append(f"keys {sorted(rec)}")
    msgs = rec.get("messages") or []
    for i, m in enumerate(msgs):
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            out.append(f"bad message {m}")
        if m.get("role") == "system" and i != 0:
            out.append("system must be first")
        if "weight" in m and m["weight"] not in (0, 1):
            out.append("weight 0 or 1")
    if not any(m.get("role") == "assistant" for m in msgs):
        out.append("no assistant")
    return out


def preference_problems(rec: dict[str, Any], openai: bool) -> list[str]:
    out = []
    if set(rec) != {"input", "preferred_output", "non_preferred_output"}:
        out.append(f"keys {sorted(rec)}")
    inp = rec.get("input") or {}
    allowed_input = {"messages", "tools", "parallel_tool_calls"} if openai else {"messages"}
    if not set(inp) <= allowed_input or not isinstance(inp.get("messages"), list) or not inp["messages"]:
        out.append("input must hold a non-empty messages list")
    for m in inp.get("messages", []):
        if m.get("role") not in ("system", "developer", "user", "assistant", "tool") or not _text(m.get("content")):
            out.append(f"bad input message {m}")
    if not openai and not _alternates_after_system(inp.get("messages", [])[:]):
        pass  # Together's own example opens with an assistant turn: order is not a published DPO rule
    for key in ("preferred_output", "non_preferred_output"):
        o = rec.get(key)
        if not (isinstance(o, list) and len(o) == 1 and o[0].get("role") == "assistant" and _text(o[0].get("content"))
                and set(o[0]) == {"role", "content"}):
            out.append(f"{key} must be exactly one assistant message")
    return out


CHECKS = {
    "openai": openai_sft_problems,
    "bedrock": bedrock_problems,
    "together": together_problems,
    "fireworks": fireworks_problems,
}

# --- inputs ------------------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "user", "content": "Hi", "name": "ann"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris", "weight": 1}], "id": "row-2", "metadata": {"k": 1}},
    {"messages": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Yes?"},
                  {"role": "user", "content": "Or no?"}, {"role": "assistant", "content": "Oui."}]},
    {"instruction": "Translate to German", "input": "cat", "output": "Katze"},
    {"prompt": "Name a prime number.", "completion": "7"},
]


def _examples(tmp_path: Path, n: int = 40) -> list[Example]:
    path = tmp_path / "in.jsonl"
    chat = [dict(ROWS[i % 3], id=f"row-{i}") if "id" in ROWS[i % 3] else ROWS[i % 3] for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in chat) + "\n")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(ROWS[3]) + "\n" + json.dumps(dict(ROWS[3], input="dog", output="Hund")) + "\n")
    items = [e for e in read_examples(path) if isinstance(e, Example)]
    items += [e for e in read_examples(mixed) if isinstance(e, Example)]
    pc = tmp_path / "pc.jsonl"
    pc.write_text(json.dumps(ROWS[4]) + "\n")
    items += [e for e in read_examples(pc) if isinstance(e, Example)]
    assert len(items) == n + 3
    return items


@pytest.mark.parametrize("target", ["openai", "bedrock", "together", "fireworks"])
def test_supervised_targets_pass_validate_and_the_published_rules(tmp_path: Path, target: str) -> None:
    examples = _examples(tmp_path)
    records = [render(ex, "A corrected answer." if i % 4 == 0 else None, target) for i, ex in enumerate(examples)]
    for rec in records:
        assert CHECKS[target](rec) == [], rec
    out = tmp_path / f"{target}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = validate_file(out, target)
    assert report.errors == 0, [str(f) for f in report.findings]
    assert report.examples == len(examples)
    # the correction replaced the final answer; other rows kept theirs
    last = records[0]["messages"][-1]
    assert last["role"] == "assistant" and last["content"] == "A corrected answer."
    assert records[1]["messages"][-1]["content"] == examples[1].response


def test_openai_keeps_weight_and_name_but_drops_unknown_keys(tmp_path: Path) -> None:
    ex = _examples(tmp_path)[1]
    rec = render(ex, None, "openai")
    assert rec["messages"][0]["name"] == "ann"
    assert rec["messages"][-1]["weight"] == 1
    assert "id" not in rec and "metadata" not in rec


def test_bedrock_moves_system_to_top_level_and_merges_repeated_turns(tmp_path: Path) -> None:
    ex = _examples(tmp_path)[2]
    rec = render(ex, None, "bedrock")
    assert rec["system"] == "Answer in French."
    assert rec["messages"] == [{"role": "user", "content": "Yes?\n\nOr no?"}, {"role": "assistant", "content": "Oui."}]


@pytest.mark.parametrize("target", ["openai-dpo", "together-dpo", "fireworks-dpo"])
def test_preference_targets_pass_validate_and_the_published_rules(tmp_path: Path, target: str) -> None:
    examples = _examples(tmp_path)
    records = [render_preference(ex, f"Better answer {i}.", ex.response, target) for i, ex in enumerate(examples)]
    for rec, ex in zip(records, examples, strict=True):
        assert preference_problems(rec, openai=target == "openai-dpo") == [], rec
        assert rec["non_preferred_output"][0]["content"] == ex.response
        assert rec["input"]["messages"][-1]["role"] != "assistant" or len(ex.messages) > 2
    out = tmp_path / f"{target}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = validate_file(out, target)
    assert report.errors == 0, [str(f) for f in report.findings]


def test_render_refuses_what_a_target_cannot_express() -> None:
    ex = Example(id="x", line=3, messages=[Message(role="assistant", content="Welcome!"),
                                           Message(role="user", content="Hi"),
                                           Message(role="assistant", content="Hello")])
    assert openai_sft_problems(render(ex, None, "openai")) == []  # OpenAI has no order rule
    for target in ("bedrock", "together"):
        with pytest.raises(RenderError) as info:
            render(ex, None, target)
        assert info.value.field == "messages[0].role"
    with pytest.raises(ConfigError):
        render(ex, None, "openai-dpo")
    with pytest.raises(ConfigError):
        render_preference(ex, "a", "b", "openai")
    with pytest.raises(ConfigError):
        render(ex, None, "nope")


def test_every_target_is_documented() -> None:
    assert set(TARGETS) == {"openai", "openai-dpo", "bedrock", "together", "together-dpo", "fireworks",
                            "fireworks-dpo", "trl-sft", "trl-dpo", "bedrock-nova"}
    assert all(t.description for t in TARGETS.values())


_roles = st.sampled_from(["system", "developer", "user", "assistant"])
_content = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")


@st.composite
def _example(draw: st.DrawFn) -> Example:
    head = draw(st.lists(st.tuples(_roles, _content), max_size=6))
    msgs = [Message(role=r, content=c) for r, c in head]
    msgs += [Message(role="user", content=draw(_content)), Message(role="assistant", content=draw(_content))]
    return Example(id="h", line=1, messages=msgs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ex=_example(), correction=st.none() | _content)
def test_any_conversation_renders_valid_or_is_refused(ex: Example, correction: str | None) -> None:
    for target, check in CHECKS.items():
        try:
            rec = render(ex, correction, target)
        except RenderError:
            # only when the service's order rules cannot hold: a system turn after the start,
            # or the first non-system turn is the assistant's
            roles = [("system" if m.role == "developer" else m.role) for m in ex.messages]
            rest = roles[next((i for i, r in enumerate(roles) if r != "system"), 0):]
            assert target != "openai"
            assert "system" in rest or rest[0] == "assistant"
            continue
        assert check(rec) == [], (target, rec)
        final = rec["messages"][-1]["content"]
        assert final.endswith(correction if correction is not None else ex.response)


def test_record_for_follows_curate_decisions() -> None:
    from clearapi.finetune import record_for

    ex = Example(id="r", line=1, messages=[Message(role="user", content="2+2?"), Message(role="assistant", content="5")])
    assert record_for(ex, "drop", None, "openai") is None
    assert record_for(ex, "keep", None, "bedrock") == {"messages": [{"role": "user", "content": "2+2?"},
                                                                    {"role": "assistant", "content": "5"}]}
    fixed = record_for(ex, "correct", "4", "together")
    assert fixed is not None and fixed["messages"][-1]["content"] == "4"
    assert record_for(ex, "keep", None, "openai-dpo") is None  # no pair without a correction
    pair = record_for(ex, "correct", "4", "openai-dpo")
    assert pair is not None and preference_problems(pair, openai=True) == []
    assert (pair["preferred_output"][0]["content"], pair["non_preferred_output"][0]["content"]) == ("4", "5")
