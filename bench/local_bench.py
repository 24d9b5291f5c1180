"""Local model speed on this machine: calls/s and tokens/s of the embedded SmolLM2 adapter.

    python bench/local_bench.py [--calls 8] [--model-path X.gguf]

Measures the `LocalLlamaAdapter` as the method uses it (through `chat()`, on its worker
thread): greedy chat, chat with top-5 logprobs, n=5 sampling, a one-token multiple-choice
rating, and teacher-forced scoring. Prints one line per workload and the machine's load:
wall-clock figures depend on what else shares the CPU, so each line also gives the rate per
CPU-second this process used (what the same work costs on an idle core). Nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections.abc import Callable

from clearapi.adapters.local_llama import LocalLlamaAdapter
from clearapi.records import ChatRequest, ChatResponse, Message

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--model-path")
    args = parser.parse_args()
    n = args.calls

    t0 = time.perf_counter()
    adapter = LocalLlamaAdapter(model_path=args.model_path)
    loaded = await adapter.load()
    load_s = time.perf_counter() - t0
    print(f"model {adapter.model_path.name}  n_ctx {loaded.n_ctx}  threads {loaded.llama.n_threads}  "
          f"load {load_s:.2f} s")
    print(f"machine {platform.machine()} cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.2f} "
          f"(shared CPUs slow everything below)")

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
    await workload(adapter, "score (teacher-forced), scored", n,
                   lambda i: ChatRequest(mode="score", messages=[*q(i), Message(role="assistant", content=ANSWER)],
                                         logprobs=True),
                   lambda r: len(r.choices[0].logprobs or []), "scored tok")
    await adapter.aclose()


if __name__ == "__main__":
    asyncio.run(main())
