"""The progress bar knows its total (a cheap count first) and is drawn in a notebook too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from clearapi.engine.progress import in_notebook, want_progress
from clearapi.sources import count_rows, open_input
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def test_count_rows_of_each_input(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": "d"}')  # no final newline
    assert count_rows(open_input(jsonl)) == 3  # an upper bound: the blank line is counted
    csv = tmp_path / "a.csv"
    csv.write_text("prompt,response\na,b\nc,d\n")
    assert count_rows(open_input(csv)) == 2
    assert count_rows(open_input([{"prompt": "a", "response": "b"}] * 5)) == 5
    pd = pytest.importorskip("pandas", reason="needs the pandas extra (dev installs it)")
    assert count_rows(open_input(pd.DataFrame({"prompt": ["a"] * 7, "response": ["b"] * 7}))) == 7
    pytest.importorskip("pyarrow", reason="needs the parquet extra (dev installs it)")
    parquet = tmp_path / "a.parquet"
    pd.DataFrame({"prompt": ["a"] * 4, "response": ["b"] * 4}).to_parquet(parquet)
    assert count_rows(open_input(parquet)) == 4


def test_a_jupyter_kernel_turns_the_bar_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_notebook()

    class ZMQInteractiveShell:  # the class name IPython's kernel shell has
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_notebook() and want_progress(None)
    assert want_progress(False) is False


def test_the_cli_bar_shows_the_total(tmp_path: Path, emulator: EmulatorThread) -> None:
    src = tmp_path / "in.jsonl"
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    src.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "clearapi", "score", str(src), "-o", str(tmp_path / "out"),
                           "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", emulator.base_url + "/v1",
                           "--no-cache", "--samples", "1", "--progress"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "5/5" in done.stderr and "rows/s" in done.stderr, done.stderr
    assert json.loads((tmp_path / "out" / "scores.jsonl").read_text().splitlines()[0])["confidence"] is not None
