"""The command line: argument parsing and printing only.

Each subcommand lives in its own module under `clearapi.cli` with two functions,
`add_parser(subparsers)` and `run(args) -> int`; every piece of logic sits behind the
public library API. Errors from clearapi's tree become one line on stderr, never a traceback.

Exit codes: 0 the run completed; 1 it stopped (a refused or missing key, no quota, --max-cost,
a server that failed request after request, a file system error) and kept what finished; 2 usage
(bad option, unreadable input, an output that would overwrite an input, an output folder in use);
3 it finished but rows are missing (a truncated input) or failed (failed.jsonl: re-run to retry); 130 interrupted (Ctrl-C). A reader that closes our stdout early
(``clearapi providers --json | head -1``) changes nothing: the rest of the output is dropped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO, cast

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


class _PipeSafeStdout:
    """stdout that goes quiet once its reader is gone, instead of raising BrokenPipeError."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        # what is still buffered, and the interpreter's final flush, go to /dev/null
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real file descriptor (a test's capture)
            pass

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    real_stdout = sys.stdout
    sys.stdout = cast(TextIO, _PipeSafeStdout(real_stdout))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        code = _run(args)
        sys.stdout.flush()
        return code
    finally:
        sys.stdout = real_stdout


def _run(args: argparse.Namespace) -> int:
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
    except OSError as exc:  # a disk that fills up, a folder that goes away mid-run
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"clearapi: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clearapi: interrupted; finished work is saved in the cache", file=sys.stderr)
        return 130
