"""How fast `read_examples` streams a big file, and whether its memory stays flat.

    python bench/read_bench.py                       # 1,000,000 OpenAI-chat lines, plain and gzip
    python bench/read_bench.py --shapes all --lines 200000
    python bench/read_bench.py --read FILE           # measure one existing file

The file is generated in a temporary folder (every row with an explicit id, so duplicate detection
is exercised at full size; about 1% bad lines of several kinds), then read in a fresh child process
so that its peak RSS (``ru_maxrss``) belongs to the read alone. When GNU time is installed the child
runs under ``/usr/bin/time -v`` and its "Maximum resident set size" is reported too. Figures are
printed, never asserted: the target is flat memory (well under 100 MB of growth over the
interpreter's baseline) whatever the file size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards", "quietly", "judge", "boxing", "matches", "and", "an", "engineer", "reads", "the", "logs", "twice", "before", "lunch"]


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _openai_chat(rng: random.Random, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"id": f"row-{i}", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": _text(rng, 5, 40)},
        {"role": "assistant", "content": _text(rng, 3, 60)}]}
    if i % 7 == 0:
        row["metadata"] = {"source": "bench", "n": i}
    return row


def _alpaca(rng: random.Random, i: int) -> dict[str, Any]:
    return {"id": i, "instruction": _text(rng, 4, 20), "input": _text(rng, 0, 20), "output": _text(rng, 3, 60)}


def _prompt_completion(rng: random.Random, i: int) -> dict[str, Any]:
    return {"id": f"p{i}", "prompt": _text(rng, 5, 40), "completion": _text(rng, 3, 60)}


def _anthropic(rng: random.Random, i: int) -> dict[str, Any]:
    return {"custom_id": f"a{i}", "system": "Be brief.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": _text(rng, 5, 40)}]},
        {"role": "assistant", "content": _text(rng, 3, 60)}]}


SHAPES: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "openai_chat": _openai_chat, "alpaca": _alpaca, "prompt_completion": _prompt_completion,
    "anthropic": _anthropic,
}
BAD_LINES = (b"{not json", b"[1, 2, 3]", b'{"messages": "oops"}', b"\xff\xfe bad bytes",
             b'{"id": "row-1", "messages": [{"role": "user", "content": "dup"}, {"role": "assistant", "content": "x"}]}')


def generate(path: Path, shape: str, lines: int, *, seed: int = 7, ids: bool = True) -> int:
    """Write `lines` lines (about 1% bad, a blank line now and then); return the bytes written.

    Without `ids` the rows carry no explicit id, which shows the reader's own memory (the
    duplicate-id table is the only thing that grows with the file, 12 bytes a slot).
    """
    rng = random.Random(seed)
    make = SHAPES[shape]
    out_file = gzip.open(path, "wb", compresslevel=6) if path.suffix == ".gz" else open(path, "wb")  # noqa: SIM115
    with out_file as out:
        buffer: list[bytes] = []
        for i in range(1, lines + 1):
            if i % 100 == 0:
                buffer.append(BAD_LINES[(i // 100) % len(BAD_LINES)])
            elif i % 997 == 0:
                buffer.append(b"")
            else:
                row = make(rng, i)
                if not ids:
                    row.pop("id", None)
                    row.pop("custom_id", None)
                buffer.append(orjson.dumps(row))
            if len(buffer) >= 10_000:
                out.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
    return path.stat().st_size


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def read_once(path: Path) -> dict[str, Any]:
    """Read `path` fully in this process and return the figures (run in a fresh child)."""
    from clearapi.datasets import DatasetReader

    reader = DatasetReader(path)
    baseline = _rss_kb()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in reader:
        pass
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = reader.stats
    return {"file": str(path), "rows": stats.rows, "examples": stats.examples, "rejects": stats.rejects,
            "blank_lines": stats.blank_lines, "seconds": round(seconds, 2),
            "rows_per_s": round(stats.rows / seconds) if seconds else None,
            "cpu_seconds": round(cpu, 2), "rows_per_cpu_s": round(stats.rows / cpu) if cpu else None,
            "baseline_rss_mb": round(baseline / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
            "growth_mb": round((peak - baseline) / 1024, 1)}


def measure(path: Path, *, gnu_time: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--read", str(path)]
    time_bin = shutil.which("time") if gnu_time else None
    if time_bin and Path(time_bin).resolve() == Path("/usr/bin/time").resolve():
        command = ["/usr/bin/time", "-v", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if found:
        figures["gnu_time_max_rss_mb"] = round(int(found.group(1)) / 1024, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="openai_chat", help="comma-separated, or 'all'")
    parser.add_argument("--no-gzip", action="store_true", help="skip the gzip variant")
    parser.add_argument("--no-ids", action="store_true", help="rows without explicit ids")
    parser.add_argument("--no-gnu-time", action="store_true", help="do not wrap the child in /usr/bin/time -v")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read_once(args.read)))
        return
    shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
    with tempfile.TemporaryDirectory(prefix="clearapi-bench-") as folder:
        for shape in shapes:
            variants = [Path(folder, f"{shape}.jsonl")] + ([] if args.no_gzip else [Path(folder, f"{shape}.jsonl.gz")])
            for path in variants:
                started = time.perf_counter()
                size = generate(path, shape, args.lines, ids=not args.no_ids)
                print(f"generated {path.name}: {args.lines:,} lines, {size / 1e6:.1f} MB "
                      f"in {time.perf_counter() - started:.1f}s", flush=True)
                figures = measure(path, gnu_time=not args.no_gnu_time)
                print("  " + ", ".join(f"{k}={v}" for k, v in figures.items() if k != "file"), flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
