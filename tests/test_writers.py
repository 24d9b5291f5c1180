"""Atomic writers: the target is either the old file or the complete new one, never half of one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from clearapi.records import Reject, RowCounts, Summary
from clearapi.writers import AtomicJsonlWriter, dumps_line, write_json_atomic, write_jsonl_atomic


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_dicts_and_models_and_counts_lines(tmp_path: Path) -> None:
    target = tmp_path / "out" / "rejects.jsonl"  # the folder is created on demand
    reject = Reject(file="in.jsonl", line=3, field="messages[1].role", error="unknown role 'bot'")
    with AtomicJsonlWriter(target) as writer:
        writer.write({"a": 1, "text": "café ✓"})
        writer.write(reject)
        assert not target.exists()  # invisible until the block ends
        assert writer.write_many([{"b": 2}, {"c": [1, 2]}]) == 2
    assert writer.lines == 4
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert lines[0] == {"a": 1, "text": "café ✓"}
    assert lines[1] == reject.model_dump(mode="json")
    assert Reject.model_validate(lines[1]) == reject
    assert lines[2:] == [{"b": 2}, {"c": [1, 2]}]
    assert _leftovers(target.parent) == []
    assert target.stat().st_mode & 0o777 == 0o644


def test_exception_inside_with_leaves_no_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "curated.jsonl"
    with pytest.raises(RuntimeError, match="boom"), AtomicJsonlWriter(target) as writer:
        writer.write({"row": 1})
        writer.flush()
        assert len(_leftovers(tmp_path)) == 1  # the temp file really existed
        raise RuntimeError("boom")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_exception_keeps_the_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "scores.jsonl"
    target.write_bytes(b'{"old": true}\n')
    target.chmod(0o640)
    with pytest.raises(KeyboardInterrupt), AtomicJsonlWriter(target) as writer:
        writer.write({"new": True})
        raise KeyboardInterrupt
    assert target.read_bytes() == b'{"old": true}\n'
    assert _leftovers(tmp_path) == []
    assert write_jsonl_atomic(target, [{"new": True}]) == 1
    assert target.read_bytes() == b'{"new":true}\n'
    assert target.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode


def test_unserialisable_object_aborts_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    with pytest.raises(TypeError), AtomicJsonlWriter(target) as writer:
        writer.write({"ok": 1})
        writer.write({"bad": object()})
    assert not target.exists() and _leftovers(tmp_path) == []


def test_write_outside_with_is_an_error(tmp_path: Path) -> None:
    writer = AtomicJsonlWriter(tmp_path / "y.jsonl")
    with pytest.raises(RuntimeError, match="inside a 'with' block"):
        writer.write({"a": 1})


def test_write_json_atomic_models_paths_and_sets(tmp_path: Path) -> None:
    summary = Summary(clearapi_version="0", input="in.jsonl", output_dir=str(tmp_path), provider="local",
                      model="m", started_at="2026-01-01T00:00:00Z", counts=RowCounts(rows=2, kept=1, rejected=1))
    target = tmp_path / "summary.json"
    write_json_atomic(target, summary)
    assert Summary.model_validate_json(target.read_bytes()) == summary
    assert target.read_text().endswith("}\n") and "\n  " in target.read_text()  # indented for people
    write_json_atomic(target, {"path": tmp_path, "tags": {"b", "a"}})
    assert orjson.loads(target.read_bytes()) == {"path": str(tmp_path), "tags": ["a", "b"]}
    assert _leftovers(tmp_path) == []


def test_dumps_line_is_one_line() -> None:
    line = dumps_line({"text": "two\nlines", 1: "non-string key"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"text": "two\nlines", "1": "non-string key"}


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from clearapi.writers import AtomicJsonlWriter
    with AtomicJsonlWriter(sys.argv[1]) as writer:
        for i in range(5000):
            writer.write({"row": i, "pad": "x" * 100})
        writer.flush()
        print("half-written", flush=True)
        sys.stdin.read()  # block until killed
        for i in range(5000):
            writer.write({"row": i})
""")


def test_sigkill_mid_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "curated.jsonl"
    target.write_bytes(b'{"old": 1}\n{"old": 2}\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"half-written\n"
        (temp,) = _leftovers(tmp_path)
        assert (tmp_path / temp).stat().st_size > 100_000  # the new data really was on disk
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert target.read_bytes() == b'{"old": 1}\n{"old": 2}\n'
