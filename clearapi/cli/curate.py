"""`clearapi curate INPUT -o OUTDIR --provider NAME`: score, filter and correct a dataset."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from clearapi.clear.policy import DEFAULT_CORRECT_THRESHOLD, DEFAULT_ETA
from clearapi.records import Summary


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by `curate` and `score`: provider, limits, cache, sampling, input columns."""
    p.add_argument("input", metavar="INPUT", type=Path,
                   help="dataset: a JSONL, JSONL.gz, CSV/TSV or Parquet file, a Hugging Face datasets folder "
                        "(save_to_disk) or hf:ORG/NAME[:SPLIT]")
    p.add_argument("-o", "--output", "--out", dest="out_dir", metavar="OUTDIR", type=Path, required=True,
                   help="folder for the outputs (created if missing)")
    p.add_argument("--provider", default="local", help="provider profile (default: local, the embedded model)")
    p.add_argument("--model", default=None, help="model name (default: the profile's)")
    p.add_argument("--model-path", default=None, metavar="GGUF", help="local provider: a GGUF model file")
    p.add_argument("--base-url", default=None, metavar="URL", help="override the profile's API base URL")
    p.add_argument("--rpm", type=float, default=None, metavar="N", help="requests per minute cap")
    p.add_argument("--tpm", type=float, default=None, metavar="N", help="tokens per minute cap")
    p.add_argument("--max-concurrency", type=int, default=None, metavar="N", help="calls in flight at most")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="per-request timeout (default: 120)")
    p.add_argument("--breaker", type=int, default=20, metavar="N",
                   help="stop the run when N requests in a row fail to connect, time out or get a 5xx, with no "
                        "success in between (default 20; 0 turns the circuit breaker off)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache", default=None, metavar="PATH",
                       help="response cache file (default: $CLEARAPI_CACHE or ~/.cache/clearapi/cache.sqlite)")
    cache.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    p.add_argument("--samples", type=int, default=4, metavar="K",
                   help="sampled answers per row for observed consistency (default 4; 0 turns it off)")
    p.add_argument("--best-answer", action=argparse.BooleanOptionalAction, default=None,
                   help="also ask the model's temperature-0 answer (one more call per row) for consistency and "
                        "as the correction candidate (default: on where the provider scores given text, i.e. "
                        "self-hosted models; off on billed APIs, where the samples' medoid stands in)")
    p.add_argument("--demonstrations", type=int, default=None, metavar="K",
                   help="show the model K of the dataset's own rows before each answer and scoring prompt, so it "
                        "answers in the dataset's style (default: 3 where the provider scores given text, i.e. "
                        "self-hosted models; 0 on billed APIs, where they lengthen every prompt)")
    p.add_argument("--demo-sets", type=int, default=None, metavar="N",
                   help="ask each row under N different draws of demonstrations, each with its own answer at "
                        "T=0 and scoring passes, and average the signals (default: 2 where the provider scores "
                        "given text and there are demonstrations, else 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the sampled answers and of the demonstrations each row is shown (default 0)")
    p.add_argument("--max-cost", type=float, default=None, metavar="USD", help="stop before spending more")
    p.add_argument("--prompt-column", default=None, metavar="NAME",
                   help="column (CSV, Parquet, datasets) or key (JSONL) holding the prompt")
    p.add_argument("--response-column", default=None, metavar="NAME",
                   help="column (CSV, Parquet, datasets) or key (JSONL) holding the response")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="local provider: llama.cpp threads (default: the idle cores; same as $CLEARAPI_THREADS)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="process only the first N rows of INPUT (to try a big file; demonstrations are still "
                        "drawn from its first rows, so those rows score as in a full run)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where rows are scored: this process, or a pool of Ray workers sharing one rate limit "
                        "(needs clearapi[ray]; $RAY_ADDRESS names a cluster, else a local one is started)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="--executor ray: workers (default 2)")
    p.add_argument("--dry-run", action="store_true", help="make no call; print planned calls, tokens and cost")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on a terminal or in a notebook)")
    add_output_flags(p)


def add_output_flags(p: argparse.ArgumentParser) -> None:
    """--json, --quiet, --verbose: what the command prints (the files written are the same)."""
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (and --json)")
    talk.add_argument("-v", "--verbose", action="store_true", help="log each retry, wait and batch on stderr")


def apply_output_flags(args: argparse.Namespace) -> None:
    if getattr(args, "verbose", False):
        logging.basicConfig(format="clearapi: %(message)s")
        logging.getLogger("clearapi").setLevel(logging.DEBUG)  # retries and waits are logged at debug


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "curate",
        help="score every row with CLEAR, drop or correct the untrustworthy ones",
        description="Writes curated.jsonl, scores.jsonl, rejects.jsonl, failed.jsonl, summary.json and report.html "
                    "to OUTDIR. Every input row ends up in exactly one of curated (kept or corrected), dropped "
                    "(listed in scores.jsonl with the reason), rejects.jsonl (a bad input line) or failed.jsonl "
                    "(the API did not answer it; re-run to retry). Exit codes: 0 complete, 1 stopped, 2 usage, "
                    "3 finished with failed or missing rows.",
    )
    add_common(p)
    p.add_argument("--action", choices=["filter", "correct", "both"], default="both",
                   help="filter: drop rows below the threshold; correct: replace them when the model's answer "
                        "is confidently better, else keep; both (default): correct, else drop")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=float, default=None, metavar="T",
                     help="drop/correct rows with confidence below T (default: a cut calibrated to the "
                          "dataset, where a row is more likely corrupted than clean; see summary.json)")
    cut.add_argument("--filter-fraction", type=float, default=None, metavar="F",
                     help="drop/correct the lowest fraction F of rows instead (the CLEAR paper: 0.5)")
    p.add_argument("--correct-threshold", type=float, default=None, metavar="G",
                   help=f"confidence the model's own answer needs to replace a response (default "
                        f"{DEFAULT_CORRECT_THRESHOLD}; 0.3 where the scorer judges by likelihood)")
    p.add_argument("--eta", type=float, default=DEFAULT_ETA, metavar="E",
                   help=f"pairwise-judgement confidence needed, in both orders (default {DEFAULT_ETA})")
    judge = p.add_argument_group("separate judge", "judge correction candidates with another model (its own "
                                 "engine, limits and cost); repeat --judge-provider for a panel")
    judge.add_argument("--judge-provider", action="append", default=None, metavar="NAME",
                       help="provider profile of the judge (default: the scorer judges; by likelihood where it "
                            "scores given text)")
    judge.add_argument("--judge-model", action="append", default=None, metavar="MODEL",
                       help="the judge's model (once for every judge, or once per --judge-provider)")
    judge.add_argument("--judge-base-url", action="append", default=None, metavar="URL",
                       help="the judge's API base URL (once, or once per --judge-provider)")
    judge.add_argument("--judge-majority", type=int, default=None, metavar="M",
                       help="a panel corrects when M judges prefer the candidate at eta (default: all)")
    p.add_argument("--target", default="openai",
                   help="curated.jsonl format (default openai chat; trl-sft, together, fireworks, bedrock, "
                        "bedrock-nova...; hf: trl-sft rows plus a Hugging Face dataset folder OUTDIR/hf)")
    p.add_argument("--batch", action="store_true",
                   help="send the calls through the provider's batch API (OpenAI Batch, Anthropic Message "
                        "Batches): about half the price, results within 24 h; an interrupted run resumes its batches")
    p.add_argument("--batch-retry", choices=["online", "batch"], default="online",
                   help="where requests that failed or expired inside a batch are retried (default online)")
    p.add_argument("--batch-poll", type=float, default=10.0, metavar="SECONDS",
                   help="first wait between polls of a batch; grows to 2 minutes (default 10)")
    p.set_defaults(run=run)


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        # read where the local model is loaded, like the variable a user would set
        os.environ["CLEARAPI_THREADS"] = str(args.threads)
    cache: str | bool = False if args.no_cache else (args.cache if args.cache is not None else True)
    return dict(provider=args.provider, model=args.model, model_path=args.model_path, base_url=args.base_url,
                rpm=args.rpm, tpm=args.tpm, max_concurrency=args.max_concurrency, cache=cache,
                timeout=args.timeout, breaker=args.breaker, samples=args.samples, best_answer=args.best_answer, demonstrations=args.demonstrations,
                demo_sets=args.demo_sets, seed=args.seed, max_cost=args.max_cost,
                prompt_column=args.prompt_column, response_column=args.response_column,
                progress=False if args.quiet and args.progress is None else args.progress, limit=args.limit,
                executor=args.executor, workers=args.workers)


def describe(summary: Summary) -> str:
    c = summary.counts
    per_row = summary.settings.get("per_row", {})
    e = summary.engine
    cost = f"${e.cost_usd:.4f}" if e.cost_known else "cost unknown"
    lines = [
        f"{c.rows} rows: {c.kept} kept, {c.corrected} corrected, {c.dropped} dropped, {c.rejected} rejected"
        + (f", {c.failed} failed" if c.failed else "") + f" (threshold {summary.threshold:.3f})" if summary.threshold is not None else f"{c.rows} rows",
        f"{e.requests} API calls ({e.cache_hits} from cache), {e.prompt_tokens + e.completion_tokens} tokens, "
        f"{cost}; per row: {per_row.get('calls', 0)} calls, {per_row.get('tokens', 0)} tokens",
        f"outputs in {summary.output_dir}: " + ", ".join(summary.outputs.values()),
    ]
    for name, j in summary.judges.items():
        judge_cost = f"${j.cost_usd:.4f}" if j.cost_known else "cost unknown"
        lines.insert(2, f"judge {name}: {j.requests} API calls ({j.cache_hits} from cache), "
                        f"{j.prompt_tokens + j.completion_tokens} tokens, {judge_cost}")
    if e.batches:
        lines.insert(2, f"batch mode: {e.batch_requests} requests in {e.batches} batch(es), billed at the batch price")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from clearapi.clear.curation import curate, estimate

    options = common_options(args)
    options.update(action=args.action, threshold=args.threshold, filter_fraction=args.filter_fraction,
                   correct_threshold=args.correct_threshold, eta=args.eta,
                   target="trl-sft" if args.target == "hf" else args.target,
                   judge_provider=args.judge_provider, judge_model=args.judge_model,
                   judge_base_url=args.judge_base_url, judge_majority=args.judge_majority)
    if args.batch:
        options.update(batch=True, batch_retry=args.batch_retry, batch_poll_interval=args.batch_poll)
    apply_output_flags(args)
    if args.dry_run:
        est = estimate(args.input, **options)
        print(orjson.dumps(est.as_dict()).decode() if args.json else est.describe())
        return 0
    summary = asyncio.run(curate(args.input, args.out_dir, **options))
    if args.target == "hf" and summary.completed:
        from clearapi.finetune.hf_dataset import write_hf_dataset

        c = summary.counts
        write_hf_dataset({"train": args.out_dir / "curated.jsonl"}, args.out_dir / "hf", source=str(args.input),
                         counts={"dropped": c.dropped, "rejected": c.rejected, "failed": c.failed})
    if args.json:
        print(summary.model_dump_json())
    elif not args.quiet:
        print(describe(summary))
    for warning in summary.warnings:
        print(f"clearapi: warning: {warning}", file=sys.stderr)
    if not summary.completed:
        print(f"clearapi: stopped: {summary.stopped_reason} Complete outputs of an earlier run, if any, "
              "were left as they were; this run's results are in the .partial files.", file=sys.stderr)
        return 1
    code = 0
    if summary.stopped_reason:  # finished, but the input broke off (a truncated gzip): rows are missing
        print(f"clearapi: warning: {summary.stopped_reason}", file=sys.stderr)
        code = 3
    if summary.counts.failed:  # finished, but rows failed (its warning, printed above, says re-run)
        code = 3
    return code
