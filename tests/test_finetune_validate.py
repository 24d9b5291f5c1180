"""`validate`: exact per-line findings, file-level rules, token counts, cost, CLI exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clearapi.cli import main
from clearapi.finetune import RULE_IDS, validate_file
from clearapi.finetune.tokens import (
    HEURISTIC_ERROR_BOUND,
    HeuristicCounter,
    count_messages,
    counter_for,
    encoding_for,
    heuristic_count,
)

try:
    import quicktok
except ImportError:  # the `tokens` extra is optional; the heuristic path is tested regardless
    quicktok = None

needs_quicktok = pytest.mark.skipif(quicktok is None, reason="quicktok-v1 (clearapi[tokens]) not installed")


def _ok(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def _found(report: Any) -> set[tuple[int | None, str | None, str, str]]:
    return {(f.line, f.field, f.rule, f.severity) for f in report.findings}


def test_malformed_openai_file_gives_exact_findings(tmp_path: Path) -> None:
    lines: list[Any] = [_ok(i) for i in range(12)]
    lines[1] = "{not json"
    lines[2] = ""
    lines[3] = [1, 2]
    lines[4] = {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]}
    lines[5] = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]}
    lines[6] = {"messages": [{"role": "user", "content": "q"}]}
    lines[7] = {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": 7}]}
    lines[8] = {"messages": [{"role": "user", "content": "q", "id": 3}, {"role": "assistant", "content": "a"}],
                "meta": 1}
    lines[9] = {"prompt": "p", "completion": "c"}
    lines[10] = {"messages": [{"role": "user", "content": [{"type": "text", "text": "q"},
                                                           {"type": "audio", "data": "x"}]},
                              {"role": "assistant", "content": "a", "weight": 0}]}
    path = _write(tmp_path / "bad.jsonl", lines)
    report = validate_file(path, "openai")
    assert _found(report) == {
        (2, None, "json", "error"),
        (3, None, "blank-line", "warning"),
        (4, None, "not-object", "error"),
        (5, "messages[0].weight", "weight-role", "error"),
        (6, "messages[1].weight", "weight-value", "error"),
        (7, "messages", "no-assistant", "error"),
        (8, "messages[0].role", "role", "error"),
        (8, "messages[1].content", "content-type", "error"),
        (9, "messages[0].id", "unknown-key", "error"),
        (9, "meta", "unknown-key", "warning"),
        (10, "prompt", "unknown-key", "warning"),
        (10, "completion", "unknown-key", "warning"),
        (10, "messages", "missing-key", "error"),
        (11, "messages[0].content[1].type", "content-type", "error"),
        (11, "messages", "nothing-trained", "warning"),
    }
    assert not report.ok and report.examples == 11  # the blank line is not an example
    assert all(f.rule in RULE_IDS for f in report.findings)


@needs_quicktok
def test_clean_file_passes_and_counts_exactly(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.jsonl", [_ok(i) for i in range(10)])
    report = validate_file(path, "openai", model="gpt-4o-mini-2024-07-18", epochs=3)
    assert report.ok and report.findings == []
    enc = quicktok.get_encoding("o200k_base")
    # OpenAI cookbook formula: 3 per message + role + content, + 3 reply priming
    expected = sum(3 + len(enc.encode_ordinary("user")) + len(enc.encode_ordinary(f"Question {i}?"))
                   + 3 + len(enc.encode_ordinary("assistant")) + len(enc.encode_ordinary(f"Answer {i}."))
                   + 3 for i in range(10))
    assert report.tokens.exact and report.tokens.counter == "o200k_base"
    assert report.tokens.total == expected == report.billed_tokens_per_epoch
    assert report.price_per_mtok == 3.00
    assert report.cost_per_epoch_usd == pytest.approx(expected * 3.00 / 1e6)
    assert report.cost_total_usd == pytest.approx(3 * expected * 3.00 / 1e6)


def test_minimum_examples_and_extension_are_file_findings(tmp_path: Path) -> None:
    path = _write(tmp_path / "few.txt", [_ok(i) for i in range(9)])
    report = validate_file(path, "openai")
    assert _found(report) == {(None, None, "min-examples", "error"), (None, None, "file-extension", "error")}
    fireworks = validate_file(_write(tmp_path / "three.jsonl", [_ok(i) for i in range(3)]), "fireworks")
    assert fireworks.ok  # Fireworks: minimum 3


def test_bedrock_rules(tmp_path: Path) -> None:
    good = {"system": "Be nice.", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines: list[Any] = [good] * 32
    lines[0] = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                             {"role": "assistant", "content": "a"}]}
    lines[1] = {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}
    lines[2] = {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
                             {"role": "assistant", "content": "a"}], "id": 5}
    lines[3] = {"messages": [{"role": "user", "content": "q"}]}
    lines[4] = {"system": ["x"], "messages": [{"role": "user", "content": "q", "weight": 1},
                                              {"role": "assistant", "content": "a"}]}
    report = validate_file(_write(tmp_path / "b.jsonl", lines), "bedrock")
    assert _found(report) == {
        (1, "messages[0].role", "role", "error"),
        (2, "messages[0].role", "role-order", "error"),
        (2, "messages[1].role", "role-order", "error"),
        (3, "id", "unknown-key", "error"),
        (3, "messages[1].role", "role-order", "error"),
        (4, "messages", "too-few-messages", "error"),
        (4, "messages[0].role", "role-order", "error"),
        (5, "system", "type", "error"),
        (5, "messages[0].weight", "unknown-key", "error"),
    }
    assert not report.tokens.exact and report.tokens.counter == "heuristic"


def test_together_and_fireworks_order_rules(tmp_path: Path) -> None:
    sys_late = {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                             {"role": "assistant", "content": "a"}]}
    two_users = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                              {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = _write(tmp_path / "t.jsonl", [sys_late, two_users] + [_ok(i) for i in range(3)])
    together = validate_file(path, "together")
    assert _found(together) == {(1, "messages[1].role", "role-order", "error"),
                                (2, "messages[2].role", "role-order", "error")}
    fireworks = validate_file(path, "fireworks")
    assert _found(fireworks) == {(1, "messages[1].role", "role-order", "error")}  # no alternation rule


def test_preference_rules(tmp_path: Path) -> None:
    good = {"input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    lines: list[Any] = [good] * 10
    lines[0] = {"input": {"messages": [{"role": "user", "content": "q"}]},
                "preferred_output": [{"role": "user", "content": "good"}],
                "non_preferred_output": {"role": "assistant", "content": "bad"}}
    lines[1] = {"messages": [], "preferred_output": [{"role": "assistant", "content": "same"}],
                "non_preferred_output": [{"role": "assistant", "content": "same"}]}
    report = validate_file(_write(tmp_path / "p.jsonl", lines), "openai-dpo")
    assert _found(report) == {
        (1, "preferred_output", "preference-output", "error"),
        (1, "non_preferred_output", "preference-output", "error"),
        (2, "messages", "unknown-key", "warning"),
        (2, "input", "missing-key", "error"),
        (2, "preferred_output", "preference-identical", "warning"),
    }


@needs_quicktok
def test_over_long_examples(tmp_path: Path) -> None:
    long_text = "lorem ipsum dolor sit amet " * 14_000  # ~70k o200k tokens, ~90k heuristic
    row = {"messages": [{"role": "user", "content": long_text}, {"role": "assistant", "content": "ok"}]}
    path = _write(tmp_path / "long.jsonl", [row] + [_ok(i) for i in range(9)])
    openai = validate_file(path, "openai")
    [f] = openai.findings
    assert (f.line, f.rule, f.severity) == (1, "example-tokens", "warning")  # OpenAI truncates
    assert "65536" in f.message and openai.ok
    bedrock_rows = [{"messages": r["messages"]} for r in [row] + [_ok(i) for i in range(31)]]
    bedrock = validate_file(_write(tmp_path / "blong.jsonl", bedrock_rows), "bedrock")
    assert {(f.line, f.rule, f.severity) for f in bedrock.findings} == {(1, "example-tokens", "error")}
    # an estimate within the error bound of the limit is only a warning
    near = {"messages": [{"role": "user", "content": "lorem ipsum dolor sit amet " * 5_200},
                         {"role": "assistant", "content": "ok"}]}
    est = count_messages(HeuristicCounter(), near["messages"])
    assert 32_000 / (1 + HEURISTIC_ERROR_BOUND) < est < 32_000 / (1 - HEURISTIC_ERROR_BOUND)
    near_report = validate_file(_write(tmp_path / "near.jsonl", [near] + [_ok(i) for i in range(31)]), "bedrock")
    assert {(f.line, f.rule, f.severity) for f in near_report.findings} == {(1, "example-tokens", "warning")}


def test_bad_utf8_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(_ok(i)).encode() + b"\n" for i in range(10))
                     + b'{"x": "\xff"}\n')
    report = validate_file(path, "openai")
    assert _found(report) == {(1, None, "bom", "warning"), (11, None, "utf8", "error")}


@needs_quicktok
def test_tokens_exact_where_public_and_heuristic_within_bound() -> None:
    assert counter_for("openai", "gpt-3.5-turbo").name == "cl100k_base"
    assert counter_for("openai", "gpt-4.1-mini-2025-04-14").name == "o200k_base"
    assert counter_for("openai", "gpt-3.5-turbo").count("Hello, world!") == 4  # tiktoken's published ids
    assert counter_for("bedrock").name == "heuristic"
    assert encoding_for("together", "Qwen/Qwen2.5-7B-Instruct") == "qwen3"
    assert encoding_for("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct") == "llama3"
    assert encoding_for("together", "mistralai/Mixtral-8x7B") is None
    enc = quicktok.get_encoding("o200k_base")
    texts = [
        "The quick brown fox jumps over the lazy dog. " * 8,
        "def f(x):\n    return [i * 2 for i in range(x) if i % 3]\n" * 6,
        "Fine-tuning improves on few-shot learning by training on many more examples than fit in a prompt. " * 4,
        "Der schnelle braune Fuchs springt über den faulen Hund, während die Sonne scheint. " * 5,
    ]
    for t in texts:
        exact = len(enc.encode_ordinary(t))
        assert abs(heuristic_count(t) - exact) / exact <= HEURISTIC_ERROR_BOUND, t[:40]
    assert heuristic_count("") == 0


def test_cli_text_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.jsonl", [_ok(i) for i in range(10)])
    bad = _write(tmp_path / "bad.jsonl", [_ok(i) for i in range(9)] + ["{oops"])
    warn = _write(tmp_path / "warn.jsonl", [dict(_ok(i), extra=1) for i in range(10)])
    assert main(["validate", str(good), "--target", "openai"]) == 0
    assert "looks acceptable" in capsys.readouterr().out
    assert main(["validate", str(warn)]) == 0  # warnings do not fail
    assert "[unknown-key]" in capsys.readouterr().out
    assert main(["validate", str(bad), "--target", "openai"]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:10: error: invalid JSON" in out and out.splitlines()[0].endswith("[json]")
    assert "would be REJECTED" in out
    assert main(["validate", str(bad), "--json", "--price", "2.5"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["errors"] == 1 and data["price_per_mtok"] == 2.5
    assert data["findings"][0] == {"file": str(bad), "line": 10, "field": None, "rule": "json",
                                   "message": data["findings"][0]["message"], "severity": "error"}
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 2


def test_findings_are_counted_but_kept_bounded(tmp_path: Path) -> None:
    path = _write(tmp_path / "many.jsonl", ["{bad"] * 30)
    report = validate_file(path, "openai", max_kept=5)
    assert report.errors == 30 and len(report.findings) == 5 and report.findings_omitted == 25
    assert [f.line for f in report.findings] == [1, 2, 3, 4, 5]
    from clearapi.finetune import format_report

    assert "... 25 more findings (25 only counted)" in format_report(report)
    few = validate_file(_write(tmp_path / "few.jsonl", ["{bad"] * 3), "openai", max_kept=2)
    assert few.findings[-1].rule == "min-examples"  # file-level findings are always kept
