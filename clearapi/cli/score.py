"""`clearapi score INPUT -o OUTDIR`: CLEAR confidence for every row, no filtering or correction.

Writes scores.jsonl (one `Score` per readable row, no action) and rejects.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from clearapi.cli.curate import add_common, apply_output_flags, common_options


def add_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="write CLEAR confidence scores only (no filtering or correction)",
                       description="Writes scores.jsonl and rejects.jsonl to OUTDIR.")
    add_common(p)
    p.set_defaults(run=run)


async def _score(input: Path, out_dir: Path, options: dict[str, Any]) -> tuple[int, int]:
    from clearapi.clear.curation import OUTPUTS, score
    from clearapi.writers import AtomicJsonlWriter

    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    with AtomicJsonlWriter(out_dir / OUTPUTS["scores"]) as scores, \
            AtomicJsonlWriter(out_dir / OUTPUTS["rejects"]) as rejects:
        async for row in score(input, on_reject=rejects.write, **options):
            scores.write(row)
        return scores.lines, rejects.lines


def run(args: argparse.Namespace) -> int:
    options = common_options(args)
    apply_output_flags(args)
    if args.dry_run:
        from clearapi.clear.curation import estimate

        est = estimate(args.input, **options)
        print(json.dumps(est.as_dict()) if args.json else est.describe())
        return 0
    scored, rejected = asyncio.run(_score(args.input, args.out_dir, options))
    if args.json:
        print(json.dumps({"rows": scored + rejected, "scored": scored, "rejected": rejected,
                          "scores": str(args.out_dir / "scores.jsonl"),
                          "rejects": str(args.out_dir / "rejects.jsonl")}))
    elif not args.quiet:
        print(f"{scored} rows scored, {rejected} rejected; see {args.out_dir / 'scores.jsonl'}")
    return 0
