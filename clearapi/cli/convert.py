"""`clearapi convert INPUT --target T -o OUT`: write a service's fine-tuning file(s)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clearapi.cli.curate import add_output_flags, apply_output_flags
from clearapi.finetune.convert import convert
from clearapi.finetune.targets import TARGETS
from clearapi.finetune.validate import format_report, validate_file


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a dataset or a curate OUTDIR into a fine-tuning target format",
        description="INPUT is a dataset file (JSONL/CSV in any shape clearapi reads) or a curate OUTDIR "
                    "(its scores.jsonl decides: kept rows as they were, corrected rows with the correction, "
                    "dropped rows left out; *-dpo targets emit one preference pair per accepted correction). "
                    "The output is validated against the target's rules afterwards.",
    )
    p.add_argument("input", metavar="INPUT", type=Path, help="dataset file or curate output folder")
    p.add_argument("--target", "-t", choices=[*TARGETS, "hf"], required=True,
                   help="output format (hf: a Hugging Face dataset folder, Parquet + dataset card)")
    p.add_argument("-o", "--output", metavar="OUT", type=Path, required=True,
                   help="output JSONL file (a folder for --target hf)")
    p.add_argument("--validation-split", type=float, default=None, metavar="F",
                   help="put a fraction F of rows (stratified by action, seeded) in a validation file")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--validation-output", type=Path, default=None, metavar="FILE",
                   help="validation file path (default: OUT with .validation before .jsonl)")
    p.add_argument("--source", type=Path, default=None, metavar="FILE",
                   help="with an OUTDIR: the curated input file, if summary.json's path moved")
    p.add_argument("--model", default=None, help="model for the post-conversion validation")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the written file would be rejected by the service")
    p.add_argument("--prompt-column", default=None, metavar="NAME",
                   help="column (CSV, Parquet, datasets) or key (JSONL) holding the prompt")
    p.add_argument("--response-column", default=None, metavar="NAME",
                   help="column (CSV, Parquet, datasets) or key (JSONL) holding the response")
    p.add_argument("--weight-by-confidence", action="store_true",
                   help="fireworks, from an OUTDIR: each row's CLEAR confidence as its training weight")
    add_output_flags(p)
    p.set_defaults(run=run)


def _silent(*_: object) -> None:
    return None


def run(args: argparse.Namespace) -> int:
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        from clearapi.errors import ConfigError

        raise ConfigError("--validation-split must be between 0 and 1 (exclusive)")
    if args.target == "hf":
        return _run_hf(args)
    result = convert(args.input, args.output, args.target, validation_split=args.validation_split,
                     seed=args.seed, validation_output=args.validation_output, source=args.source,
                     prompt_column=args.prompt_column, response_column=args.response_column,
                     weight_by_confidence=args.weight_by_confidence)
    apply_output_flags(args)
    say = print if not (args.json or args.quiet) else _silent
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items())) or "none"
    say(f"{result.rows} rows: {result.written} written to {result.output}"
          + (f", {result.validation} to {result.validation_output}" if result.validation_output else "")
          + f"; skipped {skipped}; {result.rejected} rejected"
          + (f" (see {result.rejects_output})" if result.rejects_output else ""))
    rejected = False
    from clearapi.finetune.rules import SERVICE_RULES

    valid: dict[str, bool] = {}
    if args.target not in SERVICE_RULES:  # open trainers (TRL) publish no upload rules to check against
        say(f"{args.target}: no service upload rules to validate against")
        if args.json:
            print(json.dumps({**result.model_dump(mode="json"), "valid": None}))
        return 0
    for path in [result.output] + ([result.validation_output] if result.validation_output else []):
        report = validate_file(path, args.target, model=args.model, validation_set=path != result.output)
        say(format_report(report, max_findings=20))
        valid[str(path)] = report.ok
        rejected = rejected or not report.ok
    if args.json:
        print(json.dumps({**result.model_dump(mode="json"), "valid": valid}))
    return 1 if (rejected and args.strict) else 0


def _run_hf(args: argparse.Namespace) -> int:
    """The trl-sft rows, converted as usual to JSONL scratch files, then written as a dataset folder."""
    from clearapi.finetune.hf_dataset import write_hf_dataset

    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    train, validation = out / ".train.partial.jsonl", out / ".validation.partial.jsonl"
    try:
        result = convert(args.input, train, "trl-sft", validation_split=args.validation_split, seed=args.seed,
                         validation_output=validation if args.validation_split else None, source=args.source,
                         prompt_column=args.prompt_column, response_column=args.response_column)
        splits = {"train": train} | ({"validation": validation} if result.validation_output else {})
        files = write_hf_dataset(splits, out, source=str(args.input),
                                 counts={**result.skipped, "rejected": result.rejected})
        if result.rejects_output:  # kept beside the data, outside data/ (the card names the data files)
            result.rejects_output = str(Path(result.rejects_output).replace(out / "rejects.jsonl"))
    finally:
        for scratch in (train, validation):
            scratch.unlink(missing_ok=True)
    if args.json:
        print(json.dumps({**result.model_dump(mode="json"), "target": "hf", "output": str(out),
                          "validation_output": None, "files": [str(f) for f in files]}))
    elif not args.quiet:
        print(f"{result.rows} rows: {result.written} train" + (f", {result.validation} validation"
              if result.validation_output else "") + f"; {result.rejected} rejected; dataset folder {out}")
    return 0
