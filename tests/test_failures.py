"""Failures are failures: a row the API could not answer is *failed* (failed.jsonl, exit 3), never a
reject, and a server that answers nothing stops the run at once (the circuit breaker, exit 1).

Real CLI in a subprocess where the exit code and the output folder are the claim, the real OpenAI
SDK over HTTP to the loopback emulator (or to a port where nothing listens).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clearapi import Engine, FailedRow, ServiceDown, curate, score
from clearapi.cli import main
from clearapi.engine import CircuitBreaker
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "qa.jsonl"
KEY = "sk-test-failures-key-0123456789"


def _rows(tmp_path: Path, n: int) -> tuple[Path, list[dict[str, Any]]]:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:n]
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src, [json.loads(x) for x in lines]


def _prompt(row: dict[str, Any]) -> str:
    return str(next(m["content"] for m in row["messages"] if m["role"] == "user"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY,
           "CLEARAPI_CACHE": str(tmp_path / "cache.sqlite")}
    return subprocess.run([sys.executable, "-m", "clearapi", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _args(command: str, src: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [command, str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
            "--base-url", base_url, "--no-cache", "--no-progress", *extra]


def _dead_port() -> int:
    """A port nothing listens on (bound, then closed: connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- the circuit breaker -----------------------------------------------------------------------

def test_breaker_counts_attempts_over_several_requests() -> None:
    breaker = CircuitBreaker(attempts=20, requests=5)
    # one row's two calls failing over and over: the server works, only this row fails
    assert not any(breaker.failure(key) for key in ["a", "b"] * 30)
    breaker.success()
    assert breaker.failed == 0
    # request after request failing: the server is down
    tripped = [breaker.failure(f"k{i % 7}") for i in range(20)]
    assert tripped == [False] * 19 + [True]
    assert not CircuitBreaker(attempts=0).failure("x")  # 0 turns it off


def test_dead_port_stops_the_run_with_exit_1_and_no_rejects(tmp_path: Path) -> None:
    src, rows = _rows(tmp_path, 40)
    out = tmp_path / "out"
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    done = _cli(_args("curate", src, out, url), tmp_path)
    assert done.returncode == 1, done.stderr
    assert "ServiceDown: the server at" in done.stderr and "failed 20 requests in a row" in done.stderr
    assert "ConnectError" in done.stderr and "Traceback" not in done.stderr
    assert KEY not in done.stderr
    summary = json.loads((out / "summary.partial.json").read_text())
    assert summary["completed"] is False and summary["stopped_reason"].startswith("ServiceDown:")
    assert summary["outputs"]["failed"] == "failed.partial.jsonl"
    assert _jsonl(out / "rejects.partial.jsonl") == []
    c = summary["counts"]
    assert c["rows"] == c["kept"] + c["corrected"] + c["dropped"] + c["rejected"] + c["failed"]
    assert len(_jsonl(out / "failed.partial.jsonl")) == c["failed"]
    # stopped after about the breaker's 20 attempts and the calls already in flight, not 8 tries of every row
    assert summary["engine"]["requests"] < 2 * 20 + 16 < 8 * len(rows)
    assert not (out / "summary.json").exists()


def test_score_on_a_dead_port_stops_with_exit_1(tmp_path: Path) -> None:
    src, _ = _rows(tmp_path, 12)
    out = tmp_path / "out"
    done = _cli(_args("score", src, out, f"http://127.0.0.1:{_dead_port()}/v1"), tmp_path)
    assert done.returncode == 1, done.stderr
    assert "failed 20 requests in a row" in done.stderr and not (out / "scores.jsonl").exists()


async def _map_through(engine: Engine, prompts: list[str]) -> list[Any]:
    from clearapi.records import ChatRequest, Message

    async def one(text: str) -> Any:
        return await engine.chat(ChatRequest(messages=[Message(role="user", content=text)], max_tokens=5))

    return [r async for r in engine.map(prompts, one, return_exceptions=True)]


def test_the_engine_raises_service_down_on_a_dead_port() -> None:
    async def go() -> None:
        async with Engine("openai", model="gpt-4o-mini", base_url=f"http://127.0.0.1:{_dead_port()}/v1",
                          api_key=KEY, cache=False, progress=False) as engine:
            with pytest.raises(ServiceDown, match="failed 20 requests in a row"):
                await _map_through(engine, [f"question {i}" for i in range(50)])
            assert isinstance(engine.stopped, ServiceDown)

    asyncio.run(go())


def test_flaky_server_never_trips_the_breaker(tmp_path: Path, emulator_factory: Any) -> None:
    """20% of requests fail (500, 503, reset, 429, truncated): every row is still scored, exit 0."""
    emu: EmulatorThread = emulator_factory(fault_rate=0.2, seed=7)
    src, rows = _rows(tmp_path, 24)
    out = tmp_path / "out"
    done = _cli(_args("curate", src, out, emu.base_url + "/v1", "--filter-fraction", "0.3"), tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] is True and summary["counts"]["failed"] == 0
    assert summary["counts"]["rows"] == len(rows) and summary["counts"]["rejected"] == 0
    assert _jsonl(out / "failed.jsonl") == []
    faults = emu.stats().faults
    assert sum(faults.values()) >= 10 and sum(summary["engine"]["retries"].values()) >= 10


# --- failed rows ---------------------------------------------------------------------------------

def test_one_row_answered_500_fails_alone_with_exit_3(tmp_path: Path, emulator_factory: Any) -> None:
    src, rows = _rows(tmp_path, 10)
    bad_line = 4
    emu: EmulatorThread = emulator_factory(fault_prompts={_prompt(rows[bad_line - 1]): "500"})
    out = tmp_path / "out"
    done = _cli(_args("curate", src, out, emu.base_url + "/v1"), tmp_path)
    assert done.returncode == 3, done.stderr
    assert "1 row(s) failed" in done.stderr and "Re-run the same command" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert summary["completed"] is True and c["failed"] == 1 and c["rejected"] == 0
    assert c["rows"] == len(rows) == c["kept"] + c["corrected"] + c["dropped"] + c["failed"]
    assert summary["outputs"]["failed"] == "failed.jsonl"
    (failed,) = _jsonl(out / "failed.jsonl")
    assert failed["line"] == bad_line and failed["file"] == str(src) and failed["id"]
    assert failed["error_type"] == "TransientError" and failed["error"].startswith("TransientError: ")
    assert "HTTP 500" in failed["error"] and failed["attempts"] == 8
    FailedRow.model_validate(failed)
    assert _jsonl(out / "rejects.jsonl") == []
    assert sorted(s["line"] for s in _jsonl(out / "scores.jsonl")) == [i for i in range(1, 11) if i != bad_line]
    # the report shows it: a count and the row with its error
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="stat-failed" data-value="1"' in html
    table = html.split('id="failed-table"', 1)[1].split("</table>", 1)[0]
    assert f'<td class="num">{bad_line}</td>' in table and "HTTP 500" in table
    for path in out.iterdir():
        assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path


def test_score_command_lists_failed_rows_and_exits_3(tmp_path: Path, emulator_factory: Any) -> None:
    """A row the service refuses (its 400 for a prompt over the context window) is failed, not rejected."""
    emu: EmulatorThread = emulator_factory(context_window=2000)
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:3]
    lines.insert(1, json.dumps({"messages": [{"role": "user", "content": "Summarise: " + "words " * 3000},
                                             {"role": "assistant", "content": "A summary."}]}))
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    done = _cli(_args("score", src, out, emu.base_url + "/v1", "--json"), tmp_path)
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert (result["rows"], result["scored"], result["rejected"], result["failed"]) == (4, 3, 0, 1)
    (failed,) = _jsonl(out / "failed.jsonl")
    assert failed["line"] == 2 and failed["error_type"] == "BadRequest" and failed["attempts"] == 1
    assert [s["line"] for s in _jsonl(out / "scores.jsonl")] == [1, 3, 4]
    assert _jsonl(out / "rejects.jsonl") == []
    assert "1 row(s) failed" in done.stderr


def test_score_api_sends_failed_rows_to_on_failure(tmp_path: Path, emulator_factory: Any) -> None:
    src, rows = _rows(tmp_path, 5)
    emu: EmulatorThread = emulator_factory(fault_prompts={_prompt(rows[1]): "503"})
    failures: list[FailedRow] = []
    rejects: list[Any] = []

    async def go() -> list[Any]:
        async with Engine("openai", model="gpt-4o-mini", base_url=emu.base_url + "/v1", api_key=KEY,
                          cache=False, progress=False, max_attempts=2) as engine:
            return [s async for s in score(src, engine=engine, on_reject=rejects.append,
                                           on_failure=failures.append)]

    scores = asyncio.run(go())
    assert [s.line for s in scores] == [1, 3, 4, 5] and rejects == []
    (failure,) = failures
    assert failure.line == 2 and failure.error_type == "TransientError" and failure.attempts == 2
    assert "HTTP 503" in failure.error


def test_score_command_exits_3_on_a_truncated_gzip(tmp_path: Path, emulator: EmulatorThread,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    lines = EXAMPLES.read_bytes().splitlines()[:3]
    packed = gzip.compress(b"\n".join(lines) + b"\n" + b'{"x": 1}\n' * 2000)
    src = tmp_path / "input.jsonl.gz"
    src.write_bytes(packed[:-30])  # the stream breaks after the examples
    out = tmp_path / "out"
    assert main(_args("score", src, out, emulator.base_url + "/v1", "--quiet")) == 3  # finished, rows missing
    assert len(_jsonl(out / "scores.jsonl")) == 3
    assert "could not be read from here on" in capsys.readouterr().err


def test_a_judgement_that_failed_says_so_in_the_reason(tmp_path: Path, emulator_factory: Any) -> None:
    """Pass 2: the row stays decided (not failed), and its reason names the transient failure."""
    emu: EmulatorThread = emulator_factory(fault_prompts={"Which answer is correct and better": "500"})
    src, _ = _rows(tmp_path, 8)

    async def go() -> Any:
        async with Engine("openai", model="gpt-4o-mini", base_url=emu.base_url + "/v1", api_key=KEY,
                          cache=False, progress=False, max_attempts=2, breaker=0) as engine:
            return await curate(src, tmp_path / "out", engine=engine, filter_fraction=0.5,
                                correct_threshold=0.0, eta=0.0)

    summary = asyncio.run(go())
    assert summary.completed and summary.counts.failed == 0 and summary.counts.adds_up
    reasons = [s["reason"] for s in _jsonl(tmp_path / "out" / "scores.jsonl")]
    failed = [r for r in reasons if "pairwise judgement" in r]
    assert failed and all("pairwise judgement failed after retries: TransientError" in r for r in failed)
    assert emu.stats().faults["500"] >= 2 * len(failed)

