"""Inputs beyond JSONL and CSV files: Parquet, Hugging Face `datasets`, DataFrames, lists of dicts.

`open_input` is the one place that decides what an input is; everything it returns is a
`DatasetReader`, so the rest of clearapi (two passes, reject accounting, row ids) does not care
where rows come from. Tabular sources go through the same per-row rules as JSONL objects: each row
becomes one `Example` or one `Reject` naming the source, the 1-based row number and the field.

The readers for Parquet and Hugging Face are optional extras, imported only when such an input
arrives, so a missing one is a one-line `InputError` naming the extra to install.

A one-shot iterator (a generator) is spooled to a temporary JSON Lines file first, because a
curate run reads its input twice; lists, DataFrames and datasets are read in place.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from clearapi import formats
from clearapi.datasets import DatasetReader, ReadStats, _IdSet
from clearapi.errors import InputError
from clearapi.formats import Columns
from clearapi.records import Example, Reject

__all__ = ["HF_PREFIX", "TableReader", "count_rows", "is_parquet", "open_input"]

HF_PREFIX: Final = "hf:"
_PARQUET_MAGIC: Final = b"PAR1"
_BATCH_ROWS: Final = 1024

Rows = Callable[[], Iterator[Mapping[str, Any]]]
"""A fresh iterator over the source's rows each call (a run reads its input twice)."""


def open_input(
    input: Any,
    *,
    format: str | None = None,
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_column: str | None = None,
    id_field: str | None = None,
) -> DatasetReader:
    """A reader for any input clearapi takes: a path (JSONL, CSV/TSV, gzip, Parquet, a `datasets`
    folder), ``"hf:ORG/NAME[:SPLIT]"``, a pandas DataFrame, a `datasets.Dataset`, or an iterable
    of dicts."""
    columns: dict[str, Any] = dict(prompt_column=prompt_column, response_column=response_column,
                                   system_column=system_column, id_field=id_field)
    if isinstance(input, (str, os.PathLike)):
        text = os.fspath(input)
        if isinstance(text, str) and text.startswith(HF_PREFIX):
            return TableReader(text, _hub_rows(text), "row", **columns)
        path = Path(text)
        if path.is_dir() and _is_datasets_folder(path):
            return TableReader(str(input), _disk_rows(path), "row", **columns)
        if path.is_file() and is_parquet(path):
            reader = TableReader(str(input), _parquet_rows(path), "row", **columns)
            reader.length = _parquet_length(path)
            return reader
        return DatasetReader(input, format=format, **columns)
    if isinstance(input, (bytes, bytearray)):
        raise InputError("expected a path, a DataFrame, a datasets.Dataset or an iterable of dicts, got bytes",
                         file="<input>")
    kind = type(input).__module__.split(".")[0] + "." + type(input).__name__
    if kind == "pandas.DataFrame":
        return _sized(TableReader("<DataFrame>", _dataframe_rows(input), "row", **columns), input)
    if kind in ("datasets.Dataset", "datasets.IterableDataset"):
        return _sized(TableReader(f"<{type(input).__name__}>", lambda: iter(input), "row", **columns), input)
    if kind == "datasets.DatasetDict":
        return TableReader("<DatasetDict>", _one_split(input, None, "<DatasetDict>"), "row", **columns)
    if isinstance(input, (list, tuple)):
        return _sized(TableReader("<rows>", lambda: iter(input), "row", **columns), input)
    if isinstance(input, Iterable):
        return _spooled(input, format=format, **columns)
    raise InputError(f"cannot read a {type(input).__name__}: pass a path, a DataFrame, a datasets.Dataset "
                     "or an iterable of dicts", file="<input>")


class TableReader(DatasetReader):
    """Rows that arrive as mappings (Parquet, `datasets`, DataFrames, lists): the JSONL rules per row.

    `Example.line` is the 1-based row number; a row that is not a mapping is rejected.
    """

    def __init__(self, name: str, rows: Rows, unit: str, *, prompt_column: str | None = None,
                 response_column: str | None = None, system_column: str | None = None,
                 id_field: str | None = None) -> None:
        # The file-level set-up of DatasetReader (open, sniff gzip, CSV header) does not apply.
        self.path = Path(name)
        self.name = name
        self.max_line_bytes = 0
        self.id_field = id_field
        self.is_csv = False
        self.delimiter = ","
        explicit = prompt_column is not None or response_column is not None
        self.forced_format = formats.COLUMNS if explicit else None
        self.columns = Columns(prompt_column or "prompt", response_column or "response", system_column)
        self._given_columns = (prompt_column, response_column)
        self._gzip = False
        self._rows = rows
        self.unit = unit
        self.length: int | None = None
        self.stats = ReadStats()

    def __iter__(self) -> Generator[Example | Reject, None, None]:
        self.stats = ReadStats(format=self.forced_format)
        self._consumed = list(formats.consumed_keys(formats.COLUMNS, self.columns))
        self._format = self.stats.format
        self._ids = _IdSet()
        try:
            for number, row in enumerate(self._rows(), start=1):
                self.stats.rows += 1
                item = self._table_row(number, row)
                if isinstance(item, Example):
                    self.stats.examples += 1
                else:
                    self.stats.rejects += 1
                yield item
        finally:
            self._ids.close()

    def _table_row(self, number: int, row: object) -> Example | Reject:
        if not isinstance(row, Mapping):
            return self._reject(number, None, f"expected a row of named fields, got {formats.kind_of(row)}",
                                _raw(row))
        obj = {str(k): _plain(v) for k, v in row.items()}
        return self._object_row(number, obj, _raw(obj))


def count_rows(reader: DatasetReader) -> int | None:
    """A cheap upper bound of the rows, for the progress bar's total: the source's length, or the
    file's non-blank lines (one pass over the bytes, no parsing); None when it cannot be known."""
    if isinstance(reader, TableReader):
        return reader.length
    try:
        lines = 0
        with reader._open() as stream:
            last = b"\n"
            while chunk := stream.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        lines += last != b"\n"
    except (OSError, EOFError, InputError):
        return None
    return max(lines - 1, 0) if reader.is_csv else lines


def _sized(reader: TableReader, source: Any) -> TableReader:
    with contextlib.suppress(TypeError):  # an IterableDataset has no length
        reader.length = len(source)
    return reader


def is_parquet(path: Path) -> bool:
    """Parquet files start (and end) with ``PAR1``, whatever they are called."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == _PARQUET_MAGIC
    except OSError:
        return False  # DatasetReader reports the reason


# --- sources -------------------------------------------------------------------------------------------

def _parquet_rows(path: Path) -> Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError("is a Parquet file; reading it needs pyarrow: pip install 'clearapi[parquet]'",
                         file=str(path)) from exc
    try:
        pq.ParquetFile(path).close()
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: the whole file is unreadable
        raise InputError(f"not a readable Parquet file ({type(exc).__name__}: {exc})", file=str(path)) from exc

    def rows() -> Iterator[Mapping[str, Any]]:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
                yield from batch.to_pylist()
    return rows


def _parquet_length(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:
        return None


def _is_datasets_folder(path: Path) -> bool:
    """What `Dataset.save_to_disk` (state.json) or `DatasetDict.save_to_disk` (dataset_dict.json) leaves."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _import_datasets(name: str) -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise InputError("is a Hugging Face dataset; reading it needs the datasets package: "
                         "pip install 'clearapi[hf]'", file=name) from exc
    return datasets


def _disk_rows(path: Path) -> Rows:
    datasets = _import_datasets(str(path))
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise InputError(f"not a readable datasets folder ({type(exc).__name__}: {exc})", file=str(path)) from exc
    if isinstance(loaded, datasets.DatasetDict):
        return _one_split(loaded, None, str(path))
    return lambda: iter(loaded)


def _one_split(splits: Mapping[str, Any], split: str | None, name: str) -> Rows:
    names = list(splits)
    if split is None:
        if "train" in splits:
            split = "train"
        elif len(names) == 1:
            split = names[0]
        else:
            raise InputError(f"holds the splits {', '.join(names)}; pick one (for a folder, pass its split's "
                             "subfolder; for the Hub, hf:ORG/NAME:SPLIT)", file=name)
    if split not in splits:
        raise InputError(f"has no split {split!r} (splits: {', '.join(names)})", file=name)
    chosen = splits[split]
    return lambda: iter(chosen)


def _hub_rows(spec: str) -> Rows:
    """``hf:ORG/NAME[:SPLIT]``, streamed from the Hub (no full download before the first row)."""
    rest = spec[len(HF_PREFIX):]
    name, _, split = rest.partition(":")
    if not name or name.count("/") > 1:
        raise InputError("expected hf:ORG/NAME or hf:ORG/NAME:SPLIT", file=spec)
    datasets = _import_datasets(spec)
    try:
        loaded = datasets.load_dataset(name, split=split or None, streaming=True)
    except Exception as exc:
        raise InputError(f"cannot load {name!r} from the Hugging Face Hub ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); check the name and the network, or load it where the Hub is "
                         "reachable, save_to_disk() it and pass the folder", file=spec) from exc
    if split:
        return lambda: iter(loaded)
    return _one_split(loaded, None, spec)


def _dataframe_rows(frame: Any) -> Rows:
    columns = [str(c) for c in frame.columns]

    def rows() -> Iterator[Mapping[str, Any]]:
        for values in frame.itertuples(index=False, name=None):
            yield dict(zip(columns, values, strict=True))
    return rows


def _spooled(rows: Iterable[Any], **options: Any) -> DatasetReader:
    """A one-shot iterable, written once to a temporary JSONL file that lives as long as the reader."""
    handle = tempfile.NamedTemporaryFile("wb", prefix="clearapi-rows-", suffix=".jsonl", delete=False)  # noqa: SIM115
    try:
        with handle:
            for row in rows:
                obj = {str(k): _plain(v) for k, v in row.items()} if isinstance(row, Mapping) else row
                handle.write(orjson.dumps(obj, default=str) + b"\n")
        reader = DatasetReader(handle.name, **options)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
    reader.name = "<rows>"
    weakref.finalize(reader, _unlink, handle.name)
    return reader


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# --- values --------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Plain Python for what pandas and numpy hand out: scalars via ``.item()``, arrays as lists,
    NaN/NaT/None as None (a missing cell), so the row rules and the JSON writers see JSON types."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and hasattr(value, "dtype"):  # numpy scalars and arrays
        return _plain(tolist())
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    return value


def _raw(value: object) -> str:
    return orjson.dumps(value, default=str).decode()[:2000]
