"""Local model speed on this machine: the raw llama.cpp yardstick and `curate --provider local` per row.

    python bench/local_bench.py [--short-rows 12] [--long-rows 6] [--long PATH] [--threads N]
                                [--repeat 2] [--calls 8] [--model-path X.gguf]

Prints, in one run on the same machine:

- the yardstick: raw llama-cpp-python prompt evaluation (tokens/s) of a 512-token prompt from an
  empty context, with the same GGUF and thread count as the adapter (best of 3);
- `curate --provider local` (no cache, default plan) seconds per row on the first `--short-rows`
  rows of examples/qa.jsonl and the first `--long-rows` rows of a long-context set (Alpaca rows
  with several hundred characters of documentation text as `input`; `--long`, default
  examples/longctx/qa.jsonl), each written to a temporary file first, so demonstrations are
  drawn from those rows only (the same rows and pool whatever the commit);
- the ratio: seconds per row / seconds per 1,000 raw tokens (the yardstick measured just before
  each set), which cancels most of the noise of a shared machine.

`--repeat` runs the sets again (a second ratio from the same process). With the defaults one
run takes 3-10 minutes on 2 shared cores. `--calls N` adds the per-workload adapter figures
(greedy chat, logprobs, n=5 sampling, rating, teacher-forced scoring). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clearapi.adapters.local_llama import LocalLlamaAdapter
from clearapi.records import ChatRequest, ChatResponse, Message

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Name three primary colors.",
    "What is 12 times 12?",
    "Who wrote Romeo and Juliet?",
    "Why is the sky blue?",
    "Give me a tip for learning a new language.",
    "What does a CPU do?",
]
ANSWER = ("Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
          "to make glucose and oxygen; it takes place mainly in the chloroplasts of leaf cells.")
RATING = ("Question: {q}\nProposed answer: Paris\nIs the proposed answer:\n(A) Correct\n(B) Incorrect\n"
          "(C) I am not sure\nAnswer with the letter only.")


def user(text: str) -> Message:
    return Message(role="user", content=text)


def yardstick(model_path: Path, threads: int, tokens: int = 512, runs: int = 3) -> float:
    """Raw llama-cpp-python prompt evaluation, tokens/s: best of `runs` evaluations from an empty context."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(model_path), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                  logits_all=False, verbose=False)
    try:
        text = (ROOT / "README.md").read_text(encoding="utf-8")
        ids = llama.tokenize(text.encode("utf-8"), add_bos=False)[:tokens]
        best = 0.0
        for _ in range(runs):
            llama.reset()
            start = time.perf_counter()
            llama.eval(ids)
            best = max(best, len(ids) / (time.perf_counter() - start))
        return best
    finally:
        llama.close()


def subset(src: Path, rows: int, into: Path) -> Path:
    lines = [x for x in src.read_text(encoding="utf-8").splitlines() if x.strip()][:rows]
    into.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return into


async def curate_set(name: str, data: Path, model_path: Path, threads: int, tmp: Path) -> dict[str, Any]:
    from clearapi import curate

    raw = await asyncio.to_thread(yardstick, model_path, threads)
    out = tmp / f"out-{name}-{time.monotonic_ns()}"
    start, cpu = time.perf_counter(), time.process_time()
    summary = await curate(data, out, provider="local", model_path=str(model_path), cache=False, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = summary.counts.rows
    tokens = summary.engine.prompt_tokens + summary.engine.completion_tokens
    per_row = wall / rows
    ratio = per_row / (1000.0 / raw)
    print(f"{name:<6} {rows:3d} rows  {per_row:6.2f} s/row  ({cpu / rows:6.2f} CPU s/row, "
          f"{tokens / rows:6.0f} tokens/row, {summary.engine.requests / rows:4.1f} calls/row)  "
          f"yardstick {raw:6.1f} tok/s  ratio {ratio:5.2f}  load {os.getloadavg()[0]:.2f}", flush=True)
    from clearapi.adapters.local_model import ModelSettings, load_model

    kv = getattr(load_model(ModelSettings(path=model_path)), "kv", None)
    if kv is not None:  # prefix reuse (absent before it existed)
        share = kv.reused / max(1, kv.reused + kv.evaluated)
        print(f"       prefix cache so far: {kv.evaluated} tokens evaluated, {kv.reused} reused ({share:.0%})")
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    return {"per_row": per_row, "ratio": ratio, "raw": raw,
            "decisions": {s["line"]: (s["action"], round(s["confidence"], 4)) for s in scores}}


async def workload(adapter: LocalLlamaAdapter, name: str, calls: int,
                   make: Callable[[int], ChatRequest], count: Callable[[ChatResponse], int],
                   unit: str) -> None:
    await adapter.chat(make(0))  # warm: first-touch costs are not the steady state
    tokens = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(calls):
        tokens += count(await adapter.chat(make(i)))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    print(f"{name:<34} {calls / wall:7.2f} calls/s  {tokens / wall:8.1f} {unit}/s  "
          f"| per CPU-second: {calls / cpu:6.2f} calls {tokens / cpu:7.1f} {unit}  "
          f"({calls} calls, {tokens} {unit}, {wall:.1f} s wall, {cpu:.1f} s CPU)")


async def workloads(adapter: LocalLlamaAdapter, n: int) -> None:
    def completion(r: ChatResponse) -> int:
        return r.usage.completion_tokens

    def q(i: int) -> list[Message]:
        return [user(QUESTIONS[i % len(QUESTIONS)])]

    await workload(adapter, "chat greedy, max_tokens=32", n,
                   lambda i: ChatRequest(messages=q(i), max_tokens=32), completion, "gen tok")
    await workload(adapter, "chat + top-5 logprobs, 32 tokens", n,
                   lambda i: ChatRequest(messages=q(i), max_tokens=32, logprobs=True, top_logprobs=5),
                   completion, "gen tok")
    await workload(adapter, "n=5 samples at T=1, 24 tokens", max(1, n // 2),
                   lambda i: ChatRequest(messages=q(i), max_tokens=24, temperature=1.0, n=5, seed=i),
                   completion, "gen tok")
    await workload(adapter, "1-token rating + top-5 logprobs", n,
                   lambda i: ChatRequest(messages=[user(RATING.format(q=QUESTIONS[i % len(QUESTIONS)]))],
                                         max_tokens=1, logprobs=True, top_logprobs=5),
                   completion, "gen tok")
    await workload(adapter, "score (teacher-forced), evaluated", n,
                   lambda i: ChatRequest(mode="score", messages=[*q(i), Message(role="assistant", content=ANSWER)],
                                         logprobs=True),
                   lambda r: r.usage.prompt_tokens, "eval tok")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short-rows", type=int, default=12, help="rows of examples/qa.jsonl (default 12)")
    parser.add_argument("--long-rows", type=int, default=6, help="rows of the long-context set (default 6)")
    parser.add_argument("--short", type=Path, default=ROOT / "examples" / "qa.jsonl")
    parser.add_argument("--long", type=Path, default=ROOT / "examples" / "longctx" / "qa.jsonl",
                        help="long-context set (default examples/longctx/qa.jsonl)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads for the yardstick and the adapter (default: the adapter's)")
    parser.add_argument("--repeat", type=int, default=1, help="run the sets this many times (default 1)")
    parser.add_argument("--calls", type=int, default=0, help="also time each adapter workload N times")
    parser.add_argument("--save", type=Path, default=None, help="write per-row decisions here (JSON)")
    parser.add_argument("--model-path")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["CLEARAPI_THREADS"] = os.environ["CLEARAPI_LLAMA_THREADS"] = str(args.threads)

    t0 = time.perf_counter()
    adapter = LocalLlamaAdapter(model_path=args.model_path)
    loaded = await adapter.load()
    load_s = time.perf_counter() - t0
    threads = int(loaded.llama.n_threads)
    print(f"model {adapter.model_path.name}  n_ctx {loaded.n_ctx}  threads {threads}  load {load_s:.2f} s")
    print(f"machine {platform.machine()} cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.2f} "
          f"(shared CPUs slow everything below; the ratio cancels most of it)", flush=True)
    if args.calls:
        await workloads(adapter, args.calls)
    saved: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sets = [("short", subset(args.short, args.short_rows, tmp / "short.jsonl"))]
        if args.long.is_file() and args.long_rows:
            sets.append(("long", subset(args.long, args.long_rows, tmp / "long.jsonl")))
        else:
            print(f"no long-context set at {args.long}: pass --long PATH")
        for run in range(args.repeat):
            for name, data in sets:
                result = await curate_set(name, data, adapter.model_path, threads, tmp)
                saved[f"{name}{run}"] = {**result, "decisions": {str(k): v for k, v in result["decisions"].items()}}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (this process: model, yardstick contexts, curate runs)")
    if args.save:
        args.save.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    await adapter.aclose()


if __name__ == "__main__":
    asyncio.run(main())
