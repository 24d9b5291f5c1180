"""--json prints the summary as one JSON object; --quiet prints nothing; the files are the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clearapi.cli import main
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join((ROOT / "examples" / "qa.jsonl").read_text().splitlines()[:4]) + "\n{broken\n")
    return src


def _args(cmd: str, emu: EmulatorThread, src: Path, out: Path, *extra: str) -> list[str]:
    return [cmd, str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
            "--base-url", emu.base_url + "/v1", "--no-cache", "--samples", "1", *extra]


def test_json_and_quiet_on_curate_score_and_convert(tmp_path: Path, emulator: EmulatorThread,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = _src(tmp_path)
    assert main(_args("curate", emulator, src, tmp_path / "c", "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["rows"] == 5 and summary["counts"]["rejected"] == 1
    assert summary == json.loads((tmp_path / "c" / "summary.json").read_text())

    assert main(_args("score", emulator, src, tmp_path / "s", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == {
        "rows": 5, "scored": 4, "rejected": 1, "failed": 0, "scores": str(tmp_path / "s" / "scores.jsonl"),
        "rejects": str(tmp_path / "s" / "rejects.jsonl"), "failures": str(tmp_path / "s" / "failed.jsonl"),
        "stopped_reason": None}

    assert main(_args("score", emulator, src, tmp_path / "q", "--quiet")) == 0
    assert capsys.readouterr().out == ""
    assert len((tmp_path / "q" / "scores.jsonl").read_text().splitlines()) == 4

    out = tmp_path / "ft.jsonl"
    assert main(["convert", str(tmp_path / "c"), "--target", "together", "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "together" and result["valid"] == {str(out): True}
    assert result["written"] == summary["counts"]["kept"] + summary["counts"]["corrected"]


def test_confidence_as_a_fireworks_weight(tmp_path: Path, emulator: EmulatorThread,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = _src(tmp_path)
    assert main(_args("curate", emulator, src, tmp_path / "c", "--threshold", "0", "--quiet")) == 0
    scores = {s["line"]: s for s in map(json.loads, (tmp_path / "c" / "scores.jsonl").read_text().splitlines())}
    out = tmp_path / "fw.jsonl"
    assert main(["convert", str(tmp_path / "c"), "--target", "fireworks", "-o", str(out),
                 "--weight-by-confidence", "--json", "--strict"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] == {str(out): True}
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(scores) == 4
    expected = [round(s["correction_confidence"] if s["action"] == "correct" else s["confidence"], 4)
                for _, s in sorted(scores.items())]
    assert [r["weight"] for r in rows] == expected
    assert len(set(expected)) > 1  # the weights carry information
    assert main(["convert", str(tmp_path / "c"), "--target", "openai", "-o", str(tmp_path / "o.jsonl"),
                 "--weight-by-confidence"]) == 2


def test_verbose_logs_the_retries_and_quiet_does_not(tmp_path: Path, emulator_factory: Any) -> None:
    import os
    import subprocess
    import sys

    src = _src(tmp_path)
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000"}
    runs = {}
    for flag in ("--verbose", "--quiet"):
        emu = emulator_factory(fault_at={2: "500"})
        args = _args("score", emu, src, tmp_path / flag.strip("-"), flag)
        done = subprocess.run([sys.executable, "-m", "clearapi", *args], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        runs[flag] = done
    assert "retrying in" in runs["--verbose"].stderr and "500" in runs["--verbose"].stderr
    assert "sk-test" not in runs["--verbose"].stderr
    assert runs["--quiet"].stdout == "" and "retrying" not in runs["--quiet"].stderr


@pytest.mark.parametrize("cmd", ["curate", "score"])
def test_threads_below_one_is_a_usage_error(tmp_path: Path, cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 (usage), one line naming the flag, and no output folder: not a crash's exit 1."""
    src = _src(tmp_path)
    code = main([cmd, str(src), "-o", str(tmp_path / "out"), "--threads", "0"])
    assert code == 2
    assert "threads must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
