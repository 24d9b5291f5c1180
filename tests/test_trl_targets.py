"""TRL targets: conversational SFT rows and DPO preference rows, in the shapes TRL's trainers read
(and, through `datasets`, as one Arrow table: every row has the same column types)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clearapi.datasets import read_examples
from clearapi.finetune import TARGETS, record_for, render, render_preference
from clearapi.records import Example

ROWS = [
    {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                  {"role": "assistant", "content": "5"}]},
    {"instruction": "Name a colour.", "output": "Blue."},
    {"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."},
                       {"from": "human", "value": "Bye?"}, {"from": "gpt", "value": "Bye."}]},
]


def _examples(tmp_path: Path) -> list[Example]:
    out = []
    for i, row in enumerate(ROWS):
        path = tmp_path / f"{i}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        out += [e for e in read_examples(path) if isinstance(e, Example)]
    assert len(out) == len(ROWS)
    return out


def test_trl_sft_is_role_content_messages_with_the_correction(tmp_path: Path) -> None:
    examples = _examples(tmp_path)
    assert TARGETS["trl-sft"].preference is False
    rec = render(examples[0], "4", "trl-sft")
    assert rec == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                                {"role": "assistant", "content": "4"}]}
    multi = render(examples[2], None, "trl-sft")
    assert [m["role"] for m in multi["messages"]] == ["user", "assistant", "user", "assistant"]
    assert record_for(examples[1], "drop", None, "trl-sft") is None


def test_trl_dpo_pairs_prompt_chosen_rejected(tmp_path: Path) -> None:
    examples = _examples(tmp_path)
    assert TARGETS["trl-dpo"].preference is True
    rec = render_preference(examples[0], "4", examples[0].response, "trl-dpo")
    assert rec["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "4"}]
    assert rec["rejected"] == [{"role": "assistant", "content": "5"}]
    assert record_for(examples[0], "keep", None, "trl-dpo") is None  # only accepted corrections make pairs
    assert record_for(examples[0], "correct", "4", "trl-dpo") == rec


def test_trl_rows_load_as_one_datasets_table(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    examples = _examples(tmp_path)
    sft = datasets.Dataset.from_list([render(e, None, "trl-sft") for e in examples])
    assert sft.column_names == ["messages"] and len(sft) == 3
    dpo = datasets.Dataset.from_list([render_preference(e, "x", e.response, "trl-dpo") for e in examples])
    assert dpo.column_names == ["prompt", "chosen", "rejected"]


def test_convert_cli_writes_trl_sft(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clearapi.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[0]).replace("2+2", "3+3") + "\n")
    out = tmp_path / "sft.jsonl"
    assert main(["convert", str(src), "--target", "trl-sft", "-o", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(set(r) == {"messages"} for r in rows)
    assert rows[1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_convert_to_a_hugging_face_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    from clearapi.cli import main

    src = tmp_path / "in.jsonl"
    rows = [{"instruction": f"Say {i}.", "output": f"{i}."} for i in range(10)] + [{"instruction": "x", "output": ""}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "hfdir"
    assert main(["convert", str(src), "--target", "hf", "-o", str(out), "--validation-split", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 11 and result["rejected"] == 1 and result["written"] + result["validation"] == 10
    assert not list(out.glob(".*.partial*")), list(out.iterdir())
    assert result["rejects_output"] == str(out / "rejects.jsonl")
    assert json.loads((out / "rejects.jsonl").read_text())["line"] == 11
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))  # a cache per test: paths recur
    assert set(loaded) == {"train", "validation"}
    assert len(loaded["train"]) + len(loaded["validation"]) == 10
    first = loaded["train"][0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"] and first[0]["content"].startswith("Say ")
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train.parquet" in card and "SFTTrainer" in card


def test_curate_target_hf_writes_a_dataset_folder(tmp_path: Path, emulator: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    from clearapi.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"What is {i}+{i}?", "output": str(2 * i)}) + "\n"
                           for i in range(5)))
    out = tmp_path / "out"
    assert main(["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                 "--base-url", emulator.base_url + "/v1", "--no-cache", "--samples", "1", "--target", "hf",
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    loaded = datasets.load_dataset(str(out / "hf"), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert len(loaded) == summary["counts"]["kept"] + summary["counts"]["corrected"]
    assert [m["role"] for m in loaded[0]["messages"]] == ["user", "assistant"]
