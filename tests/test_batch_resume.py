"""`curate --batch` killed (SIGKILL) while polling resumes the same batch instead of paying twice.

A real subprocess runs the CLI against the emulator, whose batches are held in progress; once
the client has polled, it is killed. The re-run (same cache file) must find the recorded
batch, poll it to the end and submit nothing for the work already in it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clearapi.clear.curation import curate
from clearapi.engine import Engine
from clearapi.engine.batch import BatchOptions
from clearapi.engine.cache import open_db
from clearapi_testing.emulator import EmulatorThread
from clearapi_testing.emulator_batches import BatchBehaviour, batches_extension

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "qa.jsonl"


def test_resume_after_sigkill_mid_poll_submits_no_new_batch(
        tmp_path: Path, emulator_factory: Callable[..., EmulatorThread]) -> None:
    beh = BatchBehaviour(hold=True)
    emu = emulator_factory(extensions=[batches_extension(beh)])
    base = emu.base_url + "/v1"
    data = tmp_path / "data.jsonl"
    data.write_bytes(b"\n".join(EXAMPLES.read_bytes().splitlines()[:20]) + b"\n")
    cache = tmp_path / "cache.sqlite"
    env = {**os.environ, "OPENAI_API_KEY": "test-key", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "clearapi", "curate", str(data), "-o", str(tmp_path / "killed"),
           "--provider", "openai", "--base-url", base, "--cache", str(cache), "--rpm", "1000000",
           "--tpm", "1000000000", "--batch", "--batch-poll", "0.05", "--no-progress"]
    err = tmp_path / "stderr.txt"
    with err.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            deadline = time.monotonic() + 120
            while not beh.polled.wait(timeout=0.1) and proc.poll() is None and time.monotonic() < deadline:
                pass
            assert beh.polled.is_set(), (f"the CLI never polled its batch (exit {proc.poll()}): "
                                         f"{err.read_text(errors='replace')[-2000:]}")
        finally:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -9
    assert len(beh.created) == 1
    first = beh.created[0]
    conn = open_db(cache)
    recorded = conn.execute("SELECT id, status, request_count FROM batches").fetchall()
    conn.close()
    assert len(recorded) == 1 and recorded[0][0] == first and recorded[0][2] == 40
    assert recorded[0][1] in ("submitted", "validating")  # killed mid-poll: not collected
    assert not (tmp_path / "killed" / "scores.jsonl").exists()

    beh.hold = False
    polls_before = emu.stats().by_path.get(f"/v1/batches/{first}", 0)

    async def rerun(out: str, cache_arg: Path | bool, batch: bool | BatchOptions) -> None:
        async with Engine("openai", base_url=base, api_key="test-key", cache=cache_arg, rpm=1e6, tpm=1e9,
                          progress=False, batch=batch) as engine:
            await curate(data, tmp_path / out, engine=engine)

    asyncio.run(rerun("resumed", cache, BatchOptions(linger=0.05, poll_interval=0.01)))
    stats = emu.stats()
    assert stats.by_path.get(f"/v1/batches/{first}", 0) > polls_before  # the old batch was polled again
    assert not beh.paid_twice  # no request went into a second batch
    judged = (tmp_path / "resumed" / "scores.jsonl").read_bytes().count(b'"judgement"')
    assert len(beh.created) == (2 if judged else 1)  # at most the judgement stage is new
    assert stats.by_path.get("/v1/chat/completions", 0) == 0

    asyncio.run(rerun("online", False, False))
    assert (tmp_path / "resumed" / "scores.jsonl").read_bytes() == (tmp_path / "online" / "scores.jsonl").read_bytes()
