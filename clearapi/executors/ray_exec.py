"""`--executor ray`: the rows of a run scored by a pool of Ray actors.

The driver (this process) reads the input as a stream, exactly as a single-process run does,
and hands the examples to the workers in batches; at most a few batches per worker are out at
once, so the driver never holds the file. Each worker is an async actor running an unchanged
`Engine` (`clearapi.clear.curation.score_row` per row) on the batches it is given. Results
come back in input order and go through the same decide-and-write stage as a local run, so
the outputs are the same files.

One limit for the cluster: every engine, the driver's included, is paced by one
`SharedLimiter` actor (`clearapi.executors.pacing`). A worker whose process dies is restarted
by Ray and its batches are sent again (``max_restarts``, ``max_task_retries``); with the
response cache on a path every process can reach, the calls it had finished come from the
cache (SQLite in WAL mode with a busy timeout: several processes share it safely).

``RAY_ADDRESS`` names an existing cluster (clearapi must be installed on its nodes, and the
cache path shared); without it a small local cluster is started for the run and stopped
after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from clearapi.clear.demos import DemoPool
from clearapi.clear.options import CurateOptions
from clearapi.clear.pipeline import ScoringPlan
from clearapi.connect import resolve_api_key
from clearapi.datasets import DatasetReader
from clearapi.engine import Engine
from clearapi.engine.engine import RateLimits, _sends_ratelimit_headers
from clearapi.errors import ConfigError, FatalError
from clearapi.executors.pacing import LimiterState, RemotePacer, RemoteRates, SharedLimiter
from clearapi.profiles import Profile
from clearapi.records import ChatResponse, Example, FailedRow, Reject, RunStats, Score

__all__ = ["DEFAULT_WORKERS", "RayExecutor", "RaySession", "ScoringWorker", "import_ray"]

DEFAULT_WORKERS = 2
#: batches out per worker: one being scored while the next waits, so no worker idles
BATCHES_PER_WORKER = 2
#: Ray restarts a killed worker (and re-sends its batches) this many times before the run fails
MAX_RESTARTS = 4
#: the object store of a local cluster started for a run: batches of rows are small
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024
#: the workers' actor names start with this
WORKER_NAME = "clearapi-scorer"

_COUNTERS = ("requests", "logical_calls", "cache_hits", "rate_limited", "failures", "batches", "batch_requests",
             "prompt_tokens", "completion_tokens")


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray executor needs Ray: pip install 'clearapi[ray]'") from exc
    return ray


class RaySession:
    """Ray for the length of a run: an existing session, the cluster at ``RAY_ADDRESS``, or a
    small local one (shut down again at the end; one this did not start is left running)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.started = False

    def __enter__(self) -> Any:
        ray = import_ray()
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=max(self.workers, os.cpu_count() or 1), include_dashboard=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False,
                         logging_level=logging.WARNING)
            self.started = True
        return ray

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import_ray().shutdown()


def limiter_for(profile: Profile, opts: CurateOptions) -> dict[str, Any]:
    """The shared limiter's settings: what one engine with these options would pace by."""
    guess = profile.limits if _sends_ratelimit_headers(profile, opts.base_url) else None
    return dict(rpm=opts.rpm, tpm=opts.tpm, default_rpm=guess.rpm if guess else None,
                default_tpm=guess.tpm if guess else None, burst_seconds=RateLimits().burst_seconds)


def share(engine: Engine, limiter: Any, state: LimiterState) -> None:
    pacer = RemotePacer(limiter, state)
    engine.share_limits(pacer, RemoteRates(pacer))


def _delta(now: RunStats, before: RunStats) -> RunStats:
    out = RunStats(cost_known=now.cost_known, cost_usd=now.cost_usd - before.cost_usd)
    for name in _COUNTERS:
        setattr(out, name, getattr(now, name) - getattr(before, name))
    out.retries = {k: v - before.retries.get(k, 0) for k, v in now.retries.items() if v != before.retries.get(k, 0)}
    return out


async def open_shared_engine(opts: CurateOptions, limiter: Any, state: LimiterState) -> Engine:
    """An actor's engine, opened on first use (a constructor cannot await) and paced by the shared limiter."""
    from clearapi.clear.curation import _engine

    engine = _engine(opts)
    share(engine, limiter, state)
    return await engine.__aenter__()


class ScoringWorker:
    """One worker (an async Ray actor): an engine of its own, paced by the shared limiter."""

    def __init__(self, opts: CurateOptions, plan: ScoringPlan, file: str, model: str, demos: DemoPool | None,
                 limiter: Any, state: LimiterState) -> None:
        self._opts = dataclasses.replace(opts, progress=False, executor="local", workers=None)
        self._plan, self._file, self._model, self._demos = plan, file, model, demos
        self._limiter, self._state = limiter, state
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()
        self._reported = RunStats()

    async def _ready(self) -> Engine:
        async with self._lock:
            if self._engine is None:
                self._engine = await open_shared_engine(self._opts, self._limiter, self._state)
            return self._engine

    async def score(self, examples: list[Example]) -> tuple[list[Score | FailedRow], RunStats, FatalError | None]:
        """Score a batch in order; a run-stopping error returns what finished before it."""
        from clearapi.clear.curation import score_row

        engine = await self._ready()

        async def one(example: Example) -> Score | FailedRow:
            return await score_row(engine, example, self._plan, self._file, model=self._model, demos=self._demos)

        done: list[Score | FailedRow] = []
        stopped: FatalError | None = None
        try:
            async for row in engine.map(examples, one, window=max(1, len(examples)), count_rows=False):
                done.append(row)
        except FatalError as exc:
            stopped = exc
        now = engine.stats
        delta, self._reported = _delta(now, self._reported), now
        return done, delta, stopped

    async def pid(self) -> int:
        return os.getpid()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()


class _Batch:
    __slots__ = ("answer", "items", "worker")

    def __init__(self, items: list[Example | Reject], worker: int, answer: asyncio.Future[Any] | None) -> None:
        self.items, self.worker, self.answer = items, worker, answer

    def done(self) -> bool:
        return self.answer is None or self.answer.done()


class RayExecutor:
    """The "score these rows" stage over Ray workers (see the module docstring)."""

    def __init__(self, opts: CurateOptions, engine: Engine, *, batch_rows: int | None = None) -> None:
        if opts.batch:
            raise ConfigError("--batch sends the rows to the provider's batch API from one process; "
                              "run it without --executor ray")
        if opts.max_cost is not None:
            raise ConfigError("--max-cost is kept per process, so it cannot hold a cluster's spending; "
                              "run it without --executor ray")
        # the driver's key goes to the workers (a cluster's processes need not share its
        # environment); it travels in the actors' arguments, never into a log or an output
        self.opts = dataclasses.replace(opts, api_key=resolve_api_key(engine.profile, opts.api_key))
        self.engine = engine
        self.workers = opts.workers or DEFAULT_WORKERS
        self.batch_rows = batch_rows or engine.max_concurrency
        self._session = RaySession(self.workers)
        self._ray: Any = None
        self.limiter: Any = None
        self.actors: list[Any] = []
        self._args: list[Any] = []

    async def __aenter__(self) -> Self:
        self._ray = self._session.__enter__()  # in the main thread: Ray sets its signal handlers there
        ray = self._ray
        self.limiter = ray.remote(SharedLimiter).options(num_cpus=0, max_restarts=-1).remote(
            **limiter_for(self.engine.profile, self.opts))
        state = await self.limiter.state.remote().as_future()
        share(self.engine, self.limiter, state)
        self._state = state
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        ray = self._ray
        try:
            if self.actors:
                closing = [a.close.remote().as_future() for a in self.actors]
                await asyncio.wait(closing, timeout=30)
            for actor in [*self.actors, self.limiter]:
                if actor is not None:
                    ray.kill(actor)
        finally:
            await asyncio.to_thread(self._session.__exit__, None, None, None)

    def _start(self, plan: ScoringPlan, file: str, model: str, demos: DemoPool | None) -> None:
        ray = self._ray
        worker = ray.remote(ScoringWorker)
        run = uuid.uuid4().hex[:8]  # named, so an operator (or a test) can find a run's workers
        # held for the whole run: a restarted worker is built from these same objects again
        self._args = [ray.put(x) for x in (self.opts, plan, file, model, demos)]
        self.actors = [worker.options(name=f"{WORKER_NAME}-{run}-{i}", num_cpus=1, max_restarts=MAX_RESTARTS,
                                      max_task_retries=MAX_RESTARTS)
                       .remote(*self._args, self.limiter, self._state)
                       for i in range(self.workers)]

    async def score_rows(self, engine: Engine, reader: DatasetReader, plan: ScoringPlan, file: str,
                         then: Callable[[Example, Score], Awaitable[Score]] | None = None,
                         limit: int | None = None,
                         primed: Mapping[str, ChatResponse] | None = None) -> AsyncIterator[Score | Reject | FailedRow]:
        """Scores, rejects and failed rows in input order, like `curation._score_rows`; `then`
        (curate's early decision) runs here, in the driver, as each row comes back. The logprobs
        probe's answers (`primed`) stay in the driver: the workers ask again and the cache answers."""
        from clearapi.clear.curation import _demo_pool, _model_name

        demos = await asyncio.to_thread(_demo_pool, reader, plan)
        if not self.actors:
            self._start(plan, file, _model_name(engine), demos)

        async def finish(pair: tuple[Example | Reject, Score | Reject | FailedRow]) -> Score | Reject | FailedRow:
            item, result = pair
            if then is not None and isinstance(item, Example) and isinstance(result, Score):
                return await then(item, result)
            return result

        total = None
        if engine.shows_progress:
            from clearapi.sources import count_rows

            total = await asyncio.to_thread(count_rows, reader)
            total = min(total, limit) if total is not None and limit is not None else total
        rows = itertools.islice(iter(reader), limit)
        window = self.workers * BATCHES_PER_WORKER * self.batch_rows
        async for result in engine.map(self._ordered(rows), finish, window=window, total=total):
            yield result

    def _read(self, rows: Iterator[Example | Reject]) -> list[Example | Reject]:
        batch: list[Example | Reject] = []
        examples = 0
        for item in rows:
            batch.append(item)
            examples += isinstance(item, Example)
            if examples >= self.batch_rows:
                break
        return batch

    async def _ordered(self, rows: Iterable[Example | Reject]) -> AsyncIterator[
            tuple[Example | Reject, Score | Reject | FailedRow]]:
        it = iter(rows)
        loads = [0] * self.workers
        pending: deque[_Batch] = deque()
        exhausted = False

        def submit(items: list[Example | Reject]) -> None:
            examples = [x for x in items if isinstance(x, Example)]
            if not examples:
                pending.append(_Batch(items, -1, None))
                return
            i = min(range(self.workers), key=loads.__getitem__)
            answer = self.actors[i].score.remote(examples).as_future()
            loads[i] += 1
            answer.add_done_callback(lambda _: loads.__setitem__(i, loads[i] - 1))
            pending.append(_Batch(items, i, answer))

        try:
            while True:
                while not exhausted and len(pending) < 2 * BATCHES_PER_WORKER * self.workers \
                        and min(loads) < BATCHES_PER_WORKER:
                    items = self._read(it)
                    if not items:
                        exhausted = True
                        break
                    submit(items)
                while pending and pending[0].done():
                    head = pending.popleft()
                    done: list[Score | FailedRow] = []
                    stopped: FatalError | None = None
                    if head.answer is not None:
                        done, delta, stopped = head.answer.result()
                        self.engine.add_stats(delta)
                    results = iter(done)
                    for item in head.items:
                        if isinstance(item, Reject):
                            yield item, item
                            continue
                        result = next(results, None)
                        if result is None:  # the batch stopped before this row
                            assert stopped is not None
                            self.engine.stop(stopped)
                            raise stopped
                        yield item, result
                if not pending:
                    if exhausted:
                        return
                    continue
                waiting = [b.answer for b in pending if b.answer is not None and not b.answer.done()]
                if waiting:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for batch in pending:
                if batch.answer is not None:
                    batch.answer.cancel()
