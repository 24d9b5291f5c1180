"""The command line: argument parsing and printing only.

Each subcommand lives in its own module under `clearapi.cli` with two functions,
`add_parser(subparsers)` and `run(args) -> int`; every piece of logic sits behind the
public library API. Errors from clearapi's tree become one line on stderr and exit code
2 (usage/input) or 1 (a run that stopped), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clearapi._version import __version__
from clearapi.errors import AuthError, ClearAPIError, ConfigError, FatalError, InputError

# Order here is the order in --help.
SUBCOMMANDS = ["curate", "score", "validate", "convert", "upload", "report", "providers", "cache"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearapi",
        description="Curate instruction-tuning data with CLEAR confidence scores over LLM APIs.",
    )
    parser.add_argument("--version", action="version", version=f"clearapi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"clearapi.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
        return code
    except (InputError, ConfigError) as exc:
        print(f"clearapi: error: {exc}", file=sys.stderr)
        return 2
    except AuthError as exc:  # a missing or refused key: nothing to resume until it is fixed
        print(f"clearapi: error: {exc}", file=sys.stderr)
        return 1
    except FatalError as exc:
        print(f"clearapi: stopped: {exc}", file=sys.stderr)
        return 1
    except ClearAPIError as exc:
        print(f"clearapi: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clearapi: interrupted; finished work is saved in the cache", file=sys.stderr)
        return 130
