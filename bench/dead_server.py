"""How fast a run stops when the server is gone (a script that prints figures, not a test).

    .venv/bin/python bench/dead_server.py            # 90 rows of examples/qa.jsonl
    .venv/bin/python bench/dead_server.py --rows 40

Runs the real CLI (`python -m clearapi curate --provider openai`) in a subprocess against
(a) a port where nothing listens, (b) an emulator that answers 500 to every request, and
(c) an emulator that answers 500 to one row's requests only, and prints the wall seconds,
the exit code, the requests made and the rows per outcome. Targets: (a) and (b) exit 1 in
under 15 s with rejects empty; (c) exits 3 with that one row in failed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clearapi_testing.emulator import EmulatorThread  # noqa: E402


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _run(name: str, src: Path, base_url: str, work: Path) -> None:
    out = work / name
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-bench-not-a-real-key-000"}
    cmd = [sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(out), "--provider", "openai",
           "--model", "gpt-4o-mini", "--base-url", base_url, "--no-cache", "--no-progress", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary_path = out / "summary.json"
    if not summary_path.exists():
        summary_path = out / "summary.partial.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    counts = summary.get("counts", {})
    outputs = summary.get("outputs", {})
    rejects = out / outputs.get("rejects", "rejects.jsonl")
    rejected_lines = len(rejects.read_text().splitlines()) if rejects.exists() else 0
    print(f"{name:<14} exit {done.returncode}  {seconds:6.2f} s  requests {summary.get('engine', {}).get('requests')}"
          f"  rows {counts.get('rows')} (failed {counts.get('failed')}, rejected {counts.get('rejected')}, "
          f"rejects.jsonl lines {rejected_lines})")
    reason = summary.get("stopped_reason")
    if reason:
        print(f"{'':<14} {reason[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=90)
    args = parser.parse_args()
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    lines = (lines * (args.rows // len(lines) + 1))[: args.rows]
    with tempfile.TemporaryDirectory(prefix="clearapi-dead-") as tmp:
        work = Path(tmp)
        src = work / "input.jsonl"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run("dead port", src, f"http://127.0.0.1:{_dead_port()}/v1", work)
        with EmulatorThread(fault_rate=1.0, fault_kinds=["500"]) as emu:
            _run("always 500", src, emu.base_url + "/v1", work)
        row = json.loads(lines[3])
        prompt = next(m["content"] for m in row["messages"] if m["role"] == "user")
        with EmulatorThread(fault_prompts={prompt: "500"}) as emu:
            _run("one row 500", src, emu.base_url + "/v1", work)


if __name__ == "__main__":
    main()
