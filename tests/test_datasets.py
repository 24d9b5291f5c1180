"""Dataset input: every shape, every rejection reason with its line and field, gzip, CSV, and the
no-row-lost property under arbitrary bytes."""

from __future__ import annotations

import csv
import gzip
import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearapi.datasets import DatasetReader, read_examples, to_openai_chat
from clearapi.errors import ConfigError, InputError
from clearapi.records import Example, Reject

DATA = Path(__file__).parent / "data"


def _write_lines(path: Path, rows: list[Any]) -> Path:
    """Rows are dicts (dumped as JSON), str (written as-is) or bytes (written as-is)."""
    out = bytearray()
    for row in rows:
        if isinstance(row, bytes):
            out += row
        elif isinstance(row, str):
            out += row.encode()
        else:
            out += orjson.dumps(row)
        out += b"\n"
    path.write_bytes(bytes(out))
    return path


def _chat(user: str = "hi", answer: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


def _split(items: list[Example | Reject]) -> tuple[list[Example], list[Reject]]:
    return [i for i in items if isinstance(i, Example)], [i for i in items if isinstance(i, Reject)]


# --- shapes ---------------------------------------------------------------------------------------


def test_openai_chat_shape_with_parts_tools_and_blank_line() -> None:
    reader = DatasetReader(DATA / "chat.jsonl")
    items = list(reader)
    examples, rejects = _split(items)
    assert rejects == []
    assert [e.line for e in examples] == [1, 2, 4]
    assert [e.id for e in examples] == ["c1", "c2", "line-4"]
    first, parts, tools = examples
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert first.response == "Paris." and first.weight == 1
    assert first.raw["metadata"] == {"topic": "geo"}
    assert parts.prompt_text == "What is 2+2?" and parts.response == "4"  # image part skipped
    assert tools.response == "3 degrees and raining."
    assert [m.role for m in tools.messages] == ["user", "assistant", "user", "assistant"]
    assert tools.messages[1].content == '[tool call] get_weather({"city": "Oslo"})'
    assert tools.messages[2].content == "[tool result get_weather] 3C, rain"
    assert tools.raw["tools"][0]["function"]["name"] == "get_weather"
    assert tools.raw["parallel_tool_calls"] is False
    assert {e.source_format for e in examples} == {"openai_chat"}
    stats = reader.stats
    assert (stats.rows, stats.examples, stats.rejects, stats.blank_lines) == (3, 3, 0, 1)
    assert stats.format == "openai_chat" and stats.format_line == 1


def test_alpaca_shape() -> None:
    examples, rejects = _split(list(read_examples(DATA / "alpaca.jsonl")))
    assert rejects == []
    translate, colour = examples
    assert translate.source_format == "alpaca"
    assert [(m.role, m.content) for m in translate.messages] == [
        ("user", "Translate to French.\n\nGood morning"), ("assistant", "Bonjour")]
    assert [(m.role, m.content) for m in colour.messages] == [
        ("system", "Answer in one word."), ("user", "Name a primary colour."), ("assistant", "Red")]
    assert colour.id == "line-2"


def test_dolly_spelling_of_alpaca(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "d.jsonl", [
        {"instruction": "Summarise.", "context": "A long text.", "response": "Short.", "category": "summarization"}])
    (example,) = read_examples(path)
    assert isinstance(example, Example)
    assert example.prompt_text == "Summarise.\n\nA long text." and example.response == "Short."


def test_prompt_completion_shapes() -> None:
    examples, rejects = _split(list(read_examples(DATA / "prompt_completion.jsonl")))
    assert rejects == []
    plain, conversational = examples
    assert plain.source_format == "prompt_completion"
    assert (plain.prompt_text, plain.response) == ("2+3=", "5")
    assert (conversational.prompt_text, conversational.response) == ("Say hi", "Hi!")


def test_anthropic_shape_system_string_and_blocks() -> None:
    examples, rejects = _split(list(read_examples(DATA / "anthropic.jsonl")))
    assert rejects == []
    assert [e.id for e in examples] == ["a1", "a2"]
    assert {e.source_format for e in examples} == {"anthropic"}
    assert [(m.role, m.content) for m in examples[0].messages] == [
        ("system", "You are a helpful assistant."), ("user", "Largest planet?"), ("assistant", "Jupiter.")]
    assert examples[1].messages[0].content == "Be brief."
    assert examples[1].prompt_text == "Boiling point of water in C?"


def test_bedrock_conversation_shape() -> None:
    (example,) = read_examples(DATA / "bedrock.jsonl")
    assert isinstance(example, Example)
    assert example.source_format == "anthropic"
    assert [(m.role, m.content) for m in example.messages] == [
        ("system", "You are a poet."), ("user", "A haiku about rain"), ("assistant", "Soft rain on the roof")]


def test_openai_and_anthropic_rows_may_mix(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "mix.jsonl", [_chat(), {"system": "s", **_chat("q", "a")}])
    examples, rejects = _split(list(read_examples(path)))
    assert rejects == [] and len(examples) == 2
    assert examples[1].messages[0].role == "system"


def test_csv_quoted_newlines_keep_physical_line_numbers() -> None:
    reader = DatasetReader(DATA / "dataset.csv")
    items = list(reader)
    examples, rejects = _split(items)
    assert [(e.line, e.id) for e in examples] == [(2, "q1"), (4, "q2"), (6, "q3")]
    assert examples[0].prompt_text == "What is the capital\r\nof Italy?"
    assert examples[1].prompt_text == 'Say "hi"'
    assert examples[2].response == "line one\r\nline two\r\nline three"
    assert examples[0].raw == {"id": "q1", "prompt": "What is the capital\r\nof Italy?", "response": "Rome",
                               "topic": "geo"}
    assert [(r.line, r.field) for r in rejects] == [(9, "response"), (10, "response")]
    assert rejects[0].error == "is empty"
    assert rejects[1].error == "the row has 2 fields but the header has 4"
    assert reader.stats.rows == 5 == reader.stats.examples + reader.stats.rejects
    assert reader.stats.blank_lines == 1 and reader.stats.format == "csv"


def test_tsv_picks_common_column_names() -> None:
    (example,) = read_examples(DATA / "dataset.tsv")
    assert isinstance(example, Example)
    assert (example.prompt_text, example.response, example.line) == ("2+2?", "4", 2)


def test_csv_named_columns_and_system_column(tmp_path: Path) -> None:
    path = tmp_path / "named.csv"
    path.write_text("q,a,sys\nWhy?,Because.,Be kind.\n")
    (example,) = read_examples(path, prompt_column="q", response_column="a", system_column="sys")
    assert isinstance(example, Example)
    assert [(m.role, m.content) for m in example.messages] == [
        ("system", "Be kind."), ("user", "Why?"), ("assistant", "Because.")]


def test_csv_missing_column_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("question,reply\nx,y\n")
    with pytest.raises(InputError, match=r"cols\.csv:1: the CSV has no 'response' column"):
        DatasetReader(path)
    with pytest.raises(InputError, match="no column 'nope'"):
        read_examples(path, prompt_column="nope", response_column="reply")


def test_csv_format_forced_on_other_extension_and_non_utf8_field(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"prompt,response\nok,fine\nbad \xff byte,x\n")
    examples, rejects = _split(list(read_examples(path, format="csv")))
    assert [e.line for e in examples] == [2]
    assert [(r.line, r.field, r.error) for r in rejects] == [(3, "prompt", "contains bytes that are not valid UTF-8")]
    assert rejects[0].raw is not None and "\ufffd" in rejects[0].raw


def test_json_lines_with_named_columns(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "qa.jsonl", [{"question": "Q?", "answer": "A."}, {"question": "Q2?"}])
    items = list(read_examples(path, prompt_column="question", response_column="answer"))
    assert isinstance(items[0], Example) and items[0].source_format == "columns"
    assert isinstance(items[1], Reject) and (items[1].line, items[1].field, items[1].error) == (2, "answer", "is missing")


def test_format_override_rejects_other_shapes(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "f.jsonl", [_chat(), {"instruction": "i", "output": "o"}])
    items = list(read_examples(path, format="alpaca"))
    assert isinstance(items[0], Reject) and "set by format='alpaca'" in items[0].error
    assert isinstance(items[1], Example) and items[1].source_format == "alpaca"
    with pytest.raises(ConfigError, match="unknown input format"):
        DatasetReader(path, format="yaml")


def test_id_field_and_custom_id(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "ids.jsonl", [_chat(uid="u-1", id="ignored"), _chat(uid=7), _chat()])
    ids = [i.id for i in read_examples(path, id_field="uid") if isinstance(i, Example)]
    assert ids == ["u-1", "7", "line-3"]


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(_chat()) + b"\r\n" + orjson.dumps(_chat("a", "b")) + b"\r\n")
    examples, rejects = _split(list(read_examples(path)))
    assert rejects == [] and [e.line for e in examples] == [1, 2]


def test_read_examples_is_lazy(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "lazy.jsonl", [_chat(id=str(i)) for i in range(50)])
    reader = DatasetReader(path)
    iterator = iter(reader)
    first = next(iterator)
    assert isinstance(first, Example) and first.id == "0"
    assert reader.stats.rows == 1  # only what was asked for has been read
    rest = list(iterator)
    assert len(rest) == 49 and reader.stats.rows == 50


# --- rejects: one per reason, exact line and field ----------------------------------------------


BAD_ROWS: list[tuple[Any, str | None, str]] = [
    # (row, expected field, expected substring of the reason)
    (_chat(id="dup"), None, ""),  # line 1: fine, and sets the format
    ("{not json", None, "invalid JSON"),
    ("[1, 2]", None, "expected a JSON object, got an array"),
    ('"just a string"', None, "expected a JSON object, got a string"),
    ({"messages": "hello"}, "messages", "must be an array of messages, got a string"),
    ({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]},
     "messages[0].content", "must be a string or an array of content parts, got a number"),
    ({"messages": [{"role": "user", "content": "q"}]}, "messages", "has no assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                   {"role": "user", "content": "again"}]}, "messages", "the last turn is 'user'"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
     "messages", "no user turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]},
     "messages[1].content", "is empty"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
     "messages[1].role", "unknown role 'bot'"),
    ({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]}, "messages[0].role", "is missing"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', None, "not valid UTF-8 (first at byte 47)"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]},
     "messages[1].content", "only calls tools"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]},
                   {"role": "assistant", "content": "a"}]}, "messages[0].content", "only non-text parts"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
     "messages[1].weight", "must be 0 or 1"),
    (_chat(id="dup"), "id", "duplicate id 'dup': line 1 already uses it"),
    (_chat(id=["x"]), "id", "must be a string or an integer, got an array"),
    ({"instruction": "i", "output": "o"}, None, "looks like Alpaca"),
    ({"hello": "world"}, "messages", "is missing"),
    ("x" * 300, None, "over the 200-byte cap"),
    (_chat(custom_id="later"), None, ""),  # still fine after all of the above
]


def test_every_rejection_reason_has_line_field_and_reason(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "bad.jsonl", [row for row, _, _ in BAD_ROWS])
    reader = DatasetReader(path, max_line_bytes=200)
    items = list(reader)
    assert [i.line for i in items] == list(range(1, len(BAD_ROWS) + 1))
    for item, (_, field, reason) in zip(items, BAD_ROWS, strict=True):
        if not reason:
            assert isinstance(item, Example), item
            continue
        assert isinstance(item, Reject), (item, reason)
        assert item.field == field, (item, reason)
        assert reason in item.error, (item.error, reason)
        assert item.file == str(path)
        assert item.raw is not None and len(item.raw) <= 500
    assert reader.stats.rows == len(BAD_ROWS) == reader.stats.examples + reader.stats.rejects


def test_alpaca_and_prompt_completion_rejects(tmp_path: Path) -> None:
    alpaca = _write_lines(tmp_path / "a.jsonl", [
        {"instruction": "i", "output": "o"},
        {"instruction": "i", "output": 5},
        {"instruction": "", "input": "", "output": "o"},
        {"instruction": "i", "input": "x"},
        {"instruction": "i", "output": ""},
    ])
    got = [(r.line, r.field, r.error) for r in read_examples(alpaca) if isinstance(r, Reject)]
    assert got == [(2, "output", "must be a string, got a number"), (3, "instruction", "is empty"),
                   (4, "output", "is missing"), (5, "output", "is empty")]
    pc = _write_lines(tmp_path / "p.jsonl", [
        {"prompt": "p", "completion": "c"}, {"prompt": None, "completion": "c"},
        {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "c"}]},
    ])
    got = [(r.line, r.field, r.error) for r in read_examples(pc) if isinstance(r, Reject)]
    assert got == [(2, "prompt", "is missing"), (3, "completion[0].role", "must be 'assistant', got 'user'")]


def test_unrecognised_rows_before_detection_are_rejected(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "late.jsonl", [{"foo": 1}, {"prompt": "p", "completion": "c"}])
    items = list(DatasetReader(path))
    assert isinstance(items[0], Reject) and "not a recognised row shape" in items[0].error
    assert isinstance(items[1], Example) and items[1].source_format == "prompt_completion"


def test_line_cap_boundary_and_huge_line_is_skipped_not_held(tmp_path: Path) -> None:
    cap = 128
    fits = orjson.dumps(_chat("q" * 10, "a"))
    fits += b" " * (cap - len(fits))  # exactly `cap` bytes of valid JSON
    path = _write_lines(tmp_path / "cap.jsonl", [fits, fits + b" ", b"y" * 5_000_000, fits])
    items = list(read_examples(path, max_line_bytes=cap))
    assert [type(i).__name__ for i in items] == ["Example", "Reject", "Reject", "Example"]
    assert [i.line for i in items] == [1, 2, 3, 4]
    assert "129 bytes" in items[1].error  # type: ignore[union-attr]
    assert "5,000,000 bytes" in items[2].error  # type: ignore[union-attr]
    assert items[2].raw == "y" * 500  # type: ignore[union-attr]  # the head is kept, the rest skipped


def test_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "nonl.jsonl"
    path.write_bytes(orjson.dumps(_chat()) + b"\n" + orjson.dumps(_chat("x", "y")))
    assert [i.line for i in read_examples(path) if isinstance(i, Example)] == [1, 2]


# --- whole-file errors --------------------------------------------------------------------------


def test_missing_file_directory_and_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_examples(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=str(tmp_path / "file" / "child.jsonl")):
        read_examples(tmp_path / "file" / "child.jsonl")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a 0000 file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "secret.jsonl", [_chat()])
    path.chmod(0)
    with pytest.raises(InputError, match=r"secret\.jsonl: permission denied"):
        read_examples(path)


def test_input_failure_is_reported_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_examples(tmp_path / "missing.jsonl")
    assert "\n" not in str(info.value) and str(tmp_path / "missing.jsonl") in str(info.value)


# --- gzip ---------------------------------------------------------------------------------------


def test_gzip_by_magic_bytes_not_extension(tmp_path: Path) -> None:
    plain = (DATA / "chat.jsonl").read_bytes()
    for name in ("chat.jsonl.gz", "chat.jsonl"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(plain))
        items = list(read_examples(path))
        assert [i.line for i in items] == [1, 2, 4] and all(isinstance(i, Example) for i in items)


def test_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "dataset.csv.gz"
    path.write_bytes(gzip.compress((DATA / "dataset.csv").read_bytes()))
    assert [i.line for i in read_examples(path)] == [2, 4, 6, 9, 10]


def test_corrupt_gzip_header_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip at all" * 10)
    with pytest.raises(InputError, match=r"bad\.jsonl\.gz: not a readable gzip file"):
        read_examples(path)


def test_gzip_truncated_midway_keeps_rows_read_so_far(tmp_path: Path) -> None:
    rows = [orjson.dumps(_chat(f"question {i} " + "pad " * 30, f"answer {i}")) for i in range(3000)]
    blob = gzip.compress(b"\n".join(rows) + b"\n", compresslevel=1)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    reader = DatasetReader(path)
    items = list(reader)
    examples, rejects = _split(items)
    assert len(examples) > 100
    assert [i.line for i in items] == list(range(1, len(items) + 1))
    (last,) = rejects
    assert last is items[-1] and "gzip stream could not be read" in last.error
    assert reader.stats.truncated and reader.stats.stopped_reason and str(path) in reader.stats.stopped_reason


# --- to_openai_chat -----------------------------------------------------------------------------


def test_to_openai_chat_keeps_openai_rows_intact() -> None:
    examples = [i for i in read_examples(DATA / "chat.jsonl") if isinstance(i, Example)]
    for example in examples:
        assert to_openai_chat(example) == example.raw
    tools = examples[2]
    before = orjson.dumps(tools.raw)
    out = to_openai_chat(tools, "It is 3C and raining in Oslo.")
    assert out["messages"][-1] == {"role": "assistant", "content": "It is 3C and raining in Oslo."}
    assert out["messages"][:-1] == tools.raw["messages"][:-1]
    assert out["tools"] == tools.raw["tools"] and out["parallel_tool_calls"] is False
    assert orjson.dumps(tools.raw) == before  # the example itself is not mutated
    weighted = to_openai_chat(examples[0], "Paris")
    assert weighted["messages"][-1] == {"role": "assistant", "content": "Paris", "weight": 1}
    assert weighted["metadata"] == {"topic": "geo"} and weighted["id"] == "c1"


def test_to_openai_chat_builds_messages_for_other_shapes() -> None:
    translate, colour = (i for i in read_examples(DATA / "alpaca.jsonl") if isinstance(i, Example))
    assert to_openai_chat(translate) == {
        "messages": [{"role": "user", "content": "Translate to French.\n\nGood morning"},
                     {"role": "assistant", "content": "Bonjour"}],
        "category": "translation"}
    assert to_openai_chat(colour, "Blue")["messages"] == [
        {"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name a primary colour."},
        {"role": "assistant", "content": "Blue"}]
    claude = next(i for i in read_examples(DATA / "anthropic.jsonl") if isinstance(i, Example))
    out = to_openai_chat(claude)
    assert out == {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                {"role": "user", "content": "Largest planet?"},
                                {"role": "assistant", "content": "Jupiter."}], "custom_id": "a1"}
    row = next(i for i in read_examples(DATA / "dataset.csv") if isinstance(i, Example))
    assert to_openai_chat(row) == {"messages": [{"role": "user", "content": "What is the capital\r\nof Italy?"},
                                                {"role": "assistant", "content": "Rome"}],
                                   "id": "q1", "topic": "geo"}


def test_to_openai_chat_round_trips_through_the_reader(tmp_path: Path) -> None:
    sources = ["chat.jsonl", "alpaca.jsonl", "prompt_completion.jsonl", "anthropic.jsonl", "bedrock.jsonl",
               "dataset.csv"]
    originals = [i for name in sources for i in read_examples(DATA / name) if isinstance(i, Example)]
    out = _write_lines(tmp_path / "curated.jsonl", [to_openai_chat(e, f"new {n}") for n, e in enumerate(originals)])
    again = list(read_examples(out))
    assert all(isinstance(i, Example) and i.source_format == "openai_chat" for i in again)
    for n, (before, after) in enumerate(zip(originals, again, strict=True)):
        assert isinstance(after, Example)
        assert after.prompt_messages == before.prompt_messages
        assert after.response == f"new {n}"


def test_to_openai_chat_for_hand_built_examples() -> None:
    example = Example(id="x", line=1, source_format="alpaca",
                      messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],  # type: ignore[list-item]
                      raw={"instruction": "q", "output": "a", "tag": 3})
    assert to_openai_chat(example, "b") == {"messages": [{"role": "user", "content": "q"},
                                                         {"role": "assistant", "content": "b"}], "tag": 3}


# --- the property: nothing raises, every non-blank line is accounted for exactly once -------------


def _is_row(line: bytes, number: int, cap: int) -> bool:
    if len(line) > cap:
        return True
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    return bool(line.strip(b" \t\r"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["messages", "role", "content", "id", "instruction", "output", "prompt", "completion",
                         "system", "input", "weight", "x"]) | st.text(max_size=5), inner, max_size=5),
    max_leaves=12,
)
_roles = st.sampled_from(["user", "assistant", "system", "tool", "bot", ""])
_messages_rows = st.builds(
    lambda turns, ident: {"messages": [{"role": r, "content": c} for r, c in turns], **({"id": ident} if ident else {})},
    st.lists(st.tuples(_roles, st.text(max_size=8)), max_size=4), st.sampled_from([None, "a", "b", 1]))
_lines = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    _json_values.map(lambda v: orjson.dumps(v)),
    _messages_rows.map(lambda v: orjson.dumps(v)),
    st.sampled_from([b"", b"   ", b"\r", b"\t \r", b"\xef\xbb\xbf", b"\xff\xfe", b"{", b"null"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_lines, max_size=25), cap=st.integers(min_value=1, max_value=120),
       trailing_newline=st.booleans())
def test_property_every_nonblank_line_is_one_item(tmp_path: Path, lines: list[bytes], cap: int,
                                                   trailing_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    if data.startswith(b"\x1f\x8b"):
        data = b" " + data  # gzip magic is a whole-file format decision, tested separately
    path = tmp_path / "prop.jsonl"
    path.write_bytes(data)
    physical = data.split(b"\n")
    if physical and physical[-1] == b"":
        physical.pop()
    expected = [n for n, line in enumerate(physical, 1) if _is_row(line, n, cap)]
    reader = DatasetReader(path, max_line_bytes=cap)
    items = list(reader)
    assert [i.line for i in items] == expected
    assert reader.stats.rows == len(items) == reader.stats.examples + reader.stats.rejects
    assert reader.stats.blank_lines == len(physical) - len(expected)
    for item in items:
        if isinstance(item, Reject):
            assert item.error and (item.raw is None or len(item.raw) <= 500)
            orjson.dumps(item.model_dump())  # always writable to rejects.jsonl


_cells = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('\n\r",\t '),
                 max_size=12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.lists(_cells, max_size=4), max_size=12))
def test_property_csv_records_keep_their_start_lines(tmp_path: Path, records: list[list[str]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["prompt", "response", "note"])
    writer.writerows(records)
    path = tmp_path / "prop.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    starts: dict[int, list[str]] = {}
    line = 2
    for record in records:
        blank = not record or (len(record) == 1 and not record[0].strip(" \t\r\n"))
        if not blank:
            starts[line] = record
        line += 1 + sum(cell.count("\n") for cell in record)
    expected = list(starts)
    reader = DatasetReader(path)
    items = list(reader)
    assert [i.line for i in items] == expected
    assert reader.stats.rows == len(items) == reader.stats.examples + reader.stats.rejects
    for item in items:
        if isinstance(item, Example):
            assert item.raw["prompt"] == starts[item.line][0]


def test_csv_overlong_line_rejects_its_record_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes(b"prompt,response\nq1,a1\nq2," + b"z" * 10_000 + b"\nq3,a3\n")
    items = list(read_examples(path, max_line_bytes=100))
    assert [(type(i).__name__, i.line) for i in items] == [("Example", 2), ("Reject", 3), ("Example", 4)]
    assert isinstance(items[1], Reject) and "the line is 10,003 bytes, over the 100-byte cap" in items[1].error
    assert isinstance(items[2], Example) and items[2].response == "a3"


def test_csv_quoted_field_spanning_an_overlong_line(tmp_path: Path) -> None:
    path = tmp_path / "span.csv"
    path.write_bytes(b'prompt,response\nq1,"starts\n' + b"z" * 500 + b'\nends"\nq2,a2\n')
    reader = DatasetReader(path, max_line_bytes=100)
    items = list(reader)
    assert items[0].line == 2 and isinstance(items[0], Reject) and "line 3 is 500 bytes" in items[0].error
    assert items[-1].line == 5 and isinstance(items[-1], Example)
    assert reader.stats.rows == len(items)


def test_a_json_array_file_gets_a_conversion_hint(tmp_path: Path) -> None:
    pretty = tmp_path / "alpaca_data.json"
    pretty.write_text('[\n  {"instruction": "i", "input": "", "output": "o"}\n]\n')
    with pytest.raises(InputError, match=r"holds a JSON array.*jq -c '\.\[\]'"):
        read_examples(pretty)
    one_line = tmp_path / "one.json"
    one_line.write_bytes(orjson.dumps([_chat(), _chat()]))
    with pytest.raises(InputError, match="holds a JSON array"):
        read_examples(one_line)
    lines = _write_lines(tmp_path / "lines.json", [_chat()])  # JSON Lines under a .json name is fine
    assert [type(i).__name__ for i in read_examples(lines)] == ["Example"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), cap=st.integers(min_value=16, max_value=60))
def test_property_csv_never_raises_on_arbitrary_bytes(tmp_path: Path, body: bytes, cap: int) -> None:
    path = tmp_path / "junk.csv"
    path.write_bytes(b"prompt,response\n" + body)
    reader = DatasetReader(path, max_line_bytes=cap)
    items = list(reader)
    lines = [i.line for i in items]
    assert lines == sorted(set(lines)) and all(2 <= n <= body.count(b"\n") + 2 for n in lines)
    assert reader.stats.rows == len(items) == reader.stats.examples + reader.stats.rejects
    for item in items:
        orjson.dumps(item.model_dump())


@pytest.mark.parametrize("memory_ids", [1, 7, 64])
def test_duplicate_ids_are_found_across_spills_to_disk(memory_ids: int) -> None:
    """Past `memory_ids` the id hashes move to a temporary file: a repeat is still caught, with the
    line that used the id first, whether that line is in memory or already spilled, and the table
    in memory never outgrows its bound."""
    from clearapi.datasets import _IdSet

    ids = _IdSet(memory_ids=memory_ids)
    first_lines = {}
    for line in range(1, 401):
        key = f"row-{line % 250}"  # lines 251-400 repeat ids of lines 1-150
        got = ids.add(key, line)
        if key in first_lines:
            assert got == first_lines[key], (key, line, got)
        else:
            assert got is None, (key, line, got)
            first_lines[key] = line
        assert ids._used <= memory_ids and ids._mask < max(1024, 4 * memory_ids)
    assert (ids._db is not None) == (memory_ids < 250)
    ids.close()
    assert ids._db is None


def test_a_file_of_many_ids_spills_and_still_rejects_the_repeat(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the reader: with a tiny in-memory bound, 300 distinct ids are all examples and the
    repeats of an early and a late id are rejected naming their first lines."""
    from clearapi import datasets

    monkeypatch.setattr(datasets._IdSet, "MEMORY_IDS", 16)
    rows = [_chat(id=f"id-{i}") for i in range(300)] + [_chat(id="id-3"), _chat(id="id-290")]
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    items = list(DatasetReader(path))
    rejects = [i for i in items if isinstance(i, Reject)]
    assert sum(isinstance(i, Example) for i in items) == 300
    assert [r.error for r in rejects] == ["duplicate id 'id-3': line 4 already uses it",
                                          "duplicate id 'id-290': line 291 already uses it"]


def test_ids_stay_in_memory_when_no_temporary_file_can_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from clearapi.datasets import _IdSet

    def refuse(*_: Any, **__: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    ids = _IdSet(memory_ids=8)
    assert [ids.add(f"k{i}", i) for i in range(1, 41)] == [None] * 40
    assert ids.add("k3", 99) == 3 and ids.add("k40", 99) == 40
    assert ids._db is None and ids._used == 40
