"""What a run does to the user's files, pipes, secrets and environment: the real CLI in a subprocess,
the real openai SDK over HTTP to the loopback emulator. Nothing of clearapi's own is faked.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from clearapi.errors import ClearAPIError
from clearapi.redact import redact_url
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "qa.jsonl"
KEY = "sk-test-iosafety-key-0123456789"
BAD_LINE = "{not json"


def _data(n: int) -> bytes:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:n]
    lines.insert(1, BAD_LINE)  # a reject in the middle: its line number must survive a pipe too
    return ("\n".join(lines) + "\n").encode("utf-8")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "CLEARAPI_"))}
    tmpdir = tmp_path / "tmpdir"  # the child's temp folder, to prove a spooled copy does not outlive the run
    tmpdir.mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(ROOT), OPENAI_API_KEY=KEY, TMPDIR=str(tmpdir), CLEARAPI_CACHE=str(tmp_path / "c.db"))
    env.update(extra)
    return env


def _args(emu: EmulatorThread | None, src: str | Path, out: Path, *extra: str, url: str | None = None) -> list[str]:
    base = url if url is not None else (emu.base_url + "/v1" if emu is not None else None)
    args = ["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini", *extra]
    return args + (["--base-url", base] if base else [])


def _cli(args: list[str], env: dict[str, str], *, stdin: bytes | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "clearapi", *args], input=stdin, capture_output=True,
                          env=env, cwd=ROOT, timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _outcome(out: Path) -> dict[str, Any]:
    """What must not depend on how the input arrived: rows, scores, decisions, curated bytes."""
    summary = json.loads((out / "summary.json").read_text())
    scores = [(s["line"], s["id"], s["confidence"], s["signals"], s["action"], s["details"].get("demonstrations"))
              for s in _jsonl(out / "scores.jsonl")]
    rejects = [(r["line"], r["error"]) for r in _jsonl(out / "rejects.jsonl")]
    return {"counts": summary["counts"], "threshold": summary["threshold"], "scores": scores,
            "rejects": rejects, "curated": (out / "curated.jsonl").read_bytes(),
            "requests": summary["engine"]["requests"]}


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


# --- 1. one read of the input ------------------------------------------------------------------------

def _fifo_writer(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as fh:  # blocks until the CLI opens the FIFO
            fh.write(data)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_piped_input_gives_the_same_rows_and_scores_as_the_file(tmp_path: Path, emulator: EmulatorThread) -> None:
    """-, /dev/stdin, a FIFO, a process substitution and gzip on stdin, against the same data in a file;
    demonstrations on, so the input is read three times (demonstration pool, scoring, deciding)."""
    emulator.configure(polite=True)  # compares request counts too
    data = _data(6)
    src = tmp_path / "data.jsonl"
    src.write_bytes(data)
    env = _env(tmp_path)
    extra = ("--no-cache", "--demonstrations", "2", "--filter-fraction", "0.5")
    reference = _cli(_args(emulator, src, tmp_path / "file", *extra), env)
    assert reference.returncode == 0, reference.stderr
    want = _outcome(tmp_path / "file")
    assert want["counts"]["rows"] == 7 and want["counts"]["rejected"] == 1 and want["rejects"][0][0] == 2
    assert all(s[5] for s in want["scores"])  # every row was shown demonstrations from the pool

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases: dict[str, tuple[list[str], bytes | None]] = {
        "dash": (_args(emulator, "-", tmp_path / "dash", *extra), data),
        "dev_stdin": (_args(emulator, "/dev/stdin", tmp_path / "dev_stdin", *extra), data),
        "gzip_stdin": (_args(emulator, "-", tmp_path / "gzip_stdin", *extra), gzip.compress(data)),
        "fifo": (_args(emulator, fifo, tmp_path / "fifo_out", *extra), None),
    }
    for name, (args, stdin) in cases.items():
        writer = _fifo_writer(fifo, data) if name == "fifo" else None
        done = _cli(args, env, stdin=stdin)
        assert done.returncode == 0, (name, done.stderr)
        if writer is not None:
            writer.join(timeout=10)
        out = Path(args[args.index("-o") + 1])
        assert _outcome(out) == want, name
    # a process substitution, through a real shell
    cmd = " ".join([sys.executable, "-m", "clearapi",
                    *_args(emulator, f"<(cat {src})", tmp_path / "subst", *extra)])
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _outcome(tmp_path / "subst") == want
    # the rejects name the input as given; the private copies are gone
    assert _jsonl(tmp_path / "dash" / "rejects.jsonl")[0]["file"] == "<stdin>"
    assert json.loads((tmp_path / "dash" / "summary.json").read_text())["input"] == "<stdin>"
    assert list((tmp_path / "tmpdir").iterdir()) == []


def test_score_and_dry_run_read_stdin_too(tmp_path: Path, emulator: EmulatorThread) -> None:
    data = _data(4)
    env = _env(tmp_path)
    args = _args(emulator, "-", tmp_path / "out", "--no-cache")
    args[0] = "score"
    done = _cli(args, env, stdin=data)
    assert done.returncode == 0, done.stderr
    assert [s["line"] for s in _jsonl(tmp_path / "out" / "scores.jsonl")] == [1, 3, 4, 5]
    dry = _cli(_args(emulator, "-", tmp_path / "dry", "--dry-run"), env, stdin=data)
    assert dry.returncode == 0 and "scoring calls: 8" in dry.stdout, dry.stdout + dry.stderr


# --- 2. an output never overwrites what the run reads ----------------------------------------------------

@pytest.mark.parametrize("how", ["input_is_an_output", "symlink", "hard_link", "cache_is_an_output"])
def test_an_output_that_is_a_file_the_run_reads_is_refused(tmp_path: Path, emulator: EmulatorThread,
                                                           how: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    data = _data(19)
    env = _env(tmp_path)
    extra: list[str] = ["--no-cache"]
    if how == "input_is_an_output":
        src = out / "curated.jsonl"
        src.write_bytes(data)
    elif how == "symlink":
        real = out / "scores.jsonl"
        real.write_bytes(data)
        src = tmp_path / "link.jsonl"
        src.symlink_to(real)
    elif how == "hard_link":
        src = tmp_path / "data.jsonl"
        src.write_bytes(data)
        os.link(src, out / "rejects.partial.jsonl")
    else:
        src = tmp_path / "data.jsonl"
        src.write_bytes(data)
        extra = ["--cache", str(out / "summary.json")]
    before = _snapshot(tmp_path / "out")
    done = _cli(_args(emulator, src, out, *extra), env)
    assert done.returncode == 2, done.stderr
    _no_traceback(done.stderr)
    assert "which this run reads" in done.stderr and "nothing was written" in done.stderr
    assert src.read_bytes() == data
    assert _snapshot(out) == before
    assert emulator.stats().requests == 0


# --- 3. a stopped run leaves the previous complete outputs alone ------------------------------------------

def _stopped(done: subprocess.CompletedProcess[str], out: Path, before: dict[str, bytes],
             calls: int, error: str) -> None:
    assert done.returncode == 1, done.stderr
    assert error in done.stderr
    assert "Traceback" not in done.stderr
    after = _snapshot(out)
    assert {k: after[k] for k in before} == before  # byte-identical
    partial = json.loads((out / "summary.partial.json").read_text())
    assert partial["completed"] is False and error in partial["stopped_reason"]
    c = partial["counts"]
    assert c["rows"] == c["kept"] + c["corrected"] + c["dropped"] + c["rejected"] + c["failed"]
    assert len(_jsonl(out / "scores.partial.jsonl")) == c["rows"] - c["rejected"] - c["failed"]
    assert set(partial["outputs"].values()) <= set(after)
    # the message tells the truth: the rows that finished and the calls made
    made = int(re.search(r"\((\d+) API call\(s\) made\)", done.stderr).group(1))  # type: ignore[union-attr]
    assert made == calls > 0
    if c["rows"]:
        assert f"{c['rows']} row(s) finished before the stop" in done.stderr
    else:
        assert "No row finished before the stop" in done.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folder, no temp file, no lock


def test_a_stopped_run_keeps_the_previous_complete_outputs(tmp_path: Path, emulator_factory: Any) -> None:
    emu = emulator_factory(api_key=KEY, polite=True)  # "N API call(s) made" vs the server's count: see report
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(14))
    out = tmp_path / "out"
    env = _env(tmp_path)
    first = _cli(_args(emu, src, out, "--no-cache"), env)
    assert first.returncode == 0, first.stderr
    before = _snapshot(out)
    assert set(before) == {"curated.jsonl", "scores.jsonl", "rejects.jsonl", "failed.jsonl", "summary.json",
                           "report.html"}
    assert len(_jsonl(out / "scores.jsonl")) == 14

    def run(*extra: str, **env_extra: str) -> tuple[subprocess.CompletedProcess[str], int]:
        emu.reset()
        # one call in flight: a call the stop cancels mid-flight may or may not have reached the server
        # (which depends on timing, not on clearapi), so the stopped runs keep none in flight
        done = _cli(_args(emu, src, out, "--no-cache", "--max-concurrency", "1", *extra), {**env, **env_extra})
        return done, emu.stats().requests

    done, calls = run(OPENAI_API_KEY="sk-wrong-key-987654321")  # 401
    _stopped(done, out, before, calls, "AuthError")
    assert calls == 1  # the first answer stops the run: nothing more is sent
    emu.configure(fault_at={20: "insufficient_quota"})
    done, calls = run()
    _stopped(done, out, before, calls, "QuotaExhausted")
    assert calls == 20
    emu.configure(fault_at={})
    done, calls = run("--max-cost", "0.0005")
    _stopped(done, out, before, calls, "BudgetExceeded")
    # a complete run replaces the outputs and removes the stopped run's partial files
    done = _cli(_args(emu, src, out, "--no-cache"), env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_one_run_per_folder_and_a_killed_run_leaves_nothing_stuck(tmp_path: Path, emulator_factory: Any) -> None:
    emu = emulator_factory(fault_at={1: "hang"})  # the first call never answers: run A holds the folder
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(4))
    out = tmp_path / "out"
    out.mkdir()
    (out / "curated.jsonl").write_bytes(b'{"earlier": "run"}\n')
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "clearapi", *_args(emu, src, out, "--no-cache", "--max-concurrency", "1")]
    first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        emu.wait_requests(1, timeout=120)
        second = _cli(_args(emu, src, out, "--no-cache"), env)
        assert second.returncode == 2
        _no_traceback(second.stderr)
        assert f"in use by PID {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert any(n.startswith(".clearapi-run-") for n in leftovers)  # what a SIGKILL leaves behind
    (out / ".scores.jsonl.x1y2.tmp").write_bytes(b"")  # and what an older writer's kill left
    assert (out / "curated.jsonl").read_bytes() == b'{"earlier": "run"}\n'
    emu.configure(fault_at={})
    third = _cli(_args(emu, src, out, "--no-cache"), env)
    assert third.returncode == 0, third.stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --- 4. secrets --------------------------------------------------------------------------------------

def test_no_secret_reaches_any_output_log_or_the_cache(tmp_path: Path, emulator: EmulatorThread) -> None:
    # userinfo in a URL makes httpx send Basic auth in place of the bearer key: the emulator takes any
    emu = emulator
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(5))
    out = tmp_path / "out"
    cache = tmp_path / "cache.sqlite"
    url = emu.base_url.replace("http://", "http://alice:url-pass-5ecret@") + "/v1"
    env = _env(tmp_path)
    done = _cli(_args(None, src, out, "--cache", str(cache), url=url), env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["base_url"] == redact_url(url) and "***@127.0.0.1" in summary["settings"]["base_url"]
    texts = {p.name: p.read_bytes() for p in out.iterdir()}
    texts.update({"stdout": done.stdout.encode(), "stderr": done.stderr.encode(), "cache": cache.read_bytes()})
    for wal in tmp_path.glob("cache.sqlite*"):
        texts[wal.name] = wal.read_bytes()
    for name, blob in texts.items():
        for secret in (KEY, "url-pass-5ecret", "alice:"):
            assert secret.encode() not in blob, (name, secret)
    # the same URL in the environment, with a key in its query string: `providers` masks both
    shown = _cli(["providers", "openai", "--json"],
                 _env(tmp_path, OPENAI_BASE_URL=url + "?api-key=query-5ecret&api-version=1"))
    facts = json.loads(shown.stdout)
    assert facts["base_url_source"] == "$OPENAI_BASE_URL"
    assert "url-pass-5ecret" not in shown.stdout and "query-5ecret" not in shown.stdout
    assert "api-version=1" in facts["base_url"]


@pytest.mark.parametrize("key", ["sk-test\x01-123456", "sk-t\u00e9st-123456", "sk-test 123456"])
def test_a_malformed_key_is_refused_before_any_call_without_echoing_it(tmp_path: Path, emulator: EmulatorThread,
                                                                       key: str) -> None:
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(5))
    out = tmp_path / "out"
    done = _cli(_args(emulator, src, out, "--no-cache"), _env(tmp_path, OPENAI_API_KEY=key))
    assert done.returncode == 1
    _no_traceback(done.stderr)
    assert "OPENAI_API_KEY" in done.stderr and "nothing was sent" in done.stderr
    for part in ("sk-t", "123456", "\x01", "\u00e9"):
        assert part not in done.stderr and part not in done.stdout
    assert emulator.stats().requests == 0
    assert not out.exists() or not any(out.iterdir())


def test_credentials_in_error_messages_are_masked() -> None:
    err = ClearAPIError("openai: connection failed to http://bob:hunter2-pw@10.0.0.1:8080/v1?key=abc&x=1 (reset)")
    assert "hunter2-pw" not in str(err) and "key=abc" not in str(err)
    assert "http://***@10.0.0.1:8080/v1?key=***&x=***" in str(err)
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1"  # cache keys do not move


# --- 5. environment, pipes, unwritable folders, truncated input ----------------------------------------------

def test_openai_base_url_is_honoured_and_the_flag_still_wins(tmp_path: Path, emulator: EmulatorThread) -> None:
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(3))
    env = _env(tmp_path, OPENAI_BASE_URL=emulator.base_url + "/v1")
    done = _cli(_args(None, src, tmp_path / "env", "--no-cache"), env)
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / "env" / "summary.json").read_text())["settings"]
    assert settings["base_url"] == emulator.base_url + "/v1" and settings["base_url_source"] == "$OPENAI_BASE_URL"
    served = emulator.stats().requests
    assert served > 0
    # a dead address in the environment; the flag points at the emulator and wins
    dead = _env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    done = _cli(_args(emulator, src, tmp_path / "flag", "--no-cache"), dead)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "flag" / "summary.json").read_text())["settings"]["base_url_source"] == "--base-url"
    assert emulator.stats().requests == 2 * served
    table = _cli(["providers"], env).stdout
    line = next(x for x in table.splitlines() if x.startswith("openai "))
    assert f"{emulator.base_url}/v1 (from $OPENAI_BASE_URL)" in line
    assert "https://api.anthropic.com" in table  # ANTHROPIC_BASE_URL unset: the profile's


def test_a_closed_stdout_ends_quietly_with_the_usual_exit_code(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write gets EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "clearapi", "providers", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, env=_env(tmp_path), cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 0
    assert done.stderr == b""
    shell = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m clearapi providers --json | head -1"],
                           capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=120)
    assert shell.returncode == 0 and shell.stdout == "[\n" and shell.stderr == ""


def test_an_unwritable_output_folder_is_one_line(tmp_path: Path, emulator: EmulatorThread) -> None:
    src = tmp_path / "data.jsonl"
    src.write_bytes(_data(3))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    done = _cli(_args(emulator, src, out, "--no-cache"), _env(tmp_path))
    assert done.returncode == 2
    _no_traceback(done.stderr)
    assert str(out) in done.stderr and "Not a directory" in done.stderr
    assert emulator.stats().requests == 0


def test_a_truncated_gzip_warns_and_exits_3(tmp_path: Path, emulator: EmulatorThread) -> None:
    packed = gzip.compress(_data(3) + b'{"x": 1}\n' * 2000)
    src = tmp_path / "data.jsonl.gz"
    src.write_bytes(packed[:-30])
    for name, args, stdin in (("file", _args(emulator, src, tmp_path / "file", "--no-cache"), None),
                              ("stdin", _args(emulator, "-", tmp_path / "stdin", "--no-cache"), packed[:-30])):
        done = _cli(args, _env(tmp_path), stdin=stdin)
        assert done.returncode == 3, (name, done.stderr)
        assert done.stderr.startswith("clearapi: warning: ") and "could not be read from here on" in done.stderr
        summary = json.loads((Path(args[args.index("-o") + 1]) / "summary.json").read_text())
        assert summary["counts"]["kept"] + summary["counts"]["corrected"] + summary["counts"]["dropped"] == 3
