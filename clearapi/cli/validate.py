"""`clearapi validate FILE --target T [--model M]`: lint a fine-tuning file before upload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from clearapi.errors import InputError
from clearapi.finetune.rules import RULE_IDS, SERVICE_RULES
from clearapi.finetune.validate import format_report, validate_file


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a fine-tuning file against a service's published rules",
        description="Report every problem per line (file:line: field: severity: message [rule]), then "
                    "token counts and the estimated training cost per epoch. Exit code 1 when the "
                    "service would reject the file; warnings do not fail.",
    )
    p.add_argument("file", metavar="FILE", type=Path, nargs="?", help="a JSONL fine-tuning file")
    p.add_argument("--target", "-t", choices=sorted(SERVICE_RULES), default="openai",
                   help="whose rules to apply (default: openai)")
    p.add_argument("--model", "-m", default=None, help="model to fine-tune (sets token limit, tokenizer, price)")
    p.add_argument("--epochs", type=int, default=None, help="also estimate the cost of N epochs")
    p.add_argument("--price", type=float, default=None, metavar="USD_PER_1M",
                   help="training price per 1M tokens (overrides the built-in table)")
    p.add_argument("--validation-set", action="store_true",
                   help="FILE is a validation file (minimum example counts do not apply)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--max-findings", type=int, default=200, help="findings to print in text mode")
    p.add_argument("--list-rules", action="store_true", help="print the rule ids and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.list_rules:
        for rule, text in RULE_IDS.items():
            print(f"{rule:22s} {text}")
        return 0
    if args.file is None:
        raise InputError("validate needs a FILE")
    if not args.file.is_file():
        raise InputError(f"{args.file}: no such file")
    report = validate_file(args.file, args.target, model=args.model, epochs=args.epochs,
                           price_per_mtok=args.price, validation_set=args.validation_set)
    if args.json:
        data = report.model_dump(mode="json")
        data["ok"] = report.ok
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_report(report, max_findings=args.max_findings))
    return 0 if report.ok else 1
