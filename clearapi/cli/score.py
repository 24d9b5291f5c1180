"""`clearapi score INPUT -o OUTDIR`: CLEAR confidence for every row, no filtering or correction.

Writes scores.jsonl (one `Score` per readable row, no action), rejects.jsonl (bad input lines)
and failed.jsonl (rows the API did not answer after every retry).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearapi.cli.curate import add_common, apply_output_flags, common_options
from clearapi.errors import ConfigError, FatalError, InputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("score", help="write CLEAR confidence scores only (no filtering or correction)",
                       description="Writes scores.jsonl, rejects.jsonl and failed.jsonl to OUTDIR. Exit codes: "
                                   "0 complete, 1 stopped, 2 usage, 3 finished with failed or missing rows.")
    add_common(p, "score")
    p.set_defaults(run=run)


@dataclass
class _Result:
    scored: int = 0
    rejected: int = 0
    failed: int = 0
    stopped: FatalError | None = None
    truncated: str | None = None


async def _score(input: Path, out_dir: Path, options: dict[str, Any]) -> _Result:
    from clearapi.clear.curation import OUTPUTS, CurateOptions, cache_path, score
    from clearapi.outdir import OutputFolder
    from clearapi.writers import AtomicJsonlWriter

    opts = CurateOptions.from_kwargs(options)  # checked before the output folder is touched
    reads = [input, opts.model_path, cache_path(opts.cache)]
    result = _Result()

    def truncated(reason: str) -> None:
        result.truncated = reason

    names = [OUTPUTS["scores"], OUTPUTS["rejects"], OUTPUTS["failed"]]
    with OutputFolder(out_dir, outputs=names, reads=reads) as folder:
        with AtomicJsonlWriter(folder.stage / OUTPUTS["scores"]) as scores, \
                AtomicJsonlWriter(folder.stage / OUTPUTS["rejects"]) as rejects, \
                AtomicJsonlWriter(folder.stage / OUTPUTS["failed"]) as failed:
            try:
                async for row in score(input, on_reject=rejects.write, on_failure=failed.write,
                                       on_truncated=truncated, **options):
                    scores.write(row)
            except (ConfigError, InputError):
                raise  # usage, not a stop: nothing to keep
            except FatalError as exc:  # keep what finished, under .partial names
                result.stopped = exc
        if result.stopped is not None and not scores.lines and not rejects.lines and not failed.lines:
            raise result.stopped
        folder.commit(complete=result.stopped is None)
    result.scored, result.rejected, result.failed = scores.lines, rejects.lines, failed.lines
    return result


def run(args: argparse.Namespace) -> int:
    from clearapi.clear.curation import failed_warning

    options = common_options(args, "score")
    apply_output_flags(args)
    if args.dry_run:
        from clearapi.clear.curation import estimate

        est = estimate(args.input, **options)
        print(json.dumps(est.as_dict()) if args.json else est.describe())
        return 0
    res = asyncio.run(_score(args.input, args.out_dir, options))
    failed = f", {res.failed} failed" if res.failed else ""
    if res.stopped is not None:
        print(f"clearapi: stopped: {type(res.stopped).__name__}: {res.stopped}. {res.scored} row(s) scored, "
              f"{res.rejected} rejected{failed} before the stop, in {args.out_dir / 'scores.partial.jsonl'}; "
              "complete outputs of an earlier run, if any, were left as they were. Re-run the same command to "
              "resume (answers already received come from the cache).", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"rows": res.scored + res.rejected + res.failed, "scored": res.scored,
                          "rejected": res.rejected, "failed": res.failed,
                          "scores": str(args.out_dir / "scores.jsonl"),
                          "rejects": str(args.out_dir / "rejects.jsonl"),
                          "failures": str(args.out_dir / "failed.jsonl"),
                          "stopped_reason": res.truncated}))
    elif not args.quiet:
        print(f"{res.scored} rows scored, {res.rejected} rejected{failed}; see {args.out_dir / 'scores.jsonl'}")
    code = 0
    if res.failed:
        print(f"clearapi: warning: {failed_warning(res.failed, 'failed.jsonl')}", file=sys.stderr)
        code = 3
    if res.truncated is not None:  # finished, but the input broke off: rows are missing
        print(f"clearapi: warning: {res.truncated}", file=sys.stderr)
        code = 3
    return code
