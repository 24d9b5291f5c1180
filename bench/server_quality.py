"""How well the billed-API method finds corrupted rows when the server is a real OpenAI-compatible one.

    python -m bench.server_quality                       # starts llama_cpp.server with SmolLM2, every labelled set
    python -m bench.server_quality --only main --only factual
    python -m bench.server_quality --base-url http://127.0.0.1:8000/v1 --model my-model   # a server you run

`clearapi curate --provider openai --base-url ...` against ``python -m llama_cpp.server`` serving the
SmolLM2-135M-Instruct file the local provider embeds: the plan a billed API gets (2 logical calls per
row: the self-rating read from top logprobs, and K samples with ``n``; the server ignores ``n``, so
the samples are separate HTTP calls), not the local method's teacher-forced scoring and
demonstrations. Prints, per labelled set in examples/: AUROC (corrupted vs clean) of each signal and
of the combined confidence, calls per row, whether the run fell back to sampled ratings, and the time.

Runs go through the public `clearapi.curate` with a response cache (``--cache``), so a second run
costs no model call. ``--action filter`` (no pairwise judgement) because the AUROC reads only the
scores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.quality import ROOT, SETS, auroc
from clearapi import curate
from clearapi.clear.signals import SIGNAL_NAMES

#: every labelled set in examples/ (bench/quality.py's three, and the long-context pair)
ALL_SETS = {**SETS, "longctx": ROOT / "examples" / "longctx" / "qa.jsonl",
            "longctx-heldout": ROOT / "examples" / "longctx" / "heldout" / "qa.jsonl"}
SHOWN = ["self_rating", "consistency", "answer_confidence", "answer_agreement"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def measure(name: str, out: Path, data: Path, seconds: float, first: int = 40) -> dict[str, Any]:
    """AUROC per signal and combined, from one finished run's scores.jsonl and summary.json; also
    combined on the `first` rows alone (the local method's long-context figures cover only those)."""
    labels = {r["line"]: r for r in _jsonl(data.parent / "labels.jsonl")}
    scores = _jsonl(out / "scores.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    clean = [not labels[s["line"]]["corrupted"] for s in scores]
    row: dict[str, Any] = {"set": name, "rows": summary["counts"]["rows"], "scored": len(scores),
                           "failed": summary["counts"]["failed"], "corrupted": sum(not c for c in clean),
                           "combined": auroc([s["confidence"] for s in scores], clean),
                           "calls_per_row": summary["settings"]["per_row"]["calls"],
                           "http_calls_per_row": summary["engine"]["requests"] / max(1, len(scores)),
                           "fallback": summary["settings"].get("logprobs_fallback"),
                           "completed": summary["completed"], "seconds": seconds}
    for sig in SIGNAL_NAMES:
        row[sig] = auroc([s["signals"].get(sig) for s in scores], clean)
    row[f"combined_first_{first}"] = auroc([s["confidence"] for s in scores[:first]], clean[:first])
    return row


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nAUROC (corrupted vs clean), billed-API method over --provider openai:")
    print(f"| set | rows (corrupted) | {' | '.join(SHOWN)} | **combined** | first 40 rows | calls/row (HTTP) "
          "| fallback | time |")
    print("| --- " * (len(SHOWN) + 7) + "|")
    for r in rows:
        print(f"| {r['set']} | {r['scored']}/{r['rows']} ({r['corrupted']}) | "
              f"{' | '.join(_fmt(r[s]) for s in SHOWN)} | **{_fmt(r['combined'])}** | {_fmt(r['combined_first_40'])} | "
              f"{r['calls_per_row']:.2f} ({r['http_calls_per_row']:.2f}) | {'yes' if r['fallback'] else 'no'} | "
              f"{r['seconds']:.0f} s |")


async def run(args: argparse.Namespace, base_url: str, model: str) -> list[dict[str, Any]]:
    rows = []
    for name in args.only or list(ALL_SETS):
        data = ALL_SETS[name]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out_dir) / name if args.out_dir else Path(tmp)
            started = time.monotonic()
            await curate(data, out, provider="openai", base_url=base_url, model=model, api_key=args.api_key,
                         samples=args.samples, seed=args.seed, cache=args.cache or True, action="filter",
                         max_concurrency=args.max_concurrency, progress=False)
            row = measure(name, out, data, time.monotonic() - started)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=list(ALL_SETS), default=[])
    p.add_argument("--base-url", default=None, help="a running server (default: start llama_cpp.server)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name the server answers to")
    p.add_argument("--api-key", default="sk-no-key-needed")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-concurrency", type=int, default=2)
    p.add_argument("--n-ctx", type=int, default=4096, help="the started server's context (long-context rows)")
    p.add_argument("--cache", default=None, help="response cache file (default: clearapi's)")
    p.add_argument("--out-dir", default=None, help="keep the curate outputs here")
    args = p.parse_args()
    if args.base_url:
        print_table(asyncio.run(run(args, args.base_url, args.model)))
        return
    from clearapi.adapters.local_model import resolve_model_path
    from clearapi_testing.llama_server import LlamaServer

    with LlamaServer(resolve_model_path(), n_ctx=args.n_ctx, model_alias=args.model) as server:
        print_table(asyncio.run(run(args, server.base_url, args.model)))


if __name__ == "__main__":
    main()
