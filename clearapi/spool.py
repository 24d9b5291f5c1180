"""An input that can be read more than once, whatever was given.

A run reads its input several times (the demonstration pool, scoring, deciding), each time from
the start. A regular file allows that; stdin (``-``), a pipe, a FIFO or a process substitution
(``<(...)``) give their bytes once. Such an input is copied once, in fixed-size chunks, to a
private temporary file in the system temp folder (mode 0600, named after the process id,
removed when the run ends; a copy left by a killed process is removed by the next spool).
Bytes are copied as they come, so a gzip stream stays gzip and the reader recognises it by its
magic bytes; memory stays flat.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from clearapi.errors import InputError

__all__ = ["STDIN", "SpooledInput", "needs_spool"]

STDIN: Final = "-"
_CHUNK: Final = 1 << 20
_PREFIX: Final = "clearapi-input-"
_SUFFIX: Final = ".spool"


def needs_spool(path: str | os.PathLike[str]) -> bool:
    """Whether `path` can be read only once: ``-``, or anything that is not a regular file."""
    if os.fspath(path) == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # let the reader report a missing or unreadable file in its own words
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


class SpooledInput:
    """``with SpooledInput(path) as readable: ...``: `readable` is `path` itself when it is a
    regular file, else a private copy of its bytes. `name` is what messages call the input."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.source = os.fspath(path)
        self.name = "<stdin>" if self.source == STDIN else self.source
        self.path = Path(self.source)
        self._temp: Path | None = None

    def __enter__(self) -> Self:
        if not needs_spool(self.source):
            return self
        _remove_dead_spools()
        # the source's own suffixes (.csv, .tsv.gz) travel with the copy: they pick the format
        suffix = "".join(self.path.suffixes[-2:]) if self.source != STDIN else ""
        fd, temp = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}-", suffix=_SUFFIX + suffix)
        self._temp = self.path = Path(temp)
        try:
            with os.fdopen(fd, "wb") as sink, self._open_source() as source:
                shutil.copyfileobj(source, sink, _CHUNK)
        except OSError as exc:
            self._remove()
            raise InputError(f"cannot read: {exc.strerror or exc}", file=self.name) from exc
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._remove()

    def _open_source(self) -> BinaryIO:
        if self.source == STDIN:
            # a fresh handle on fd 0 that does not close it, so nothing else of stdin is disturbed
            return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
        try:
            return open(self.source, "rb")
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror or exc}", file=self.name) from exc

    def _remove(self) -> None:
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()
            self._temp = None


def _remove_dead_spools() -> None:
    """Copies whose process is gone (killed before it could remove its own)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*{_SUFFIX}*"):
        pid = path.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
