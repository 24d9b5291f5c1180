"""`clearapi score INPUT -o OUTDIR`: CLEAR confidence for every row, no filtering or correction.

Writes scores.jsonl (one `Score` per readable row, no action) and rejects.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from clearapi.cli.curate import add_common, apply_output_flags, common_options
from clearapi.errors import ConfigError, FatalError, InputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="write CLEAR confidence scores only (no filtering or correction)",
                       description="Writes scores.jsonl and rejects.jsonl to OUTDIR.")
    add_common(p)
    p.set_defaults(run=run)


async def _score(input: Path, out_dir: Path, options: dict[str, Any]) -> tuple[int, int, FatalError | None]:
    from clearapi.clear.curation import OUTPUTS, cache_path, score
    from clearapi.outdir import OutputFolder
    from clearapi.writers import AtomicJsonlWriter

    reads = [input, options["model_path"], cache_path(options["cache"])]
    stopped: FatalError | None = None
    with OutputFolder(out_dir, outputs=[OUTPUTS["scores"], OUTPUTS["rejects"]], reads=reads) as folder:
        with AtomicJsonlWriter(folder.stage / OUTPUTS["scores"]) as scores, \
                AtomicJsonlWriter(folder.stage / OUTPUTS["rejects"]) as rejects:
            try:
                async for row in score(input, on_reject=rejects.write, **options):
                    scores.write(row)
            except (ConfigError, InputError):
                raise  # usage, not a stop: nothing to keep
            except FatalError as exc:  # keep what finished, under .partial names
                stopped = exc
        if stopped is not None and not scores.lines and not rejects.lines:
            raise stopped
        folder.commit(complete=stopped is None)
    return scores.lines, rejects.lines, stopped


def run(args: argparse.Namespace) -> int:
    options = common_options(args)
    apply_output_flags(args)
    if args.dry_run:
        from clearapi.clear.curation import estimate

        est = estimate(args.input, **options)
        print(json.dumps(est.as_dict()) if args.json else est.describe())
        return 0
    scored, rejected, stopped = asyncio.run(_score(args.input, args.out_dir, options))
    if stopped is not None:
        print(f"clearapi: stopped: {type(stopped).__name__}: {stopped}. {scored} row(s) scored and {rejected} "
              f"rejected before the stop, in {args.out_dir / 'scores.partial.jsonl'}; complete outputs of an "
              "earlier run, if any, were left as they were. Re-run the same command to resume (answers "
              "already received come from the cache).", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"rows": scored + rejected, "scored": scored, "rejected": rejected,
                          "scores": str(args.out_dir / "scores.jsonl"),
                          "rejects": str(args.out_dir / "rejects.jsonl")}))
    elif not args.quiet:
        print(f"{scored} rows scored, {rejected} rejected; see {args.out_dir / 'scores.jsonl'}")
    return 0
