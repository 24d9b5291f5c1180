"""`convert`: from a dataset file or a curate OUTDIR, to every target, with a stratified split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clearapi.cli import main
from clearapi.errors import ConfigError, InputError
from clearapi.finetune import convert, validate_file
from clearapi.records import Score


def _row(i: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                         {"role": "assistant", "content": f"It is {2 * i + 1}." if i % 3 == 0 else f"It is {2 * i}."}]}


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    """A finished curate folder: 40 rows; every 3rd corrected, every 7th dropped, line 5 unreadable."""
    data = tmp_path / "data.jsonl"
    lines = [json.dumps(_row(i)) for i in range(40)]
    lines[4] = "{broken"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    out.mkdir()
    scores = []
    for i in range(40):
        if i == 4:
            continue  # rejected rows get no score
        action = "correct" if i % 3 == 0 else ("drop" if i % 7 == 0 else "keep")
        scores.append(Score(line=i + 1, id=f"line-{i + 1}", action=action, confidence=0.5,
                            correction=f"It is {2 * i}." if action == "correct" else None))
    (out / "scores.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in scores))
    (out / "summary.json").write_text(json.dumps({"input": str(data)}))
    return out


def test_sft_from_outdir_applies_decisions(outdir: Path, tmp_path: Path) -> None:
    result = convert(outdir, tmp_path / "train.jsonl", "openai")
    rows = _read(tmp_path / "train.jsonl")
    corrected = [i for i in range(40) if i % 3 == 0]
    dropped = [i for i in range(40) if i % 7 == 0 and i % 3 != 0]
    assert result.rows == 40 and result.rejected == 1 and result.skipped == {"dropped": len(dropped)}
    assert result.written == 40 - 1 - len(dropped) == len(rows) and result.adds_up
    # every answer is now right: corrections applied, kept rows untouched
    for rec in rows:
        q = rec["messages"][0]["content"]
        i = int(q.split()[2])
        assert rec["messages"][-1]["content"] == f"It is {2 * i}."
        assert i not in dropped and i != 4
    assert sum(1 for rec in rows if int(rec["messages"][0]["content"].split()[2]) in corrected) == len(corrected)
    assert json.loads((tmp_path / "train.rejects.jsonl").read_text())["line"] == 5
    assert validate_file(tmp_path / "train.jsonl", "openai").ok


def test_dpo_pairs_from_corrections(outdir: Path, tmp_path: Path) -> None:
    result = convert(outdir, tmp_path / "pairs.jsonl", "openai-dpo")
    pairs = _read(tmp_path / "pairs.jsonl")
    assert len(pairs) == result.written == len([i for i in range(40) if i % 3 == 0])
    for p in pairs:
        i = int(p["input"]["messages"][0]["content"].split()[2])
        assert p["preferred_output"] == [{"role": "assistant", "content": f"It is {2 * i}."}]
        assert p["non_preferred_output"] == [{"role": "assistant", "content": f"It is {2 * i + 1}."}]
    assert result.adds_up and result.skipped["no correction to pair"] > 0
    assert validate_file(tmp_path / "pairs.jsonl", "openai-dpo").ok


def test_validation_split_is_stratified_and_seeded(outdir: Path, tmp_path: Path) -> None:
    a = convert(outdir, tmp_path / "a.jsonl", "together", validation_split=0.25, seed=7)
    convert(outdir, tmp_path / "b.jsonl", "together", validation_split=0.25, seed=7)
    assert a.validation == round(0.25 * (a.written + a.validation))
    assert _read(tmp_path / "a.validation.jsonl") == _read(tmp_path / "b.validation.jsonl")
    val = _read(tmp_path / "a.validation.jsonl")
    train = _read(tmp_path / "a.jsonl")
    n_corr = sum(1 for r in val + train if int(r["messages"][0]["content"].split()[2]) % 3 == 0)
    v_corr = sum(1 for r in val if int(r["messages"][0]["content"].split()[2]) % 3 == 0)
    assert abs(v_corr - len(val) * n_corr / (len(val) + len(train))) <= 1
    assert not {json.dumps(r) for r in val} & {json.dumps(r) for r in train}
    assert a.adds_up


def test_plain_dataset_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {i}", "output": str(i)}) + "\n" for i in range(12)))
    result = convert(data, tmp_path / "bed.jsonl", "bedrock")
    assert result.written == 12
    assert _read(tmp_path / "bed.jsonl")[3] == {"messages": [{"role": "user", "content": "Say 3"},
                                                             {"role": "assistant", "content": "3"}]}
    with pytest.raises(ConfigError):
        convert(data, tmp_path / "x.jsonl", "openai-dpo")  # pairs need curate's corrections
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(InputError):
        convert(empty, tmp_path / "x.jsonl", "openai")


def test_cli_convert(outdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fw.jsonl"
    assert main(["convert", str(outdir), "--target", "fireworks", "-o", str(out), "--validation-split", "0.2"]) == 0
    text = capsys.readouterr().out
    assert "40 rows:" in text and "1 rejected" in text and "looks acceptable" in text
    assert (tmp_path / "fw.validation.jsonl").exists()
    assert main(["convert", str(outdir), "--target", "openai", "-o", str(out), "--validation-split", "1.5"]) == 2
    # 35 rows written: enough for Bedrock's 32 minimum, unless a fifth goes to validation
    assert main(["convert", str(outdir), "--target", "bedrock", "-o", str(out), "--strict"]) == 0
    assert main(["convert", str(outdir), "--target", "bedrock", "-o", str(out), "--strict",
                 "--validation-split", "0.2"]) == 1
    assert main(["convert", str(outdir), "--target", "openai-dpo", "-o", str(out), "--strict"]) == 0
