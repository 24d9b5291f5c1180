"""`bench/vllm_check.sh MODEL`: self-hosted scoring through a real `vllm serve`.

On a machine with a CUDA device and vllm installed, the script runs for real (a small model,
``$CLEARAPI_VLLM_MODEL``); elsewhere that test is skipped and says why. The short report it
prints is checked everywhere, on a real curate run against the emulator.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def _cuda_device() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and "GPU" in done.stdout


@pytest.mark.slow
def test_vllm_check_on_a_gpu() -> None:
    if shutil.which("vllm") is None or not _cuda_device():
        pytest.skip("needs a CUDA device and vllm installed (bench/vllm_check.sh serves a real model with vllm)")
    model = os.environ.get("CLEARAPI_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    done = subprocess.run(["bash", str(ROOT / "bench" / "vllm_check.sh"), model], capture_output=True, text=True,
                          cwd=ROOT, timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"92 rows in \d+ s = [\d.]+ rows/s", done.stdout), done.stdout
    assert re.search(r"AUROC 0\.\d{3}", done.stdout), done.stdout
    present = re.search(r"signals present: (.*)", done.stdout)
    assert present is not None and "likelihood" in present.group(1), done.stdout  # prompt_logprobs worked


def test_the_report_of_a_curate_run(tmp_path: Path, emulator: EmulatorThread,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the script prints after its run: rows/s, AUROC against the labels, the signals."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = tmp_path / "qa.jsonl"
    src.write_text("".join((ROOT / "examples" / "qa.jsonl").read_text().splitlines(True)[:20]))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(tmp_path / "out"),
                          "--provider", "openai", "--base-url", emulator.base_url + "/v1", "--no-cache", "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "vllm_report.py"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert re.match(r"openai gpt-4o-mini: 20 rows in \d+ s = [\d.]+ rows/s \(\d+ calls; 0 failed, 0 rejected\)",
                    lines[0]), lines[0]
    assert re.match(r"AUROC [01]\.\d{3} \(confidence vs examples/labels.jsonl, 20 rows\)", lines[1]), lines[1]
    assert lines[2].startswith("signals present: ") and "self_rating" in lines[2]
    assert "likelihood" in lines[2].split("absent: ")[-1]  # a hosted API cannot score given text
