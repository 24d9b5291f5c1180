"""The output folder of one run: checked, locked, staged, then committed in one step.

What a run never does to the user's files:

- **It never writes over a file it reads.** Before anything is created, every output name (and
  its ``.partial`` twin) is compared with the input, the cache and the model file, through
  symlinks and hard links; a match is refused (`ConfigError`, exit 2) and nothing is touched.
- **It never leaves half a result under a final name.** Outputs are written into a private
  ``.clearapi-run-*`` folder inside the output folder (same filesystem, so moves are renames).
  A run that completes moves them over the final names (summary.json last); a stopped run moves
  them to ``*.partial.*`` names and the previous complete outputs stay byte-identical; an
  interrupted or killed run moves nothing.
- **One run at a time.** ``.clearapi.lock`` is held with ``flock`` for the whole run (and removed
  at its end); the kernel releases the lock when the process dies, however it dies, so a killed run
  never leaves it stuck. A second run is refused with the holder's process id. Under the lock, what dead runs left behind
  (staging folders, writers' temporary files) is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from clearapi.errors import ConfigError
from clearapi.writers import fsync_dir

__all__ = ["LOCK_NAME", "OutputFolder", "partial_name"]

LOCK_NAME: Final = ".clearapi.lock"
STAGE_PREFIX: Final = ".clearapi-run-"
#: the scratch file of runs made before staging existed; removed like any leftover
_OLD_SCRATCH: Final = ".clearapi-scores.partial.jsonl"


def partial_name(name: str) -> str:
    """``curated.jsonl`` -> ``curated.partial.jsonl``: where a stopped run's results go."""
    stem, dot, suffix = name.partition(".")
    return f"{stem}.partial{dot}{suffix}"


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class OutputFolder:
    """``with OutputFolder(out, outputs=[...], reads=[input, cache]) as folder:`` write into
    ``folder.stage``, then ``folder.commit(complete=...)``; leaving the block without a commit
    discards the staged files."""

    def __init__(self, path: str | os.PathLike[str], *, outputs: Iterable[str],
                 reads: Iterable[str | os.PathLike[str] | None] = ()) -> None:
        self.path = Path(path)
        self.outputs = list(outputs)
        self.reads = [Path(r) for r in reads if r is not None and os.fspath(r) != "-"]
        self._lock_fd: int | None = None
        self._stage: Path | None = None

    @property
    def stage(self) -> Path:
        if self._stage is None:
            raise RuntimeError("use OutputFolder inside a 'with' block")
        return self._stage

    # -- entering: check, create, lock, clean, stage -------------------------------------------
    def __enter__(self) -> Self:
        self.check()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {self.path}: {_why(exc)}") from exc
        self._lock()
        try:
            self._remove_leftovers()
            try:
                self._stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=self.path))
            except OSError as exc:
                raise ConfigError(f"cannot write to the output folder {self.path}: {_why(exc)}") from exc
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._stage is not None:
                shutil.rmtree(self._stage, ignore_errors=True)
                self._stage = None
        finally:
            self._unlock()

    def check(self) -> None:
        """Refuse an output that is a file the run reads (call it before opening anything)."""
        for name in self.outputs:
            for target in (self.path / name, self.path / partial_name(name)):
                for read in self.reads:
                    if _same_file(target, read):
                        raise ConfigError(
                            f"output {target} is {read}, which this run reads; choose another output folder "
                            "(nothing was written)")

    def _lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(f"cannot write to the output folder {self.path}: {_why(exc)}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(f"output folder {self.path} is in use by PID {holder} (another clearapi "
                                  "run); wait for it to finish or choose another output folder") from None
            except OSError as exc:  # a filesystem without locks: say so rather than run unprotected
                os.close(fd)
                raise ConfigError(f"cannot lock the output folder {self.path}: {_why(exc)}") from exc
            # the run before us may have removed the file between our open and our lock: lock the new one
            try:
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            # removed while still held (a waiter then sees a new inode and retries), so a finished
            # run leaves nothing behind; a killed run leaves the file, unlocked, with its dead PID
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_leftovers(self) -> None:
        """Under the lock nothing else runs here: staging folders and temp files are a dead run's."""
        for entry in self.path.glob(f"{STAGE_PREFIX}*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
        names = [*self.outputs, *(partial_name(n) for n in self.outputs)]
        leftovers = [self.path / _OLD_SCRATCH, *(p for n in names for p in self.path.glob(f".{n}.*.tmp"))]
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()

    # -- committing ----------------------------------------------------------------------------
    def commit(self, *, complete: bool) -> list[str]:
        """Move the staged outputs into place; return the names written, in the output folder.

        Complete: over the final names, then the ``.partial`` files of earlier stopped runs (now
        superseded) and outputs this run did not produce again are removed. Stopped: to the
        ``.partial`` names only.
        """
        staged = [n for n in self.outputs if (self.stage / n).exists()]
        # the summary last: whoever sees it sees the data files it describes
        staged.sort(key=lambda n: n.startswith("summary."))
        written = []
        for name in staged:
            final = name if complete else partial_name(name)
            os.replace(self.stage / name, self.path / final)
            written.append(final)
        if complete:
            stale = [partial_name(n) for n in self.outputs] + [n for n in self.outputs if n not in staged]
            for name in stale:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()
        fsync_dir(self.path)
        return written
