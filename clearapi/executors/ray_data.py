"""clearapi as one step of a Ray Data pipeline: `score_dataset(ds) -> ds` with score columns.

    import ray
    from clearapi.executors.ray_data import score_dataset

    ds = ray.data.read_parquet("rows.parquet")
    scored = score_dataset(ds, provider="openai", rpm=600, workers=4)
    scored.filter(lambda r: r["clear_confidence"] is not None and r["clear_confidence"] >= 0.5) \\
          .write_parquet("kept/")

Each batch goes to one of `workers` actors (``map_batches`` with an async callable class),
which scores its rows with an unchanged engine; every engine is paced by one shared limiter,
so the workers together keep to the one rate limit. Rows keep their columns and order; the
added columns are ``clear_confidence`` (None where a row was not scored), ``clear_signals``
(JSON: signal -> value) and ``clear_error`` (why a row was not scored: bad input, or the API
did not answer after every retry). The scores are those of `clearapi.score` on the same rows
with the same options, and the response cache serves both.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson

from clearapi.clear.demos import POOL_SIZE, DemoPool
from clearapi.clear.options import CurateOptions
from clearapi.connect import resolve_api_key
from clearapi.engine import Engine
from clearapi.executors.pacing import LimiterState, SharedLimiter
from clearapi.executors.ray_exec import DEFAULT_WORKERS, import_ray, limiter_for, open_shared_engine
from clearapi.profiles import load_profile
from clearapi.records import Example, Reject, Score

__all__ = ["SCORE_COLUMNS", "score_dataset"]

SCORE_COLUMNS = ("clear_confidence", "clear_signals", "clear_error")


class _Scorer:
    """One Ray Data actor: an engine paced by the shared limiter, scoring the batches it is given."""

    def __init__(self, opts: CurateOptions, demos: DemoPool | None, limiter: Any, state: LimiterState) -> None:
        self._opts = dataclasses.replace(opts, progress=False)
        self._demos, self._limiter, self._state = demos, limiter, state
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> Engine:
        async with self._lock:
            if self._engine is None:
                self._engine = await open_shared_engine(self._opts, self._limiter, self._state)
            return self._engine

    async def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from clearapi.clear.curation import _model_name, _plan, score_row
        from clearapi.sources import open_input

        engine = await self._ready()
        plan = _plan(engine.capabilities, self._opts)
        demos = self._demos if plan.demonstrations else None
        model = _model_name(engine)
        reader = open_input(batch.to_pylist(), prompt_column=self._opts.prompt_column,
                            response_column=self._opts.response_column)

        async def one(item: Example | Reject) -> Score | Reject | Any:
            if isinstance(item, Reject):
                return item
            return await score_row(engine, item, plan, "<ray dataset>", model=model, demos=demos)

        confidence: list[float | None] = []
        signals: list[str | None] = []
        errors: list[str | None] = []
        async for row in engine.map(iter(reader), one, window=max(1, 2 * engine.max_concurrency),
                                    count_rows=False):
            if isinstance(row, Score):
                confidence.append(row.confidence)
                signals.append(orjson.dumps(row.signals).decode())
                errors.append(None)
            else:
                confidence.append(None)
                signals.append(None)
                errors.append(row.error)
        return (batch.append_column("clear_confidence", pa.array(confidence, pa.float64()))
                .append_column("clear_signals", pa.array(signals, pa.string()))
                .append_column("clear_error", pa.array(errors, pa.string())))


def score_dataset(ds: Any, *, workers: int = DEFAULT_WORKERS, batch_rows: int | None = None,
                  num_cpus: float = 0.5, **options: Any) -> Any:
    """`ds` (a ``ray.data.Dataset`` of rows any clearapi reader takes) with the score columns
    added. Takes `clearapi.score`'s options (provider, model, base_url, rpm, tpm, samples, seed,
    cache...); `workers` actors score it, `batch_rows` rows at a time (default: the provider's
    concurrency bound), each reserving `num_cpus` (a hosted API's worker mostly waits; give the
    embedded model's workers whole cores, and leave the cluster some for reading and writing). The dataset is lazy, as Ray Data's are: the calls happen when it is consumed."""
    ray = import_ray()

    opts = CurateOptions.from_kwargs(options)
    profile = load_profile(opts.provider)
    opts.api_key = resolve_api_key(profile, opts.api_key)  # the actors need not share this environment
    # the demonstrations pool is the dataset's first rows, as in a file run (a short read)
    from clearapi.sources import open_input

    demos = DemoPool.from_rows(open_input(ds.take(4 * POOL_SIZE), prompt_column=opts.prompt_column,
                                          response_column=opts.response_column), seed=opts.seed)
    limiter = ray.remote(SharedLimiter).options(num_cpus=0).remote(**limiter_for(profile, opts))
    state = ray.get(limiter.state.remote())
    return ds.map_batches(_Scorer, fn_constructor_args=(opts, demos, limiter, state), batch_format="pyarrow",
                          batch_size=batch_rows or opts.max_concurrency or profile.limits.max_concurrency,
                          compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=num_cpus,
                          zero_copy_batch=False)
