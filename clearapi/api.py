"""Blocking twins of the async API, for scripts and notebooks, and reading a run's results back.

`curate_sync` and `score_sync` run the coroutine with `asyncio.run` when no event loop is running
(a script). Inside a running loop (Jupyter, IPython, an async application) `asyncio.run` would
refuse, so the coroutine runs on a worker thread with its own loop while the caller waits; the
notebook's loop is never re-entered or patched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from clearapi.clear.curation import OUTPUTS, Input, curate, score
from clearapi.errors import InputError
from clearapi.records import FailedRow, Reject, Score, Summary

__all__ = ["curate_sync", "load_results", "score_sync"]

T = TypeVar("T")


def _blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearapi-sync") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def curate_sync(input: Input, out_dir: str | os.PathLike[str], **options: Any) -> Summary:
    """`clearapi.curate`, blocking: works in a script and inside a notebook's running loop."""
    return _blocking(lambda: curate(input, out_dir, **options))


def score_sync(input: Input, *, rejects: list[Reject] | None = None, failed: list[FailedRow] | None = None,
               **options: Any) -> list[Score]:
    """`clearapi.score`, blocking, collected into a list; rows that could not be read are
    appended to `rejects`, rows whose calls failed after every retry to `failed`, when given."""
    async def collect() -> list[Score]:
        sink = rejects.append if rejects is not None else None
        failures = failed.append if failed is not None else None
        return [row async for row in score(input, on_reject=sink, on_failure=failures, **options)]
    return _blocking(collect)


def load_results(out_dir: str | os.PathLike[str], *, as_frame: bool | None = None) -> Any:
    """The scores of a finished run (``scores.jsonl``): a pandas DataFrame, one row per score,
    when pandas is installed (or ``as_frame=True``), else a list of `Score`."""
    path = Path(out_dir) / OUTPUTS["scores"]
    if not path.is_file():
        raise InputError("has no scores.jsonl; is it a clearapi output folder?", file=str(out_dir))
    with path.open("rb") as fh:
        rows = [Score.model_validate(orjson.loads(line)) for line in fh if line.strip()]
    if as_frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError as exc:
        if as_frame:
            raise InputError("a DataFrame needs pandas: pip install 'clearapi[pandas]'", file=str(out_dir)) from exc
        return rows
    return pd.DataFrame([row.model_dump(mode="json") for row in rows])
