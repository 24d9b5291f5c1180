"""The Python API takes data where it lives (paths, lists, generators, DataFrames, `datasets`),
has blocking twins that work inside a running event loop (as in Jupyter), and reads results back.
Real SDK over real HTTP to the loopback emulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import clearapi
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int) -> list[dict[str, Any]]:
    out = []
    for line in (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:n]:
        obj = json.loads(line)
        msgs = [m for m in obj["messages"] if m["role"] != "system"]
        out.append({"id": obj["id"], "prompt": msgs[0]["content"], "response": msgs[-1]["content"]})
    out.append({"id": "bad", "prompt": "What is 2+2?", "response": ""})
    return out


def _opts(emu: EmulatorThread) -> dict[str, Any]:
    return dict(provider="openai", model="gpt-4o-mini", base_url=emu.base_url + "/v1", cache=False, samples=2,
                api_key="sk-test-not-a-real-key-000")


def test_score_sync_takes_a_list_a_generator_and_a_path(tmp_path: Path, emulator: EmulatorThread) -> None:
    rows = _rows(4)
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {}
    for name, source in (("list", rows), ("generator", (r for r in rows)), ("path", path)):
        rejects: list[clearapi.Reject] = []
        scores = clearapi.score_sync(source, rejects=rejects, **_opts(emulator))
        assert [s.id for s in scores] == [r["id"] for r in rows[:-1]]
        assert [(r.line, r.field) for r in rejects] == [(5, "response")]
        results[name] = [(s.id, s.confidence) for s in scores]
    assert results["list"] == results["generator"] == results["path"]


async def test_curate_sync_inside_a_running_loop_with_a_dataframe_round_trip(
        tmp_path: Path, emulator: EmulatorThread) -> None:
    pd = pytest.importorskip("pandas", reason="needs the pandas extra (dev installs it)")
    asyncio.get_running_loop()  # a loop is running here, as in a notebook cell
    pending = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(pending)  # what a user would hit without the twin
    pending.close()
    frame = pd.DataFrame(_rows(5))
    summary = clearapi.curate_sync(frame, tmp_path / "out", action="filter", **_opts(emulator))
    assert summary.completed and summary.input == "<DataFrame>"
    c = summary.counts
    assert (c.rows, c.rejected) == (6, 1) and c.kept + c.dropped == 5
    results = clearapi.load_results(tmp_path / "out")
    assert isinstance(results, pd.DataFrame)
    assert list(results["id"]) == list(frame["id"][:5])
    assert results["confidence"].between(0, 1).all()
    plain = clearapi.load_results(tmp_path / "out", as_frame=False)
    assert [s.id for s in plain] == list(results["id"]) and isinstance(plain[0], clearapi.Score)


def test_datasets_dataset_in(tmp_path: Path, emulator: EmulatorThread) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra (dev installs it)")
    scores = clearapi.score_sync(datasets.Dataset.from_list(_rows(3)), **_opts(emulator))
    assert [s.id for s in scores] == [r["id"] for r in _rows(3)[:-1]]


async def test_async_api_takes_a_dataframe(tmp_path: Path, emulator: EmulatorThread) -> None:
    pd = pytest.importorskip("pandas", reason="needs the pandas extra (dev installs it)")
    rejects: list[clearapi.Reject] = []
    scores = [s async for s in clearapi.score(pd.DataFrame(_rows(3)), on_reject=rejects.append,
                                              **_opts(emulator))]
    assert len(scores) == 3 and rejects[0].file == "<DataFrame>" and rejects[0].line == 4


def test_load_results_of_a_folder_without_scores(tmp_path: Path) -> None:
    with pytest.raises(clearapi.InputError, match=r"scores\.jsonl"):
        clearapi.load_results(tmp_path)
