"""Inputs beyond JSONL/CSV: Parquet, Hugging Face `datasets` folders and `hf:` names, ShareGPT,
question/answer keys, named columns; the same per-row reject accounting as JSONL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clearapi.cli import main
from clearapi.datasets import DatasetReader
from clearapi.errors import InputError
from clearapi.records import Example, Reject
from clearapi.sources import TableReader, open_input
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-not-a-real-key-000"


def _qa_rows(n: int) -> list[dict[str, Any]]:
    """The first `n` examples rows as id/question/answer, with one bad row (an empty answer) at row 3."""
    rows = []
    for line in (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:n]:
        obj = json.loads(line)
        msgs = [m for m in obj["messages"] if m["role"] != "system"]
        rows.append({"id": obj["id"], "question": msgs[0]["content"], "answer": msgs[-1]["content"]})
    rows.insert(2, {"id": "bad", "question": "What is 2+2?", "answer": "  "})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the parquet extra; dev installs it)")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _scores(out: Path) -> dict[str, tuple[float, dict[str, Any]]]:
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    return {r["id"]: (r["confidence"], r["signals"]) for r in rows}


def test_parquet_and_the_same_rows_as_jsonl_give_the_same_scores(tmp_path: Path, emulator: EmulatorThread,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    rows = _qa_rows(6)
    # a name that says nothing: Parquet is recognised by its magic bytes
    sources = {"parquet": _write_parquet(tmp_path / "data.bin", rows), "jsonl": _write_jsonl(tmp_path / "d.jsonl", rows)}
    results = {}
    for kind, src in sources.items():
        out = tmp_path / kind
        code = main(["score", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                     "--base-url", emulator.base_url + "/v1", "--no-cache", "--samples", "2"])
        assert code == 0
        rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
        assert [(r["file"], r["line"], r["field"]) for r in rejects] == [(str(src), 3, "answer")]
        results[kind] = _scores(out)
    assert len(results["parquet"]) == len(rows) - 1
    assert results["parquet"] == results["jsonl"]


def test_named_columns_work_on_parquet_and_jsonl(tmp_path: Path) -> None:
    rows = [{"q": "What is 2+2?", "a": "4", "n": 1}, {"q": "Capital of France?", "a": None, "n": 2}]
    for src in (_write_parquet(tmp_path / "t.parquet", rows), _write_jsonl(tmp_path / "t.jsonl", rows)):
        reader = open_input(src, prompt_column="q", response_column="a")
        items = list(reader)
        assert isinstance(items[0], Example) and items[0].messages[-1].content == "4"
        assert isinstance(items[1], Reject) and (items[1].line, items[1].field) == (2, "a")
        assert (reader.stats.rows, reader.stats.examples, reader.stats.rejects) == (2, 1, 1)


def test_unknown_shape_names_the_column_options(tmp_path: Path) -> None:
    (item,) = list(DatasetReader(_write_jsonl(tmp_path / "x.jsonl", [{"q": "hi", "a": "there"}])))
    assert isinstance(item, Reject)
    assert "--prompt-column" in item.error and "--response-column" in item.error and "'q'" in item.error


def test_sharegpt_and_question_answer_rows(tmp_path: Path) -> None:
    rows = [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                           {"from": "gpt", "value": "Hello."}]},
        {"conversations": [{"from": "human", "value": "Hi?"}, {"from": "robot", "value": "Beep."}]},
        {"conversations": [{"from": "human", "value": "Hi?"}]},
    ]
    items = list(DatasetReader(_write_jsonl(tmp_path / "s.jsonl", rows)))
    assert isinstance(items[0], Example)
    assert [(m.role, m.content) for m in items[0].messages] == [
        ("system", "Be brief."), ("user", "Hi?"), ("assistant", "Hello.")]
    assert isinstance(items[1], Reject) and items[1].field == "conversations[1].from"
    assert isinstance(items[2], Reject) and "no assistant turn" in items[2].error
    qa = list(DatasetReader(_write_jsonl(tmp_path / "q.jsonl", [{"question": "2+2?", "answer": "4"},
                                                                 {"question": "3+3?", "answer": 6}])))
    assert isinstance(qa[0], Example) and qa[0].messages[-1].content == "4"
    assert isinstance(qa[1], Reject) and qa[1].field == "answer" and "string" in qa[1].error


def test_datasets_folder_from_save_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    rows = _qa_rows(3)
    folder = tmp_path / "ds"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    reader = open_input(folder)
    assert isinstance(reader, TableReader)
    items = list(reader)
    assert [type(i).__name__ for i in items] == ["Example", "Example", "Reject", "Example"]
    assert items[2].line == 3 and items[2].field == "answer" and items[2].file == str(folder)
    # a DatasetDict folder: the train split is read
    splits = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                          "test": datasets.Dataset.from_list(rows[2:])}).save_to_disk(str(splits))
    assert len(list(open_input(splits))) == 2


def test_hub_name_offline_is_a_clear_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "OPENAI_API_KEY": KEY}
    done = subprocess.run([sys.executable, "-m", "clearapi", "score", "hf:someorg/somedata:train", "-o",
                           str(tmp_path / "out"), "--provider", "openai", "--no-cache"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "hf:someorg/somedata:train" in done.stderr and "Hugging Face Hub" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write_parquet(tmp_path / "t.parquet", [{"prompt": "a", "response": "b"}])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(InputError, match=r"clearapi\[parquet\]"):
        open_input(src)


def test_broken_parquet_is_an_input_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="needs the parquet extra (dev installs it)")
    src = tmp_path / "broken.parquet"
    src.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        open_input(src)


def test_convert_reads_parquet_too(tmp_path: Path) -> None:
    src = _write_parquet(tmp_path / "rows.parquet", _qa_rows(4))
    out = tmp_path / "sft.jsonl"
    assert main(["convert", str(src), "--target", "trl-sft", "-o", str(out), "--quiet"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["messages"][-1]["role"] == "assistant"
    (reject,) = [json.loads(x) for x in (tmp_path / "sft.rejects.jsonl").read_text().splitlines()]
    assert (reject["line"], reject["field"]) == (3, "answer")


def test_each_shape_through_the_cli_and_the_python_api(tmp_path: Path, emulator: EmulatorThread,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import clearapi

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    qa = [r for r in _qa_rows(3) if r["id"] != "bad"]
    shapes: dict[str, Any] = {
        "sharegpt.jsonl": [{"id": r["id"], "conversations": [{"from": "human", "value": r["question"]},
                                                             {"from": "gpt", "value": r["answer"]}]} for r in qa],
        "qa.jsonl": qa,
        "cols.jsonl": [{"id": r["id"], "q": r["question"], "a": r["answer"]} for r in qa],
    }
    try:
        import datasets

        folder = tmp_path / "hf_folder"
        datasets.Dataset.from_list(qa).save_to_disk(str(folder))
        shapes["hf_folder"] = folder
    except ImportError:
        pass
    opts = dict(provider="openai", model="gpt-4o-mini", base_url=emulator.base_url + "/v1", cache=False, samples=1)
    for name, rows in shapes.items():
        src = rows if isinstance(rows, Path) else _write_jsonl(tmp_path / name, rows)
        columns = ["--prompt-column", "q", "--response-column", "a"] if name == "cols.jsonl" else []
        out = tmp_path / f"out-{name}"
        assert main(["score", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                     "--base-url", emulator.base_url + "/v1", "--no-cache", "--samples", "1", "--quiet",
                     *columns]) == 0, name
        cli = _scores(out)
        assert sorted(cli) == sorted(r["id"] for r in qa), name
        kwargs = dict(prompt_column="q", response_column="a") if columns else {}
        api = clearapi.score_sync(src, **opts, **kwargs)
        assert {s.id: s.confidence for s in api} == {k: v[0] for k, v in cli.items()}, name
