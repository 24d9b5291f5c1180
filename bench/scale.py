"""Scale benchmark: does a curate run's memory stay flat as the rows grow? (prints figures, asserts nothing)

    python bench/scale.py                      # 5,000 and 50,000 rows
    python bench/scale.py --rows 5000 50000 200000
    python bench/scale.py --million            # adds 1,000,000 rows (79 minutes at 212 rows/s; needs ~8 GB of disk)
    python bench/scale.py --million --max-concurrency 64   # more calls in flight

Each size is a fresh input (the rows of ``examples/qa.jsonl``, cycled, every prompt made unique
so no answer comes from the cache), curated by ``python -m clearapi curate --provider openai``
as a subprocess against the loopback emulator (no rate limit, no latency) with its own cache
file. Printed per size: wall, rows/s, the clearapi process's peak RSS (``ru_maxrss`` from
``wait4``, so only that child), when in the run that peak came (sampled from /proc), and the
sizes of report.html, the cache and the other outputs, then the targets: peak RSS at the
largest size <= 1.25x the smallest, rows/s >= 0.85x, report.html <= 5 MB. The machine may be
shared: the 1-minute load average before and after each run is printed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clearapi_testing.emulator_process import emulator_process  # noqa: E402

KEY = "sk-bench-not-a-real-key-0000000000"
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OPENAI_API_KEY=KEY)


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    with emulator_process(env=ENV) as url:
        yield url + "/v1"


def make_input(path: Path, rows: int) -> None:
    """`rows` rows cycled from examples/qa.jsonl, each prompt and id made unique."""
    base = [json.loads(x) for x in (ROOT / "examples" / "qa.jsonl").read_text().splitlines() if x.strip()]
    with path.open("w") as fh:
        for i, row in zip(range(rows), itertools.cycle(base), strict=False):
            messages = [dict(m) for m in row["messages"]]
            for m in messages:
                if m["role"] == "user":
                    m["content"] = f"{m['content']} (item {i})"
                    break
            fh.write(json.dumps({"id": f"{row['id']}-{i}", "messages": messages}) + "\n")


class RssSampler(threading.Thread):
    """VmRSS of one process once a second, to say *when* the peak came (the peak itself is
    ru_maxrss, which misses nothing between samples)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(1.0):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.monotonic() - start, int(line.split()[1])))


def size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def load() -> float:
    return os.getloadavg()[0]


def run(base_url: str, rows: int, work: Path, extra: list[str]) -> dict[str, float]:
    data, out, cache = work / f"in-{rows}.jsonl", work / f"out-{rows}", work / f"cache-{rows}.sqlite"
    make_input(data, rows)
    cmd = [sys.executable, "-m", "clearapi", "curate", str(data), "-o", str(out), "--provider", "openai",
           "--base-url", base_url, "--cache", str(cache), "--no-progress", "-q", "--json", *extra]
    load_before = load()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = RssSampler(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    sampler.stop.set()
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"curate exited {code}: {stderr.decode()[-2000:]}")
    summary = json.loads(stdout)
    if summary["counts"]["rejected"]:
        raise SystemExit(f"{summary['counts']['rejected']} row(s) rejected: see {out / 'rejects.jsonl'}")
    peak_at = max(sampler.samples, key=lambda s: s[1])[0] / wall if sampler.samples else float("nan")
    pass1 = [kb for t, kb in sampler.samples if t < 0.8 * wall]
    outputs = sum(size_mb(out / name) for name in ("curated.jsonl", "scores.jsonl", "rejects.jsonl", "summary.json"))
    figures = {"rows": rows, "wall_s": wall, "rows_per_s": rows / wall, "peak_rss_mb": usage.ru_maxrss / 1024,
               "rss_first_80pct_mb": (max(pass1) / 1024) if pass1 else float("nan"), "peak_at": peak_at,
               "report_mb": size_mb(out / "report.html"), "cache_mb": size_mb(cache), "outputs_mb": outputs,
               "cpu_s": usage.ru_utime + usage.ru_stime, "load_before": load_before, "load_after": load(),
               "curated": summary["counts"]["kept"] + summary["counts"]["corrected"]}
    for path in (data, cache):
        path.unlink()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[5_000, 50_000])
    ap.add_argument("--million", action="store_true", help="also run 1,000,000 rows")
    ap.add_argument("--keep", type=Path, help="keep the output folders under this directory")
    ap.add_argument("--max-concurrency", type=int, metavar="N", help="calls in flight (default: the profile's)")
    args = ap.parse_args()
    sizes = sorted(set(args.rows + ([1_000_000] if args.million else [])))
    results = []
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clearapi-scale-")))
        work.mkdir(parents=True, exist_ok=True)
        base_url = stack.enter_context(emulator())
        print(f"{'rows':>9} {'wall s':>8} {'rows/s':>7} {'peak RSS MB':>11} {'pass-1 RSS':>10} {'peak at':>7} "
              f"{'report MB':>9} {'cache MB':>8} {'outputs MB':>10} {'CPU ms/row':>10} {'load':>9}", flush=True)
        for rows in sizes:
            extra = ["--max-concurrency", str(args.max_concurrency)] if args.max_concurrency else []
            f = run(base_url, rows, work, extra)
            results.append(f)
            print(f"{rows:>9,} {f['wall_s']:>8.1f} {f['rows_per_s']:>7.1f} {f['peak_rss_mb']:>11.1f} "
                  f"{f['rss_first_80pct_mb']:>10.1f} {f['peak_at']:>7.0%} {f['report_mb']:>9.2f} "
                  f"{f['cache_mb']:>8.1f} {f['outputs_mb']:>10.1f} {1000 * f['cpu_s'] / rows:>10.2f} "
                  f"{f['load_before']:>4.1f}/{f['load_after']:<4.1f}", flush=True)
    if len(results) >= 2:
        small, large = results[0], results[-1]
        rss = large["peak_rss_mb"] / small["peak_rss_mb"]
        speed = large["rows_per_s"] / small["rows_per_s"]
        print(f"peak RSS {large['rows']:,} / {small['rows']:,}: {rss:.2f}x (target <= 1.25x); "
              f"rows/s: {speed:.2f}x (target >= 0.85x); report.html at {large['rows']:,}: "
              f"{large['report_mb']:.2f} MB (target <= 5 MB)")
    print("pass-1 RSS: the largest sample in the first 80% of the wall; peak at: when the largest sample came; "
          "load: 1-minute load average before/after")


if __name__ == "__main__":
    main()
