"""Pacing benchmark: how well the engine uses a server's limit it may not be told (prints figures).

    .venv/bin/python bench/pacing_bench.py                      # every scenario, twice
    .venv/bin/python bench/pacing_bench.py --only b --only c --rounds 3 --duration 60

Every scenario runs against the loopback emulator (a subprocess) with ``ratelimit_headers``
set explicitly: off, like vLLM, gateways and llama.cpp's server, except in (d).

(a) unlimited server: ``Engine("openai", base_url=...)`` (no limit told, so the profile's
    guess must not apply off its own host) against plain ``openai.AsyncOpenAI`` + a semaphore
    of the same concurrency; target >= 0.9x the plain loop's requests/s.
(b) a 10 req/s server (emulator rpm=600), engine not told: share of the limit answered
    (target >= 90%) and 429s as a share of requests sent (target < 5%).
(c) the same server, engine told rpm 25x too high (a ceiling, not a promise): 429s < 5%,
    >= 85% of the limit.
(d) the same server sending rate-limit headers, engine told the true limit: 429s < 1% and
    requests beyond the answered ones <= 1%.
(e) a 40-row ``curate`` at 10 req/s with billed-API settings (``--provider openai
    --base-url`` the emulator): >= 90% of the limit over the run's wall time.

The share of the limit is answered requests / (limit x wall time). The machine is shared,
so each scenario runs ``--rounds`` times and the table shows every round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_bench import KEY, MODEL, emu_get, emulator, question  # noqa: E402

from clearapi import Engine  # noqa: E402

LIMIT_RPM = 600.0


def _server(rpm: float | None, headers: bool, latency_ms: float) -> contextlib.AbstractContextManager[str]:
    config: dict[str, object] = {"ratelimit_headers": headers, "latency": {"kind": "fixed", "ms": latency_ms}}
    if rpm is not None:
        config["rpm"] = rpm
    return emulator("--config", json.dumps(config))


def _counts(url: str) -> tuple[int, int, int]:
    """(requests the server saw, 200s, 429s from its limit)."""
    stats = emu_get(url, "/stats")
    by_status: dict[str, int] = stats["by_status"]  # type: ignore[assignment]
    return int(stats["requests"]), by_status.get("200", 0), int(stats["rate_limited"])  # type: ignore[call-overload]


# -- (a) ------------------------------------------------------------------------------------------

async def _plain(url: str, n: int, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model=MODEL, max_tokens=16, messages=[{"role": "user", "content": f"Row {i}: say something short."}])

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return n / elapsed


async def _engine(url: str, n: int, concurrency: int) -> float:
    engine = Engine("openai", model=MODEL, base_url=url + "/v1", api_key=KEY, cache=False, progress=False,
                    max_concurrency=concurrency)
    async with engine:
        t0 = time.perf_counter()
        count = 0
        async for _ in engine.map(range(n), lambda i: engine.chat(question(i)), window=4 * concurrency):
            count += 1
        elapsed = time.perf_counter() - t0
    assert count == n and engine.stats.requests == n, engine.stats
    return n / elapsed


def scenario_a(n: int, concurrency: int, latency_ms: float) -> dict[str, float]:
    with _server(None, False, latency_ms) as url:
        asyncio.run(_plain(url, min(n, 200), concurrency))  # warm up both sides
        plain = asyncio.run(_plain(url, n, concurrency))
        ours = asyncio.run(_engine(url, n, concurrency))
    return {"plain rps": plain, "engine rps": ours, "ratio": ours / plain}


# -- (b, c, d) --------------------------------------------------------------------------------------

async def _run_for(engine: Engine, seconds: float) -> float:
    def rows() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    t0 = time.perf_counter()
    async with engine, contextlib.aclosing(engine.map(rows(), lambda i: engine.chat(question(i)),
                                                      window=256)) as results:
        async for _ in results:
            if time.perf_counter() - t0 >= seconds:
                break
    return time.perf_counter() - t0


def scenario_limited(seconds: float, *, headers: bool, tell: float | None, concurrency: int,
                     latency_ms: float) -> dict[str, float]:
    with _server(LIMIT_RPM, headers, latency_ms) as url:
        engine = Engine("openai", model=MODEL, base_url=url + "/v1", api_key=KEY, cache=False, progress=False,
                        rpm=tell, max_concurrency=concurrency)
        elapsed = asyncio.run(_run_for(engine, seconds))
        sent, ok, limited = _counts(url)
    return {"share": ok / (LIMIT_RPM / 60.0 * elapsed), "429s": limited / max(1, sent),
            "extra": (sent - ok) / max(1, ok), "seconds": elapsed, "sent": sent,
            "paced rpm": engine.rpm or 0.0}


# -- (e) ------------------------------------------------------------------------------------------

def scenario_curate(rows: int, latency_ms: float) -> dict[str, float]:
    from clearapi.clear.curation import curate

    source = [json.loads(line) for line in (ROOT / "examples" / "qa.jsonl").read_text().splitlines() if line]
    with _server(LIMIT_RPM, False, latency_ms) as url, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "in.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in source[:rows]))
        t0 = time.perf_counter()
        summary = asyncio.run(curate(data, Path(tmp) / "out", provider="openai", base_url=url + "/v1",
                                     api_key=KEY, model=MODEL, cache=False, progress=False))
        elapsed = time.perf_counter() - t0
        sent, ok, limited = _counts(url)
    counts = summary.counts
    assert counts.rows == rows, counts
    return {"share": ok / (LIMIT_RPM / 60.0 * elapsed), "429s": limited / max(1, sent), "seconds": elapsed,
            "sent": sent, "kept": counts.kept, "dropped": counts.dropped, "corrected": counts.corrected}


# -- the table ------------------------------------------------------------------------------------

def _spread(values: list[float], fmt: str) -> str:
    shown = " ".join(format(v, fmt) for v in values)
    return f"{format(statistics.median(values), fmt)} [{shown}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=list("abcde"), action="append", help="run only these scenarios")
    p.add_argument("--rounds", type=int, default=2, help="runs of each scenario (the machine is shared)")
    p.add_argument("--duration", type=float, default=40.0, help="(b, c, d) seconds per run")
    p.add_argument("--requests", type=int, default=2000, help="(a) requests per loop")
    p.add_argument("--concurrency", type=int, default=16, help="concurrency bound (the openai profile's)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="(b-e) the server's service time")
    p.add_argument("--rows", type=int, default=40, help="(e) rows curated")
    args = p.parse_args()
    parts = args.only or list("abcde")
    rows: list[tuple[str, str, str, bool]] = []
    for part in parts:
        runs: list[dict[str, float]] = []
        for r in range(args.rounds):
            if part == "a":
                runs.append(scenario_a(args.requests, args.concurrency, 0.0))
            elif part == "b":
                runs.append(scenario_limited(args.duration, headers=False, tell=None,
                                             concurrency=args.concurrency, latency_ms=args.latency_ms))
            elif part == "c":
                runs.append(scenario_limited(args.duration, headers=False, tell=25 * LIMIT_RPM,
                                             concurrency=args.concurrency, latency_ms=args.latency_ms))
            elif part == "d":
                runs.append(scenario_limited(args.duration, headers=True, tell=LIMIT_RPM,
                                             concurrency=args.concurrency, latency_ms=args.latency_ms))
            else:
                runs.append(scenario_curate(args.rows, args.latency_ms))
            print(f"  ({part}) round {r + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in runs[-1].items()),
                  flush=True)
        col = {k: [run[k] for run in runs] for k in runs[0]}
        if part == "a":
            med = statistics.median(col["ratio"])
            rows.append(("a unlimited, no headers", f"engine/plain {_spread(col['ratio'], '.2f')}",
                         f"plain {_spread(col['plain rps'], '.0f')} rps", med >= 0.9))
        elif part in "bcd":
            share, s429 = statistics.median(col["share"]), statistics.median(col["429s"])
            label = {"b": "b 10 req/s, not told", "c": "c 10 req/s, told 25x", "d": "d headers, told true"}[part]
            second = f"429s {_spread(col['429s'], '.1%')}"
            if part == "d":
                second += f", extra {_spread(col['extra'], '.1%')}"
                ok = s429 < 0.01 and statistics.median(col["extra"]) <= 0.01
            else:
                ok = s429 < 0.05 and share >= (0.90 if part == "b" else 0.85)
            rows.append((label, f"limit used {_spread(col['share'], '.1%')}", second, ok))
        else:
            share = statistics.median(col["share"])
            rows.append((f"e curate {args.rows} rows", f"limit used {_spread(col['share'], '.1%')}",
                         f"429s {_spread(col['429s'], '.1%')}", share >= 0.9))
    print(f"\nscenario                      median [each of {args.rounds} rounds]")
    for label, first, second, ok in rows:
        print(f"{label:<26}  {first:<34}  {second:<40}  {'MET' if ok else 'MISSED'}")
    print(f"{sum(ok for *_, ok in rows)}/{len(rows)} targets met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
