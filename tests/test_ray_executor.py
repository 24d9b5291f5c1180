"""`--executor ray`: a run scored by a pool of Ray actors writes the same files as one process,
keeps to one rate limit for the whole pool, survives a worker killed mid-run, and the Ray Data
step scores a Parquet pipeline. Real parts throughout: a local Ray cluster, the real OpenAI SDK
over HTTP to the loopback emulator, SQLite caches on disk.

Select them with ``-m ray``; without the ``ray`` extra they are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'clearapi[ray]'")

from clearapi.clear.curation import curate, score  # noqa: E402
from clearapi.executors.ray_exec import WORKER_NAME  # noqa: E402
from clearapi_testing.emulator import EmulatorThread  # noqa: E402
from clearapi_testing.emulator.config import EmulatorConfig, Latency  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-not-a-real-key-000"
CUT = 0.1  # the emulator's answers score low; a cut that keeps some rows and drops others
FILES = ("curated.jsonl", "scores.jsonl", "rejects.jsonl", "failed.jsonl")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One small local cluster for the module (2 CPUs, no dashboard, a small object store)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the workers inherit it from this process
    return KEY


def _input(tmp_path: Path, n: int) -> Path:
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    lines[3:3] = ["{not json"]  # a bad line in the middle: line numbers and rejects must survive
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clearapi", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)


def test_ray_run_writes_the_same_files_under_one_limit(tmp_path: Path, cluster: str, key: str) -> None:
    """2 workers against a 10 req/s server told --rpm 600: the CLI (joining the cluster named by
    RAY_ADDRESS) writes byte-identical outputs to a one-process run, and the shared limiter keeps
    the pair to the one limit (two limits of 600 each would draw 429s by the dozen)."""
    src = _input(tmp_path, 30)
    with EmulatorThread(EmulatorConfig(rpm=600)) as emu:
        common = ["--provider", "openai", "--base-url", emu.base_url + "/v1", "--rpm", "600", "--quiet"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_ADDRESS=cluster)
        local = _cli("curate", str(src), "-o", str(tmp_path / "local"), "--cache", str(tmp_path / "a.sqlite"),
                     *common, env=env)
        assert local.returncode == 0, local.stderr
        emu.reset()
        run = _cli("curate", str(src), "-o", str(tmp_path / "ray"), "--cache", str(tmp_path / "b.sqlite"),
                   "--executor", "ray", "--workers", "2", *common, env=env)
        assert run.returncode == 0, run.stderr
        stats = emu.stats()
        # `score` takes the same flags; from the warm cache it makes no call and writes the same scores
        scored = _cli("score", str(src), "-o", str(tmp_path / "scored"), "--cache", str(tmp_path / "b.sqlite"),
                      "--executor", "ray", *common, env=env)
        assert scored.returncode == 0, scored.stderr
        assert emu.stats().requests == stats.requests
    for name in FILES:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    curated = (tmp_path / "ray" / "curated.jsonl").read_text().splitlines()
    assert len(curated) > 10
    one, many = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert many["counts"] == one["counts"] and many["counts"]["rejected"] == 1
    assert many["settings"]["executor"] == "ray" and many["settings"]["workers"] == 2
    # the summary counts the workers' calls: every request the server saw
    assert many["engine"]["requests"] == stats.requests > 0
    assert stats.rate_limited < 0.05 * stats.requests, stats
    lines = [json.loads(x) for x in (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()]
    ours = [json.loads(x) for x in (tmp_path / "ray" / "scores.jsonl").read_text().splitlines()]
    assert [(s["line"], s["confidence"]) for s in lines] == [(s["line"], s["confidence"]) for s in ours]


async def _kill_one_worker(emu: EmulatorThread, after: int) -> tuple[int, int]:
    """Once the server has had `after` requests, SIGKILL one worker's process; return its pid
    and the requests the server was still holding at that moment."""
    await asyncio.to_thread(emu.wait_requests, after)
    names = [n for n in ray.util.list_named_actors() if n.startswith(WORKER_NAME)]
    actor = ray.get_actor(sorted(names)[0])
    pid = await actor.pid.remote()
    in_flight = emu.stats().in_flight
    os.kill(pid, signal.SIGKILL)
    return pid, in_flight


async def test_a_killed_worker_is_replaced_and_no_row_is_lost(tmp_path: Path, cluster: str, key: str) -> None:
    """A worker's process is killed mid-run: Ray restarts it and sends its batches again, the
    run completes with every row, and the calls it had finished come from the shared cache."""
    src = _input(tmp_path, 24)
    cache = tmp_path / "cache.sqlite"
    config = EmulatorConfig(rpm=600, latency=Latency(ms=100))
    with EmulatorThread(config) as emu:
        run = asyncio.create_task(curate(src, tmp_path / "out", provider="openai", base_url=emu.base_url + "/v1",
                                         rpm=600, cache=str(cache), progress=False, executor="ray", workers=2))
        pid, in_flight = await _kill_one_worker(emu, after=15)
        assert not run.done()  # killed mid-run, its batch not yet returned
        summary = await run
        stats = emu.stats()
    assert summary.completed and summary.counts.adds_up
    assert summary.counts.rows == 25 and summary.counts.failed == 0 and summary.counts.rejected == 1
    scores = (tmp_path / "out" / "scores.jsonl").read_text().splitlines()
    assert len(scores) == 24
    # the killed worker had answered calls: without the shared cache its re-sent batch would ask
    # them all again. Only a call answered in the instant before the kill, not yet committed, may be.
    assert stats.repeated_ok_bodies <= in_flight + 1, (stats, in_flight)
    print(f"killed worker {pid}; server requests {stats.requests}, repeated answered bodies "
          f"{stats.repeated_ok_bodies}, in flight at the kill {in_flight}")
    names = [n for n in ray.util.list_named_actors() if n.startswith(WORKER_NAME)]
    assert not names  # the run's workers are gone with it
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_score_dataset_in_a_parquet_pipeline(tmp_path: Path, cluster: str, key: str) -> None:
    """read_parquet -> score_dataset -> filter -> write_parquet; the scores equal `score`'s."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from clearapi.executors.ray_data import score_dataset

    rows = [json.loads(x) for x in (ROOT / "examples" / "qa.jsonl").read_text().splitlines()[:12]]
    table = pa.Table.from_pylist([{"prompt": r["messages"][-2]["content"], "response": r["messages"][-1]["content"],
                                   "source": f"row-{i}"} for i, r in enumerate(rows)])
    pq.write_table(table, tmp_path / "rows.parquet")
    cache = str(tmp_path / "cache.sqlite")
    with EmulatorThread(EmulatorConfig(rpm=600)) as emu:
        options: dict[str, Any] = dict(provider="openai", base_url=emu.base_url + "/v1", rpm=600, cache=cache)
        ds = ray.data.read_parquet(str(tmp_path / "rows.parquet"))
        scored = score_dataset(ds, workers=2, batch_rows=4, **options)
        kept = scored.filter(lambda r: r["clear_confidence"] is not None and r["clear_confidence"] >= CUT)
        kept.write_parquet(str(tmp_path / "kept"))
        all_rows = scored.take_all()
        sent = emu.stats().requests
        async def one_process() -> list[float | None]:
            return [s.confidence async for s in score(tmp_path / "rows.parquet", progress=False, **options)]

        expected = asyncio.run(one_process())
        assert emu.stats().requests == sent  # the same calls: every one came from the cache
    assert [r["source"] for r in all_rows] == [f"row-{i}" for i in range(12)]
    assert [r["clear_confidence"] for r in all_rows] == expected
    assert all(r["clear_error"] is None and json.loads(r["clear_signals"]) for r in all_rows)
    written = pq.read_table(tmp_path / "kept").to_pylist()
    assert sorted(r["source"] for r in written) == sorted(
        r["source"] for r in all_rows if r["clear_confidence"] >= CUT)
    assert 0 < len(written) < 12
