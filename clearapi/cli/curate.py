"""`clearapi curate INPUT -o OUTDIR --provider NAME`: score, filter and correct a dataset."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from clearapi.cli.options import add_options, options_from
from clearapi.records import Summary


def add_common(p: argparse.ArgumentParser, command: str) -> None:
    """The input, the output folder, `command`'s options (made from `CurateOptions`) and what only the
    command line has: --dry-run and the output flags."""
    p.add_argument("input", metavar="INPUT", type=Path,
                   help="dataset: a JSONL, JSONL.gz, CSV/TSV or Parquet file, a Hugging Face datasets folder "
                        "(save_to_disk) or hf:ORG/NAME[:SPLIT]")
    p.add_argument("-o", "--output", "--out", dest="out_dir", metavar="OUTDIR", type=Path, required=True,
                   help="folder for the outputs (created if missing)")
    add_options(p, command)
    p.add_argument("--dry-run", action="store_true", help="make no call; print planned calls, tokens and cost")
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
    add_common(p, "curate")
    p.set_defaults(run=run)


def common_options(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """`command`'s options from its flags."""
    options = options_from(args, command)
    if args.quiet and args.progress is None:
        options["progress"] = False
    return options


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

    options = common_options(args, "curate")
    if args.target == "hf":  # trl-sft rows, then a datasets folder made from them
        options["target"] = "trl-sft"
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
