"""Engine benchmark against the loopback emulator (a script that prints figures, not a test).

    .venv/bin/python bench/engine_bench.py                 # all three parts
    .venv/bin/python bench/engine_bench.py --only a --duration 120 --rpm 600

(a) throughput at an RPM limit set on the server, as a fraction of that limit, with the
    429 count. The engine is not told the limit: it reads it from the first answer's
    ``x-ratelimit-*`` headers (pass ``--tell-engine`` to set ``rpm=`` instead).
(b) requests/s with no limit and no latency through the Engine (cache off, and cache on),
    next to a plain ``asyncio.gather`` over ``openai.AsyncOpenAI`` with the same
    concurrency, in the same run, against the same emulator process.
(c) peak RSS while streaming ``--rows`` (default 1,000,000) rows through ``engine.map``
    with a fast in-process adapter and the cache off, measured in a fresh subprocess.

Targets: (a) >= 97% of the limit with 429s under 1% of requests; (b) overhead within
1.25x of the plain SDK loop; (c) peak RSS under 300 MB. The machine is shared, so figures
vary run to run; (b) alternates the loops and keeps each one's best run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clearapi import ChatRequest, Engine, Message  # noqa: E402
from clearapi.profiles import Limits, load_profile  # noqa: E402
from clearapi_testing.emulator_process import emulator_process  # noqa: E402

KEY = "sk-bench-not-a-real-key-0000000000"
MODEL = "gpt-4o-mini"


# -- the emulator as a process ----------------------------------------------------------------

def emulator(*args: str) -> contextlib.AbstractContextManager[str]:
    return emulator_process(*args)


def emu_get(base_url: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(base_url + path, timeout=10) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


def emu_reset(base_url: str) -> None:
    req = urllib.request.Request(base_url + "/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass


def question(i: int) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=f"Row {i}: say something short.")], max_tokens=16)


# -- (a) ------------------------------------------------------------------------------------

async def _run_for(engine: Engine, seconds: float) -> int:
    done = 0

    def rows() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with engine, contextlib.aclosing(engine.map(rows(), lambda i: engine.chat(question(i)),
                                                      window=256)) as results:
        async for _ in results:
            done += 1
            if loop.time() >= deadline:
                break
    return done


def bench_rate_limit(rpm: float, seconds: float, tell_engine: bool, concurrency: int) -> bool:
    print(f"\n(a) throughput at a server limit of {rpm:.0f} RPM for {seconds:.0f} s "
          f"(engine {'told the limit' if tell_engine else 'learns it from headers'}, concurrency {concurrency})")
    # The ideal server on purpose: this part measures pacing from the headers (bench/pacing_bench.py
    # measures the rude server without them).
    with emulator("--rpm", str(rpm), "--tpm", "1000000000", "--latency-ms", "20", "--ratelimit-headers",
                  "--polite") as url:
        engine = Engine("openai", model=MODEL, base_url=url + "/v1", api_key=KEY, cache=False, progress=False,
                        rpm=rpm if tell_engine else None, tpm=None, max_concurrency=concurrency)
        t0 = time.perf_counter()
        answered = asyncio.run(_run_for(engine, seconds))
        elapsed = time.perf_counter() - t0
        stats = emu_get(url, "/stats")
    sent = int(stats["requests"])  # type: ignore[call-overload]
    limited = int(stats["rate_limited"])  # type: ignore[call-overload]
    fraction = answered / (rpm * elapsed / 60.0)
    share_429 = limited / max(1, sent)
    print(f"    answered {answered} in {elapsed:.1f} s = {answered / elapsed * 60:.0f} RPM "
          f"= {fraction:.1%} of the limit")
    print(f"    requests sent {sent}, 429s {limited} ({share_429:.2%}); engine learned_rpm="
          f"{engine.stats.learned_rpm}, paced at {engine.rpm:.0f} RPM" if engine.rpm else "")
    ok = fraction >= 0.97 and share_429 < 0.01
    print(f"    target >= 97% with 429s < 1%: {'MET' if ok else 'MISSED'}")
    return ok


# -- (b) ------------------------------------------------------------------------------------

async def _plain_sdk(url: str, n: int, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model=MODEL, max_tokens=16,
                messages=[{"role": "user", "content": f"Row {i}: say something short."}])
            return r.choices[0].message.content or ""

    t0 = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await client.close()
    assert len(out) == n
    return n / elapsed


async def _adapter_only(url: str, n: int, concurrency: int) -> float:
    """The same gather loop over our OpenAI adapter alone: splits SDK, adapter and engine costs."""
    from clearapi.adapters import create_adapter

    adapter = create_adapter(load_profile("openai"), model=MODEL, base_url=url + "/v1", api_key=KEY,
                             timeout=120.0, max_concurrency=concurrency)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            return (await adapter.chat(question(i))).text

    t0 = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await adapter.aclose()
    assert len(out) == n
    return n / elapsed


async def _engine(url: str, n: int, concurrency: int, cache: Path | bool) -> float:
    profile = load_profile("openai")
    profile = profile.model_copy(update={"limits": Limits(rpm=None, tpm=None, max_concurrency=concurrency)})
    engine = Engine(profile, model=MODEL, base_url=url + "/v1", api_key=KEY, cache=cache, progress=False)
    async with engine:
        t0 = time.perf_counter()
        count = 0
        async for _ in engine.map(range(n), lambda i: engine.chat(question(i)), window=4 * concurrency):
            count += 1
        elapsed = time.perf_counter() - t0
    assert count == n and engine.stats.requests == n
    return n / elapsed


def bench_overhead(n: int, concurrency: int, rounds: int) -> bool:
    print(f"\n(b) no limit, no latency: {n} requests at concurrency {concurrency}, best of {rounds}")
    best = {"plain": 0.0, "adapter only": 0.0, "engine": 0.0, "engine+cache": 0.0}
    # --polite: a stray 500 would fail the plain loop (no retries) and add retries to the engine's count.
    with emulator("--polite") as url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_plain_sdk(url, min(n, 200), concurrency))  # warm up both sides
        for r in range(rounds):
            best["plain"] = max(best["plain"], asyncio.run(_plain_sdk(url, n, concurrency)))
            best["adapter only"] = max(best["adapter only"], asyncio.run(_adapter_only(url, n, concurrency)))
            best["engine"] = max(best["engine"], asyncio.run(_engine(url, n, concurrency, False)))
            cache = Path(tmp) / f"cache{r}.sqlite"
            best["engine+cache"] = max(best["engine+cache"], asyncio.run(_engine(url, n, concurrency, cache)))
    for name, rps in best.items():
        print(f"    {name:<13} {rps:8.0f} requests/s")
    factor = best["plain"] / best["engine"]
    factor_cache = best["plain"] / best["engine+cache"]
    factor_adapter = best["plain"] / best["adapter only"]
    print(f"    overhead: engine takes {factor:.2f}x the plain loop's time ({factor_cache:.2f}x with the "
          f"SQLite cache on); the adapter alone {factor_adapter:.2f}x")
    ok = factor <= 1.25
    print(f"    target within 1.25x: {'MET' if ok else 'MISSED'}")
    return ok


# -- (c) ------------------------------------------------------------------------------------

async def _stream_rows(rows: int) -> None:
    from clearapi.profiles import Profile
    from clearapi.testing import ScriptedAdapter

    profile = Profile(name="bench", protocol="openai_chat", default_model="m",
                      limits=Limits(max_concurrency=64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    async with Engine(profile, adapter=ScriptedAdapter(record=False), cache=False, progress=False) as engine:
        t0 = time.perf_counter()
        count = 0
        async for _ in engine.map(range(rows), lambda i: engine.chat(question(i)), window=256):
            count += 1
        elapsed = time.perf_counter() - t0
        stats = engine.stats
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": count, "seconds": elapsed, "peak_rss_mb": peak, "rss_before_mb": before,
                      "logical_calls": stats.logical_calls}))


def bench_rss(rows: int) -> bool:
    print(f"\n(c) peak RSS streaming {rows:,} rows through engine.map (fast in-process adapter, cache off)")
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(rows)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"    {data['rows']:,} rows in {data['seconds']:.0f} s ({data['rows'] / data['seconds']:.0f} rows/s); "
          f"RSS after imports {data['rss_before_mb']:.0f} MB, peak {data['peak_rss_mb']:.0f} MB")
    ok = data["rows"] == rows and data["peak_rss_mb"] < 300
    print(f"    target < 300 MB: {'MET' if ok else 'MISSED'}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["a", "b", "c"], action="append", help="run only these parts")
    p.add_argument("--rpm", type=float, default=600.0, help="(a) the server's limit")
    p.add_argument("--duration", type=float, default=60.0, help="(a) seconds to run at the limit")
    p.add_argument("--tell-engine", action="store_true", help="(a) pass the limit to the engine as rpm=")
    p.add_argument("--concurrency", type=int, default=32, help="(a, b) concurrency bound")
    p.add_argument("--requests", type=int, default=3000, help="(b) requests per loop")
    p.add_argument("--rounds", type=int, default=2, help="(b) alternating rounds")
    p.add_argument("--rows", type=int, default=1_000_000, help="(c) rows to stream")
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        asyncio.run(_stream_rows(args.rss_child))
        return 0
    parts = args.only or ["a", "b", "c"]
    results = []
    if "a" in parts:
        results.append(bench_rate_limit(args.rpm, args.duration, args.tell_engine, args.concurrency))
    if "b" in parts:
        results.append(bench_overhead(args.requests, args.concurrency, args.rounds))
    if "c" in parts:
        results.append(bench_rss(args.rows))
    print(f"\n{sum(results)}/{len(results)} targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
