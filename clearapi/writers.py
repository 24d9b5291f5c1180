"""Atomic output files: a reader sees the old file or the complete new one, never half of one.

Every output (curated.jsonl, scores.jsonl, rejects.jsonl, summary.json) is written to a temporary
file in the same directory, flushed and fsync'ed, then moved over the target with `os.replace`
(atomic on POSIX within one filesystem) and the directory entry fsync'ed. An exception inside the
``with`` block removes the temporary file and leaves any existing target untouched. A process
killed outright (SIGKILL, power loss) can leave a ``.NAME.*.tmp`` file behind, but never a
truncated file under the real name.

Outputs are made ``0644`` (or keep the mode of the file they replace): they are the user's data,
meant to be read by other tools. The response cache is private (0600) and lives elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Self

import orjson
from pydantic import BaseModel

__all__ = ["AtomicJsonlWriter", "dumps_line", "fsync_dir", "write_bytes_atomic", "write_json_atomic", "write_jsonl_atomic"]

_OUTPUT_MODE: Final = 0o644
_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    """What orjson cannot serialise by itself: pydantic models, paths, sets, numpy-like scalars."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"cannot write an object of type {type(obj).__name__} as JSON")


def dumps_line(obj: Any) -> bytes:
    """One JSONL line (with its newline) for a dict, a list or a pydantic model."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return orjson.dumps(obj, default=_default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)


class _AtomicFile:
    """A temporary file next to `path` that becomes `path` on `commit()` and vanishes on `abort()`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            self.mode = _OUTPUT_MODE
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.temp = Path(temp)
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self.temp, self.mode)
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some filesystems refuse to open directories, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicJsonlWriter:
    """Write JSON Lines to `path` atomically: ``with AtomicJsonlWriter(p) as w: w.write(obj)``.

    `write` accepts dicts, lists and pydantic models (dumped in JSON mode). `lines` counts what
    was written. The target appears only when the block exits cleanly.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lines = 0
        self._file: _AtomicFile | None = None

    def __enter__(self) -> Self:
        if self._file is not None:
            raise RuntimeError("AtomicJsonlWriter is already open")
        self._file = _AtomicFile(self.path)
        self.lines = 0
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        target, self._file = self._file, None
        if target is None:
            return
        if exc_type is None:
            target.commit()
        else:
            target.abort()

    def write(self, obj: Any) -> None:
        if self._file is None:
            raise RuntimeError("use AtomicJsonlWriter inside a 'with' block")
        self._file.file.write(dumps_line(obj))
        self.lines += 1

    def write_many(self, objs: Iterable[Any]) -> int:
        """Write every item; return how many."""
        before = self.lines
        for obj in objs:
            self.write(obj)
        return self.lines - before

    def flush(self) -> None:
        """Push buffered lines to the temporary file (they stay invisible under the target name)."""
        if self._file is not None:
            self._file.file.flush()


def write_jsonl_atomic(path: str | os.PathLike[str], objs: Iterable[Any]) -> int:
    """Write `objs` as JSON Lines to `path` atomically; return the number of lines."""
    with AtomicJsonlWriter(path) as writer:
        return writer.write_many(objs)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write one JSON document (indented, for people) to `path` atomically."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    write_bytes_atomic(path, orjson.dumps(obj, default=_default, option=_OPTIONS | orjson.OPT_INDENT_2) + b"\n")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename), keeping an existing file's mode."""
    target = _AtomicFile(path)
    try:
        target.file.write(data)
    except BaseException:
        target.abort()
        raise
    target.commit()
