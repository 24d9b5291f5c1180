"""`validate` knows each target's rules: Amazon Nova's schema and reserved words, Together's
"exactly one assistant message" for preference outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clearapi.datasets import read_examples
from clearapi.finetune import render, render_preference, validate_file
from clearapi.records import Example


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _examples(tmp_path: Path) -> list[Example]:
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{i}+{i}?"},
                          {"role": "assistant", "content": str(2 * i)}]} for i in range(3)]
    return [e for e in read_examples(_write(tmp_path / "in.jsonl", rows)) if isinstance(e, Example)]


def test_bedrock_nova_records_pass_and_reserved_words_fail(tmp_path: Path) -> None:
    records = [render(e, None, "bedrock-nova") for e in _examples(tmp_path)]
    assert records[0] == {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Be brief."}],
                          "messages": [{"role": "user", "content": [{"text": "0+0?"}]},
                                       {"role": "assistant", "content": [{"text": "0"}]}]}
    report = validate_file(_write(tmp_path / "nova.jsonl", records), "bedrock-nova")
    assert report.errors == 0, [str(f) for f in report.findings]

    bad = [dict(records[0]), dict(records[1])]
    bad[0]["messages"] = [{"role": "user", "content": [{"text": "User: what is 0+0? [EOS]"}]},
                          {"role": "assistant", "content": [{"text": "0"}]}]
    bad[1]["messages"] = [{"role": "assistant", "content": [{"text": "hi"}]}]
    report = validate_file(_write(tmp_path / "bad.jsonl", bad), "bedrock-nova")
    found = {(f.line, f.field, f.rule) for f in report.findings}
    assert (1, "messages[0].content", "reserved-word") in found
    assert (2, "messages[0].role", "role-order") in found
    assert any("[EOS]" in f.message and "User:" in f.message for f in report.findings)


def test_together_preference_needs_exactly_one_assistant_message(tmp_path: Path) -> None:
    ex = _examples(tmp_path)[1]
    good = render_preference(ex, "4", "5", "together-dpo")
    two = json.loads(json.dumps(good))
    two["preferred_output"].append({"role": "assistant", "content": "and more"})
    user = json.loads(json.dumps(good))
    user["non_preferred_output"] = [{"role": "user", "content": "5"}]
    report = validate_file(_write(tmp_path / "p.jsonl", [good, two, user]), "together-dpo")
    found = {(f.line, f.field, f.rule) for f in report.findings if f.severity == "error"}
    assert found == {(2, "preferred_output", "preference-output"), (3, "non_preferred_output", "preference-output")}
