"""Local scoring with the judge behind a real third-party server: the embedded SmolLM2 scores, and
``python -m llama_cpp.server`` (SmolLM2 again, another process) judges through the openai profile
and the real openai SDK: ``--judge-provider openai --judge-base-url ...``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest_local import LLAMA_MISSING, SKIP_REASON

pytestmark = [pytest.mark.local, pytest.mark.slow, pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)]

ROOT = Path(__file__).resolve().parents[1]


def test_local_scorer_with_a_judge_behind_llama_cpp_server(tmp_path: Path, llama_server: Any) -> None:
    rows = (ROOT / "examples" / "factual" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(rows[3:6]) + "\n", encoding="utf-8")  # f-geo-12 "Amsterdam." among them
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(out), "--provider", "local",
           "--samples", "2", "--demonstrations", "1", "--demo-sets", "1", "--cache", str(tmp_path / "c.sqlite"),
           "--threshold", "1.0", "--correct-threshold", "0", "--no-progress",
           "--judge-provider", "openai", "--judge-model", llama_server.model_alias,
           "--judge-base-url", llama_server.base_url]
    env = {**os.environ, "OPENAI_API_KEY": "sk-local-server-needs-none-000"}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1200, env=env)
    assert done.returncode == 0, done.stderr + llama_server.log_tail()
    summary = json.loads((out / "summary.json").read_text())
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    judged = [s for s in scores if "judgement" in s["details"]]
    assert judged, [s["reason"] for s in scores]
    (name,) = summary["judges"]
    judge = summary["judges"][name]
    assert judge["requests"] == 2 * len(judged) and judge["prompt_tokens"] > 0
    assert summary["engine"]["requests"] > 0  # the scorer's own, counted apart
    assert "judge openai/" in done.stdout
    for s in judged:
        (v,) = s["details"]["judgement"]["verdicts"]
        assert v["method"] == "text" and len(v["orders"]) == 2 and s["details"]["judgement"]["judge_calls"] == 2
