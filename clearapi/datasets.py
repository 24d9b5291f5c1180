"""Streaming dataset input: every row of a JSONL or CSV file becomes an `Example` or a `Reject`.

Guarantees the rest of clearapi builds on:

- **Streaming.** Lines are read one at a time with a bounded ``readline``; a line longer than
  `max_line_bytes` is skipped in bounded chunks, never held whole. Memory does not grow with the
  file (duplicate-id detection keeps at most a few MB of id hashes and spills the rest to a
  temporary file).
- **Nothing is lost.** Every non-blank physical line (JSONL) or record (CSV, after the header)
  yields exactly one item, in file order, so ``stats.rows == stats.examples + stats.rejects``.
  Blank lines (only spaces, tabs, CR) are not rows: they are skipped and counted in
  ``stats.blank_lines``.
- **Whole-file failures are errors, row failures are data.** A missing file, a directory, an
  unreadable file, a file that is not valid gzip, or a CSV without the needed columns raises
  `InputError` (the CLI's exit code 2). A gzip stream that breaks *midway* keeps the rows read so
  far, yields one `Reject` for the line where decompression failed, then stops; ``stats.truncated``
  says so.

The row shape is detected per file from the first object with a recognisable shape (see
`clearapi.formats`); a later row of a different shape is rejected rather than guessed at.

Smaller decisions, in one place:

- `Example.line` is the 1-based physical line; for CSV it is the line where the record *starts*
  (quoted newlines span lines), the header is not a row.
- The cap counts a line's bytes without its ``\n`` (a ``\r`` counts), after decompression.
- `Example.id` comes from `id_field` if given, else ``id``, else ``custom_id`` (string or
  integer), else ``line-N``. Only explicit ids are checked for duplicates; the later row is
  rejected, naming the line that used the id first.
- Gzip is recognised by its magic bytes, whatever the file is called. A ``.json`` file holding a
  JSON array is refused with a conversion hint rather than streamed line by line.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import sqlite3
import zlib
from array import array
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import ValidationError

from clearapi import formats
from clearapi.errors import InputError
from clearapi.formats import Columns, RowProblem
from clearapi.records import Example, Reject

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "DatasetReader",
    "ReadStats",
    "read_examples",
    "to_openai_chat",
]

DEFAULT_MAX_LINE_BYTES: Final = 1_048_576
RAW_CHARS: Final = 500
_GZIP_MAGIC: Final = b"\x1f\x8b"
_BOM: Final = b"\xef\xbb\xbf"
_BLANK: Final = b" \t\r"
_DISCARD_CHUNK: Final = 1 << 16
_STREAM_ERRORS: Final = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


@dataclass
class ReadStats:
    """Counts that let a caller prove no row was lost: ``rows == examples + rejects``."""

    rows: int = 0
    examples: int = 0
    rejects: int = 0
    blank_lines: int = 0
    format: str | None = None
    format_line: int | None = None
    truncated: bool = False
    stopped_reason: str | None = None


class DatasetReader:
    """Iterate a dataset file as `Example`/`Reject` items; `stats` fills in as you go.

    The path is checked when the reader is created, so a missing or unreadable file fails at
    once with `InputError` instead of at the first ``next()``. Iterating twice reads the file
    twice (with fresh counters).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        prompt_column: str | None = None,
        response_column: str | None = None,
        system_column: str | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        id_field: str | None = None,
        name: str | None = None,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.path = Path(path)
        #: what messages and rejects call the file (a spooled stdin is read from a copy)
        self.name = name if name is not None else str(path)
        self.max_line_bytes = max_line_bytes
        self.id_field = id_field
        self.forced_format = formats.canonical_format(format)
        self._gzip = _check_readable(self.path, self.name)
        self.is_csv = self.forced_format == formats.CSV or (
            self.forced_format is None and _csv_suffix(self.path) is not None)
        self.delimiter = "\t" if _csv_suffix(self.path) == ".tsv" or (format or "").lower() == "tsv" else ","
        explicit_columns = prompt_column is not None or response_column is not None
        if not self.is_csv and self.forced_format is None and explicit_columns:
            self.forced_format = formats.COLUMNS
        self.columns = Columns(prompt_column or "prompt", response_column or "response", system_column)
        self._given_columns = (prompt_column, response_column)
        if self.is_csv:
            self.columns = self._csv_columns()
        elif _json_suffix(self.path):
            with self._open() as stream:
                _refuse_json_array(stream, self.name, max_line_bytes)
        self.stats = ReadStats()

    def __iter__(self) -> Generator[Example | Reject, None, None]:
        self.stats = ReadStats(format=formats.CSV if self.is_csv else self.forced_format)
        self._consumed = list(formats.consumed_keys(formats.CSV, self.columns))
        self._format = self.stats.format
        self._ids = _IdSet()
        with self._open() as stream, contextlib.closing(self._ids):
            rows = self._csv_rows(stream) if self.is_csv else self._jsonl_rows(stream)
            for item in rows:
                self.stats.rows += 1
                if isinstance(item, Example):
                    self.stats.examples += 1
                else:
                    self.stats.rejects += 1
                yield item

    # --- opening ----------------------------------------------------------------------------------

    def _open(self) -> io.BufferedIOBase:
        try:
            if self._gzip:
                return gzip.GzipFile(filename=self.path, mode="rb")
            return open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror or exc}", file=self.name) from exc

    # --- JSON Lines ---------------------------------------------------------------------------------

    def _jsonl_rows(self, stream: io.BufferedIOBase) -> Iterator[Example | Reject]:
        cap = self.max_line_bytes
        readline = stream.readline
        line_no = 0
        while True:
            try:
                raw = readline(cap + 1)
            except _STREAM_ERRORS as exc:
                yield self._broken_stream(line_no + 1, exc)
                return
            if not raw:
                return
            line_no += 1
            if raw[-1:] == b"\n":
                raw = raw[:-1]
            elif len(raw) > cap:
                try:
                    head, size = _skip_line(readline, raw)
                except _STREAM_ERRORS as exc:
                    yield self._broken_stream(line_no, exc)
                    return
                yield self._overlong(line_no, head, size)
                continue
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[3:]
            if not raw or (raw[0] in _BLANK and not raw.strip(_BLANK)):
                self.stats.blank_lines += 1
                continue
            yield self._json_row(line_no, raw)

    def _json_row(self, line: int, raw: bytes) -> Example | Reject:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self._reject(line, None, _json_error(raw, exc), raw)
        if not isinstance(obj, dict):
            return self._reject(line, None, f"expected a JSON object, got {formats.kind_of(obj)}", raw)
        return self._object_row(line, obj, raw)

    def _object_row(self, line: int, obj: dict[str, Any], raw: bytes | str) -> Example | Reject:
        fmt = self._format
        shape = formats.detect_shape(obj) if fmt != formats.COLUMNS and fmt != formats.CSV else None
        if fmt is None:
            if shape is None:
                keys = ", ".join(repr(k) for k in list(obj)[:8])
                return self._reject(line, None, f"{formats.UNKNOWN_SHAPE} (this row's keys: {keys or 'none'})",
                                    raw)
            fmt = self._format = self.stats.format = shape
            self.stats.format_line = line
        elif shape is not None and formats.family(shape) != formats.family(fmt):
            origin = (f"set by format={fmt!r}" if self.forced_format
                      else f"detected from line {self.stats.format_line}")
            return self._reject(line, None, f"this row looks like {formats.describe(shape)} but the file is "
                                f"{formats.describe(fmt)} ({origin})", raw)
        try:
            parsed = formats.normalise(obj, fmt, self.columns)
            id_key, row_id = self._row_id(obj)
        except RowProblem as problem:
            return self._reject(line, problem.field, problem.reason, raw)
        if id_key is None:
            row_id = f"line-{line}"
        else:
            first = self._ids.add(row_id, line)
            if first is not None:
                return self._reject(line, id_key, f"duplicate id {row_id!r}: line {first} already uses it", raw)
        try:
            return Example.model_validate({
                "id": row_id, "line": line, "messages": parsed.messages, "weight": parsed.weight,
                "source_format": fmt, "raw": obj,
                "consumed_keys": self._consumed if fmt in (formats.CSV, formats.COLUMNS) else []})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or None
            return self._reject(line, where, str(error["msg"]), raw)

    def _row_id(self, obj: dict[str, Any]) -> tuple[str | None, str]:
        keys = (self.id_field,) if self.id_field else ("id", "custom_id")
        for key in keys:
            value = obj.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise RowProblem(key, f"must be a string or an integer, got {formats.kind_of(value)}")
            text = str(value)
            if not text.strip():
                raise RowProblem(key, "is empty")
            return key, text
        return None, ""

    # --- CSV ----------------------------------------------------------------------------------------

    def _csv_columns(self) -> Columns:
        """Read the header now so a missing column fails before any work starts."""
        with self._open() as stream:
            source = _CsvLines(stream, self.max_line_bytes)
            try:
                header = _csv_header(csv.reader(source, delimiter=self.delimiter))
            except (_Overlong, csv.Error) as exc:
                raise InputError(f"cannot read the CSV header: {exc}", file=self.name, line=1) from exc
            except _STREAM_ERRORS as exc:
                raise InputError(f"cannot read: {exc}", file=self.name) from exc
        if header is None:
            return self.columns
        names = set(header)

        def pick(given: str | None, choices: tuple[str, ...], flag: str) -> str:
            if given is not None:
                if given not in names:
                    raise InputError(f"the CSV has no column {given!r} (columns: {', '.join(header)})",
                                     file=self.name, line=1)
                return given
            for name in choices:
                if name in names:
                    return name
            raise InputError(f"the CSV has no {choices[0]!r} column (columns: {', '.join(header)}); "
                             f"name one with {flag}", file=self.name, line=1)

        given_prompt, given_response = self._given_columns
        prompt = pick(given_prompt, ("prompt", "instruction", "question", "input"), "--prompt-column")
        response = pick(given_response, ("response", "completion", "output", "answer"), "--response-column")
        system = self.columns.system
        if system is not None and system not in names:
            raise InputError(f"the CSV has no column {system!r} (columns: {', '.join(header)})",
                             file=self.name, line=1)
        return Columns(prompt, response, system)

    def _csv_rows(self, stream: io.BufferedIOBase) -> Iterator[Example | Reject]:
        csv.field_size_limit(max(csv.field_size_limit(), self.max_line_bytes))
        source = _CsvLines(stream, self.max_line_bytes)
        reader = csv.reader(source, delimiter=self.delimiter)
        header: list[str] | None = None
        while True:
            start = source.line_no + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except _Overlong as exc:
                yield self._overlong(start, exc.head, exc.size, physical=exc.line)
                continue
            except csv.Error as exc:
                yield self._reject(start, None, f"malformed CSV: {exc}", source.last)
                continue
            except _STREAM_ERRORS as exc:
                yield self._broken_stream(start, exc)
                return
            if _blank_record(record):
                self.stats.blank_lines += source.line_no - start + 1
                continue
            if header is None:
                header = record
                continue
            yield self._csv_record(start, header, record)

    def _csv_record(self, line: int, header: list[str], record: list[str]) -> Example | Reject:
        raw_text = self.delimiter.join(record)
        try:
            raw_text.encode("utf-8")
        except UnicodeEncodeError:
            for name, value in zip(header, record, strict=False):
                if not _is_utf8(value):
                    return self._reject(line, name, "contains bytes that are not valid UTF-8", raw_text)
            return self._reject(line, None, "contains bytes that are not valid UTF-8", raw_text)
        if len(record) < len(header):
            missing = header[len(record)]
            return self._reject(line, missing, f"the row has {len(record)} fields but the header has "
                                f"{len(header)}", raw_text)
        if len(record) > len(header) and any(v.strip() for v in record[len(header):]):
            return self._reject(line, None, f"the row has {len(record)} fields but the header has "
                                f"{len(header)}", raw_text)
        obj = dict(zip(header, record, strict=False))
        return self._object_row(line, obj, raw_text)

    # --- rejects ------------------------------------------------------------------------------------

    def _reject(self, line: int, field: str | None, error: str, raw: bytes | str | None) -> Reject:
        return Reject(file=self.name, line=line, field=field, error=error, raw=_clip(raw))

    def _overlong(self, line: int, head: bytes, size: int, *, physical: int | None = None) -> Reject:
        where = f"line {physical} is" if physical is not None and physical != line else "the line is"
        return self._reject(line, None, f"{where} {size:,} bytes, over the {self.max_line_bytes:,}-byte cap "
                            "(raise max_line_bytes to read it)", head)

    def _broken_stream(self, line: int, exc: BaseException) -> Reject:
        kind = "gzip stream" if self._gzip else "file"
        reason = (f"the {kind} could not be read from here on ({type(exc).__name__}: {exc}); "
                  "rows after this point were not read")
        self.stats.truncated = True
        self.stats.stopped_reason = f"{self.name}:{line}: {reason}"
        return self._reject(line, None, reason, None)


def read_examples(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_column: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    id_field: str | None = None,
) -> Iterator[Example | Reject]:
    """Stream `path` as Examples and Rejects, in file order, each non-blank row exactly once.

    Raises `InputError` at once for a file that cannot be read at all. Use `DatasetReader`
    directly to get `ReadStats` (rows, blank lines, detected format, truncation).
    """
    return iter(DatasetReader(path, format=format, prompt_column=prompt_column,
                              response_column=response_column, system_column=system_column,
                              max_line_bytes=max_line_bytes, id_field=id_field))


def to_openai_chat(example: Example, response: str | None = None) -> dict[str, Any]:
    """An OpenAI chat fine-tuning record for `example`, with `response` as the new final answer.

    An OpenAI-chat row keeps its own messages and keys (tools, weight, metadata) untouched except
    the replaced content. Other shapes get messages built from the normalised turns, and every key
    the shape did not consume is carried over.
    """
    raw = example.raw
    original = raw.get("messages")
    if (example.source_format == formats.OPENAI_CHAT and "system" not in raw and isinstance(original, list)
            and original and isinstance(original[-1], dict)):
        record = dict(raw)
        messages = [m if not isinstance(m, dict) else dict(m) for m in original]
        if response is not None:
            messages[-1]["content"] = response
        record["messages"] = messages
        return record
    built: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in example.messages]
    if response is not None:
        built[-1]["content"] = response
    consumed = set(example.consumed_keys or formats.consumed_keys(example.source_format))
    record = {"messages": built}
    for key, value in raw.items():
        if key not in consumed and key != "messages":
            record[key] = value
    return record


# --- helpers ------------------------------------------------------------------------------------------

def _check_readable(path: Path, name: str) -> bool:
    """Fail fast with a one-line `InputError`; return whether the file is gzip (by magic bytes)."""
    if path.is_dir():
        raise InputError("is a directory, not a file", file=name)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, errors are translated first
    except FileNotFoundError as exc:
        raise InputError("no such file", file=name) from exc
    except PermissionError as exc:
        raise InputError("permission denied", file=name) from exc
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", file=name) from exc
    with handle:
        try:
            magic = handle.read(2)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=name) from exc
        if magic != _GZIP_MAGIC:
            return False
        handle.seek(0)
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                unzipped.read(1)
        except _STREAM_ERRORS as exc:
            raise InputError(f"not a readable gzip file ({type(exc).__name__}: {exc})", file=name) from exc
    return True


def _refuse_json_array(stream: io.BufferedIOBase, name: str, cap: int) -> None:
    """A `.json` file holding one JSON array (the usual Alpaca download) is not JSON Lines.

    Reading it line by line would turn every line into a confusing reject, and loading it whole
    would break the streaming promise, so say what it is and how to convert it.
    """
    for _ in range(1000):
        line = stream.readline(cap + 1)
        if not line:
            return
        line = line.lstrip(_BOM).strip()
        if not line:
            continue
        if not line.startswith(b"["):
            return
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None  # an array spread over many lines
        if value is None or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            raise InputError("holds a JSON array, but clearapi reads JSON Lines (one object per line); "
                             f"convert it with: jq -c '.[]' {name} > {Path(name).stem}.jsonl", file=name)
        return


def _json_suffix(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".gzip")]
    return bool(suffixes) and suffixes[-1] == ".json"


def _csv_suffix(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes.pop()
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return suffixes[-1]
    return None


def _skip_line(readline: Any, start: bytes) -> tuple[bytes, int]:
    """Skip the rest of an overlong line in bounded chunks.

    Returns the line's head (enough for `Reject.raw`) and its full length in bytes.
    """
    keep = RAW_CHARS * 4
    head = start[:keep]
    size = len(start)
    while True:
        chunk: bytes = readline(_DISCARD_CHUNK)
        if not chunk:
            return head, size
        ends = chunk[-1:] == b"\n"
        if ends:
            chunk = chunk[:-1]
        if len(head) < keep:
            head += chunk[: keep - len(head)]
        size += len(chunk)
        if ends:
            return head, size


def _json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"contains bytes that are not valid UTF-8 (first at byte {bad.start + 1})"
    return f"invalid JSON: {exc.msg} (at character {exc.pos + 1})"


def _clip(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw[: RAW_CHARS * 4].decode("utf-8", "replace")
    elif not _is_utf8(raw):
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return raw[:RAW_CHARS]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _blank_record(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip(" \t\r\n"))


def _csv_header(reader: Iterator[list[str]]) -> list[str] | None:
    for record in reader:
        if not _blank_record(record):
            return [name.strip() for name in record]
    return None


class _Overlong(Exception):
    def __init__(self, line: int, head: bytes, size: int) -> None:
        super().__init__(f"line {line} is {size:,} bytes")
        self.line = line
        self.head = head
        self.size = size


class _CsvLines:
    """Physical lines for `csv.reader`, read with a bounded readline and counted.

    An iterator class rather than a generator: raising `_Overlong` out of a generator would end
    it, while `csv.reader` happily asks a class iterator for the next line after an error.
    Bytes that are not UTF-8 survive as surrogates so the record can be rejected by field.
    """

    def __init__(self, stream: io.BufferedIOBase, cap: int) -> None:
        self._readline = stream.readline
        self._cap = cap
        self.line_no = 0
        self.last = b""

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        raw = self._readline(self._cap + 1)
        if not raw:
            raise StopIteration
        self.line_no += 1
        self.last = raw
        if raw[-1:] != b"\n" and len(raw) > self._cap:
            head, size = _skip_line(self._readline, raw)
            raise _Overlong(self.line_no, head, size)
        if self.line_no == 1 and raw.startswith(_BOM):
            raw = raw[3:]
        return raw.decode("utf-8", "surrogateescape")


class _IdSet:
    """Explicit ids seen so far, as 8-byte hashes: an open-addressing table in memory, spilled to
    a private temporary SQLite file whenever it holds `memory_ids`, so a file of any size keeps
    at most a few MB here.

    Python's own 64-bit string hash (SipHash, salted per process) is enough: the hashes never
    leave the process, and it is several times cheaper than a hashlib call per row.

    12 bytes per slot (hash + the line that used it first), at most half full: about 24-48 bytes
    per id below the spill. Past it, a new id costs one indexed lookup in the file (the OS keeps
    its pages cached, outside this process's memory) and ids are moved there in batches.
    A false "duplicate" needs a 64-bit hash collision: for a million ids the chance is about 3
    in 10^8.
    """

    #: ids held in memory before a spill: a table of 2^19 slots, 6 MB
    MEMORY_IDS = 1 << 18

    def __init__(self, memory_ids: int | None = None) -> None:
        self._limit = max(1, memory_ids or self.MEMORY_IDS)
        self._db: sqlite3.Connection | None = None
        self._reset()

    def _reset(self) -> None:
        self._hashes = array("Q", [0]) * 1024  # repetition: no temporary bytes object of the same size
        self._lines = array("I", [0]) * 1024
        self._mask = 1023
        self._used = 0

    def add(self, key: str, line: int) -> int | None:
        """Remember `key`; return the line that already used it, or None if new."""
        digest = (hash(key) & 0xFFFFFFFFFFFFFFFF) or 1
        found = self._probe(digest)
        if self._hashes[found] == digest:
            return int(self._lines[found])
        if self._db is not None:
            row = self._db.execute("SELECT line FROM ids WHERE h = ?", (_signed(digest),)).fetchone()
            if row is not None:
                return int(row[0])
        self._hashes[found] = digest
        self._lines[found] = min(line, 0xFFFFFFFF)
        self._used += 1
        if self._used >= self._limit:
            self._spill()
        elif self._used * 2 > self._mask:
            self._grow()
        return None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()  # the file of an empty-named database is deleted on close
            self._db = None

    def _spill(self) -> None:
        try:
            self._move_to_file()
        except sqlite3.Error:
            # no usable temporary directory: keep every id in memory, as before the spill existed
            self._limit = 1 << 62
            if self._used * 2 > self._mask:
                self._grow()

    def _move_to_file(self) -> None:
        if self._db is None:
            # "": a private on-disk temporary database (in SQLITE_TMPDIR/TMPDIR), deleted on close
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("PRAGMA cache_size = -1024")  # 1 MB of pages in this process
            self._db.execute("PRAGMA temp_store = FILE")
            self._db.execute("CREATE TABLE ids (h INTEGER PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        pairs = ((_signed(h), n) for h, n in zip(self._hashes, self._lines, strict=True) if h)  # no list
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO ids VALUES (?, ?)", pairs)
        self._reset()

    def _probe(self, digest: int) -> int:
        hashes, mask = self._hashes, self._mask
        slot = digest & mask
        while hashes[slot] and hashes[slot] != digest:
            slot = (slot + 1) & mask
        return slot

    def _grow(self) -> None:
        old_hashes, old_lines = self._hashes, self._lines
        size = (self._mask + 1) * 2
        self._hashes = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        self._mask = size - 1
        for digest, line in zip(old_hashes, old_lines, strict=True):
            if digest:
                slot = self._probe(digest)
                self._hashes[slot] = digest
                self._lines[slot] = line


def _signed(digest: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER."""
    return digest - (1 << 64) if digest >= 1 << 63 else digest
