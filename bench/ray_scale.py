"""`--executor ray` against one process: the same outputs, one limit (a script that prints figures).

    .venv/bin/python bench/ray_scale.py                  # 60 hosted rows, then 4 local-model rows
    .venv/bin/python bench/ray_scale.py --local-rows 0   # hosted part only
    .venv/bin/python bench/ray_scale.py --local-rows 0 --learn   # and the learned limit

(a) `--provider openai` against the loopback emulator limited to 10 req/s (rpm 600, its rude
    defaults: stray 500s, short top-logprob lists), the CLI told ``--rpm 600``: one process, then
    ``--executor ray --workers 2`` (a local Ray cluster started by the run). Prints whether
    curated.jsonl and scores.jsonl are byte-identical, the largest confidence difference, the
    429s as a share of requests, and the share of the limit used while requests were sent
    (first to last request) and over the whole wall time (Ray's start-up included).
(c) with ``--learn``: as (a), but the server sends ``x-ratelimit-*`` headers and the CLI is not told
    the limit: the shared limiter learns it once, from every worker's answers.
(b) `--provider local` (the embedded model), a handful of rows, one llama.cpp thread per
    process: the largest confidence difference between the two runs.
Targets: (a) identical files, 429s < 5%, >= 85% of the limit used; (b) confidences within 0.001.
Each run has its own cache file, so both make every call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clearapi_testing.emulator import EmulatorThread  # noqa: E402
from clearapi_testing.emulator.config import EmulatorConfig  # noqa: E402

KEY = "sk-bench-not-a-real-key-0000000000"
LIMIT_RPM = 600.0


class Watch:
    """Samples the emulator's request counter, to time the span from first to last request."""

    def __init__(self, emu: EmulatorThread) -> None:
        self.emu, self.marks, self.done = emu, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            self.marks.append((time.perf_counter(), self.emu.stats().requests))

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def span(self) -> float:
        total = self.marks[-1][1]
        first = next(t for t, n in self.marks if n > 0)
        last = next(t for t, n in self.marks if n == total)
        return max(1e-9, last - first)


def _cli(src: Path, out: Path, cache: Path, *extra: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENAI_API_KEY=KEY, CLEARAPI_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(out), "--cache", str(cache),
                           "--quiet", *extra], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"curate {' '.join(extra)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def _confidences(out: Path) -> list[float]:
    return [json.loads(x)["confidence"] for x in (out / "scores.jsonl").read_text().splitlines()]


def _compare(a: Path, b: Path) -> dict[str, object]:
    ca, cb = _confidences(a), _confidences(b)
    return {"curated identical": (a / "curated.jsonl").read_bytes() == (b / "curated.jsonl").read_bytes(),
            "scores identical": (a / "scores.jsonl").read_bytes() == (b / "scores.jsonl").read_bytes(),
            "rows": len(ca), "max |dconfidence|": max((abs(x - y) for x, y in zip(ca, cb, strict=True)), default=0.0)}


def hosted(rows: int, tmp: Path, learn: bool = False) -> None:
    lines = (ROOT / "examples" / "qa.jsonl").read_text().splitlines()[:rows]
    src = tmp / "hosted.jsonl"
    src.write_text("\n".join(lines) + "\n")
    results = {}
    told = () if learn else ("--rpm", str(int(LIMIT_RPM)))
    tmp = tmp / ("learned" if learn else "told")
    with EmulatorThread(EmulatorConfig(rpm=LIMIT_RPM, ratelimit_headers=learn)) as emu:
        for name, extra in (("one process", ()), ("ray, 2 workers", ("--executor", "ray", "--workers", "2"))):
            emu.reset()
            with Watch(emu) as watch:
                wall = _cli(src, tmp / name, tmp / f"{name}.sqlite", "--provider", "openai",
                            "--base-url", emu.base_url + "/v1", *told, *extra)
            st = emu.stats()
            ok = st.status(200)
            results[name] = (wall, watch.span(), st.requests, ok, st.rate_limited)
    how = "not told: learned from its x-ratelimit headers" if learn else f"told --rpm {LIMIT_RPM:.0f}"
    print(f"({'c' if learn else 'a'}) {rows} rows, --provider openai, server limit {LIMIT_RPM:.0f} rpm, {how}")
    for name, (wall, span, sent, ok, limited) in results.items():
        rate = LIMIT_RPM / 60.0
        print(f"    {name:15s} wall {wall:5.1f} s | requests {sent} ({limited} 429s = {limited / max(1, sent):.1%}) | "
              f"limit used {ok / (rate * span):.1%} while sending ({span:.1f} s), {ok / (rate * wall):.1%} of wall")
    print("    " + ", ".join(f"{k}: {v}" for k, v in _compare(tmp / "one process", tmp / "ray, 2 workers").items()))


def local(rows: int, tmp: Path) -> None:
    lines = (ROOT / "examples" / "qa.jsonl").read_text().splitlines()[:rows]
    src = tmp / "local.jsonl"
    src.write_text("\n".join(lines) + "\n")
    walls = {}
    for name, extra in (("local one", ()), ("local ray", ("--executor", "ray", "--workers", "2"))):
        walls[name] = _cli(src, tmp / name, tmp / f"{name}.sqlite", "--provider", "local", *extra)
    print(f"(b) {rows} rows, --provider local (1 llama.cpp thread per process): one process {walls['local one']:.0f} s, "
          f"ray 2 workers {walls['local ray']:.0f} s")
    print("    " + ", ".join(f"{k}: {v}" for k, v in _compare(tmp / "local one", tmp / "local ray").items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=60, help="(a) hosted rows")
    p.add_argument("--local-rows", type=int, default=4, help="(b) local-model rows (0: skip)")
    p.add_argument("--learn", action="store_true", help="(c) also: the server sends rate-limit headers and the "
                                                        "CLI is not told the limit (learned once, for the cluster)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.rows:
            hosted(args.rows, Path(tmp))
        if args.local_rows:
            local(args.local_rows, Path(tmp))
        if args.rows and args.learn:
            hosted(args.rows, Path(tmp), learn=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
