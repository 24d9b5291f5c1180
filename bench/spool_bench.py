"""What reading a dataset from a pipe costs: the one-time copy of stdin to a private file.

    .venv/bin/python bench/spool_bench.py [--mb 200]

Runs a child process that pipes MB megabytes of JSON Lines into ``SpooledInput("-")`` and then
reads the copy once with `DatasetReader`, against the same bytes read from a regular file, and
prints the copy's throughput and each child's peak resident memory (the copy moves 1 MiB chunks,
so it adds no memory).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from clearapi.datasets import DatasetReader
from clearapi.spool import SpooledInput
spool = {spool}
start = time.perf_counter()
if spool:
    with SpooledInput("-") as source:
        copied = time.perf_counter() - start
        size = source.path.stat().st_size
        rows = sum(1 for _ in DatasetReader(source.path))
else:
    copied, size = 0.0, 0
    rows = sum(1 for _ in DatasetReader({file!r}))
total = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{{rows}} {{size}} {{copied:.3f}} {{total:.3f}} {{peak:.1f}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    row = b'{"messages": [{"role": "user", "content": "What is the capital of France?"}, ' \
          b'{"role": "assistant", "content": "Paris is the capital of France."}]}\n'
    data = row * (args.mb * 1_000_000 // len(row))
    for spool in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "data.jsonl"
            if not spool:
                file.write_bytes(data)
            code = CHILD.format(root=str(ROOT), spool=spool, file=str(file))
            done = subprocess.run([sys.executable, "-c", code], input=data if spool else b"",
                                  capture_output=True, check=True)
        rows, size, copied, total, peak = done.stdout.split()
        label = "stdin, spooled, then read" if spool else "the same data in a file"
        extra = f"copy {float(copied):.2f} s ({int(size) / 1e6 / max(float(copied), 1e-9):.0f} MB/s), " if spool else ""
        print(f"{label}: {int(rows):,} rows, {len(data) / 1e6:.0f} MB, {extra}total {float(total):.2f} s, "
              f"peak RSS {float(peak):.1f} MB")


if __name__ == "__main__":
    main()
