"""Memory and time of duplicate-id detection at scale (prints figures, asserts nothing).

    python bench/idset_bench.py [--ids 1000000] [--memory-ids N]

Feeds N distinct explicit ids through the reader's id set and prints the peak traced memory
(`tracemalloc`: what the set allocates in this process, not the temporary file the OS caches), the
wall time, and microseconds per id; then checks that a repeat of the first id is still caught.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from clearapi.datasets import _IdSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--memory-ids", type=int, default=None, help="spill bound (default: the reader's)")
    args = ap.parse_args()
    print(f"{'ids':>10} {'peak MB':>8} {'wall s':>7} {'us/id':>6} {'spilled':>7}")
    for n in args.ids:
        tracemalloc.start()
        ids = _IdSet(args.memory_ids) if args.memory_ids else _IdSet()
        start = time.perf_counter()
        for i in range(n):
            ids.add(f"example-{i:09d}", i + 1)
        wall = time.perf_counter() - start
        assert ids.add("example-000000000", n + 1) == 1
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        spilled = getattr(ids, "_db", None) is not None
        tracemalloc.stop()
        print(f"{n:>10,} {peak:>8.1f} {wall:>7.2f} {1e6 * wall / n:>6.2f} {spilled!s:>7}", flush=True)
        getattr(ids, "close", lambda: None)()


if __name__ == "__main__":
    main()
