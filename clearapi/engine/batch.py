"""Batch mode: a dispatch strategy that sends cache misses through a provider's batch API.

Why a dispatcher and not a pipeline change: the method (`clearapi.clear.pipeline`) already
issues every call of a row that does not depend on an earlier answer at once, and
`Engine.map` runs a whole window of rows together. So if `Engine.chat` parks each miss in a
queue instead of sending it, a stage of the method for the whole window lands in one batch
by itself; rows then wait on their futures, and the calls that depend on the answers (the
pairwise judgements) form the next batch. The pipeline never knows.

The life of a miss in batch mode::

    Engine.chat: cache / single-flight miss ──► BatchDispatcher.call ──► queue (+ future)
    flush when the queue reaches the per-batch limit (requests or bytes), or when no new
    request arrived for `BatchOptions.linger` seconds (a call_later timer reset per enqueue)
    ──► a recorded batch for these keys still open? follow it (resume) : submit a new one
    ──► poll with backoff ──► results joined by custom_id ──► futures ──► cache

* **custom_id** is the first 40 hex digits of the cache key, so results join back
  exactly, are valid for both providers (Anthropic allows ``[a-zA-Z0-9_-]{1,64}``), and a
  re-run of the same work maps to the same ids.
* **Resume**: every submitted batch, with its custom_ids, cache keys and requests, is
  written to the cache file (`clearapi.engine.cache.BatchStore`, tables of migrations 2 and 3) right after it is
  created. An interrupted run (even SIGKILL mid-poll) re-run finds the open batch for the
  keys it needs and polls it instead of paying again; answers of that batch nobody asks
  for this time are cached anyway (they were paid for). Known gap: a kill in the
  milliseconds between the provider creating the batch and the row being committed loses
  the record, and that batch's work is paid twice. Without a cache file (``cache=False``)
  there is nothing to resume from.
* **Submitting**: a transient error (5xx, 429, reset) on upload or create is tried again, up to
  4 tries with the engine's backoff and the server's ``Retry-After``; only then does the group
  go online (retry reason ``batch_submit_failed``).
* **Failures inside a batch** (an errored line that can be retried, an expired or
  cancelled request, a line missing from the output) are retried: online through the
  engine's normal path (`BatchOptions.retry="online"`, the default: the rest of the run is
  not held up by another 24-hour window) or in a new batch (``"batch"``, up to
  `BatchOptions.max_batch_attempts` times, then online). A permanent per-line error
  (400/404/422, 401/403) raises the same exception an online call would.
* **Cost**: batch-served usage is booked at the profile's price times
  ``1 - Price.batch_discount``; `--max-cost` reservations use the discounted worst case.

Each provider's per-batch limits live on its submitter (figures and sources: docs/batch.md).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from clearapi.engine.budget import Budget
from clearapi.engine.cache import BatchStore, PendingRequest
from clearapi.engine.retry import retry_policy
from clearapi.errors import BadRequest, ClearAPIError, ConfigError, FatalError, RateLimited, TransientError
from clearapi.protocols import BatchCapable, BatchPoll, BatchSubmitter, LineResult
from clearapi.records import ChatRequest, ChatResponse, RunStats, Usage

__all__ = [
    "BatchDispatcher",
    "BatchOptions",
    "BatchPoll",
    "BatchStore",
    "BatchSubmitter",
    "LineResult",
    "PendingRequest",
    "custom_id_for",
    "submitter_for",
]

_log = logging.getLogger("clearapi")

#: the map window `Engine.map` uses in batch mode when none is given: a whole stage of a
#: 50,000-row window fits one OpenAI batch file
BATCH_MAP_WINDOW = 50_000
_MAX_READ_FAILURES = 10  # consecutive transient failures reading one batch before giving it up
_MAX_SUBMIT_TRIES = 4  # a stray 5xx on upload or create is retried before the group goes online
_SUBMIT_RETRY_CAP_S = 60.0  # the longest Retry-After obeyed while submitting


def custom_id_for(key: str) -> str:
    """The batch custom_id of a cache key (``b2:`` + 64 hex digits -> 40 hex digits)."""
    return key.split(":", 1)[-1][:40]


@dataclass(frozen=True)
class BatchOptions:
    """How batch mode behaves. ``Engine(batch=True)`` uses the defaults.

    `linger`: seconds without a new request before a partial queue is sent; `poll_interval`
    the first wait between polls of a batch, growing by `poll_backoff` up to
    `max_poll_interval`; `max_requests` / `max_bytes` lower the provider's per-batch
    limits (None: the provider's own); `retry`: where failed lines go next.
    """

    linger: float = 2.0
    poll_interval: float = 10.0
    poll_backoff: float = 1.5
    max_poll_interval: float = 120.0
    max_requests: int | None = None
    max_bytes: int | None = None
    retry: Literal["online", "batch"] = "online"
    max_batch_attempts: int = 3
    map_window: int = BATCH_MAP_WINDOW

    def __post_init__(self) -> None:
        for name in ("linger", "poll_interval", "max_poll_interval"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"batch {name} must be >= 0, got {getattr(self, name)}")
        if self.poll_backoff < 1:
            raise ConfigError(f"batch poll_backoff must be >= 1, got {self.poll_backoff}")
        for name in ("max_requests", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"batch {name} must be >= 1, got {value}")
        if self.retry not in ("online", "batch"):
            raise ConfigError(f"batch retry must be 'online' or 'batch', got {self.retry!r}")
        if self.max_batch_attempts < 1 or self.map_window < 1:
            raise ConfigError("batch max_batch_attempts and map_window must be >= 1")


def submitter_for(adapter: object, *, provider: str) -> BatchSubmitter:
    """The adapter's own batch submitter (it shares the adapter's SDK client and wire format)."""
    if isinstance(adapter, BatchCapable):
        return adapter.batch_submitter()
    raise ConfigError(f"provider {provider!r} has no batch API that clearapi can use; run without --batch")


# --- the dispatcher --------------------------------------------------------------------------


@dataclass
class _Queued:
    pending: PendingRequest
    line: bytes
    future: asyncio.Future[LineResult]


class BatchDispatcher:
    """Collects the engine's cache misses into provider batches and hands back answers.

    `call` returns the answer, raises a permanent error, or returns None when the request
    should be served online (not batchable, or a failed line under ``retry="online"``).
    `cache_put(key, response)` stores every answer (also those of a resumed batch that
    nobody in this run asked for) before the batch is marked collected. A run-stopping error (bad key on upload) reaches every waiter, and the
    engine's hook stops the engine with it.
    """

    def __init__(self, submitter: BatchSubmitter, options: BatchOptions, *, budget: Budget, stats: RunStats,
                 discount: float, provider: str, base_url: str, model: str, store: BatchStore | None,
                 cache_put: Callable[[str, ChatResponse], Awaitable[None]] | None,
                 prompt_estimate: Callable[[ChatRequest], float]) -> None:
        self.submitter = submitter
        self.options = options
        self.max_requests = min(submitter.max_requests, options.max_requests or submitter.max_requests)
        self.max_bytes = min(submitter.max_bytes, options.max_bytes or submitter.max_bytes)
        self._budget = budget
        self._stats = stats
        self._discount = discount
        self._provider = provider
        self._base_url = base_url
        self._model = model
        self._store = store
        self._cache_put = cache_put
        self._estimate = prompt_estimate
        self._queue: dict[str, _Queued] = {}
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: sizes of the batches this dispatcher submitted (requests per batch file)
        self.batch_sizes: list[int] = []

    # -- the engine's hook -------------------------------------------------------------------
    async def call(self, key: str, request: ChatRequest) -> ChatResponse | None:
        if self._closed or not self.submitter.accepts(request):
            return None
        completion_max = request.max_tokens * request.n
        worst = self._budget.worst_case(self._estimate(request) * 4 / 3, completion_max)
        attempts = 0
        while True:
            hold = self._budget.reserve(worst * (1.0 - self._discount))
            usage = None
            try:
                result = await self._enqueue(key, request)
                if result.response is not None:
                    usage = result.response.usage
            finally:
                self._budget.settle(hold, None)
                if usage is not None:
                    self._book(usage)
            if result.response is not None:
                return result.response
            if result.error is not None:
                self._stats.failures += 1
                raise copy.copy(result.error)  # one instance per waiter: tracebacks are not shared
            attempts += 1
            reason = f"batch_{result.retry or 'failed'}"
            self._stats.retries[reason] = self._stats.retries.get(reason, 0) + 1
            if self.options.retry == "online" or attempts >= self.options.max_batch_attempts:
                return None

    def _book(self, usage: Usage) -> None:
        self._budget.spent += self._budget.cost(usage) * (1.0 - self._discount)
        self._stats.requests += 1
        self._stats.batch_requests += 1
        self._stats.prompt_tokens += usage.prompt_tokens
        self._stats.completion_tokens += usage.completion_tokens

    # -- the queue ---------------------------------------------------------------------------
    def _enqueue(self, key: str, request: ChatRequest) -> asyncio.Future[LineResult]:
        cid = custom_id_for(key)
        queued = self._queue.get(cid)
        if queued is not None:  # the engine's single-flight makes this rare; share the slot
            return queued.future
        line = self.submitter.entry(cid, request)
        if self._queue and (len(self._queue) + 1 > self.max_requests
                            or self._queued_bytes + len(line) + 1 > self.max_bytes):
            self._flush()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[LineResult] = loop.create_future()
        self._queue[cid] = _Queued(PendingRequest(cid, key, request), line, fut)
        self._queued_bytes += len(line) + 1
        if len(self._queue) >= self.max_requests:
            self._flush()
        else:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(self.options.linger, self._flush)
        return fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group, self._queue, self._queued_bytes = self._queue, {}, 0
        group = {cid: q for cid, q in group.items() if not q.future.done()}  # waiters cancelled meanwhile
        if group and not self._closed:
            self._spawn(self._dispatch(group))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one flushed group -------------------------------------------------------------------
    async def _dispatch(self, group: dict[str, _Queued]) -> None:
        try:
            if self._store is not None:
                open_batches = await self._store.open_batches(
                    (q.pending.key for q in group.values()), provider=self._provider, base_url=self._base_url)
                for batch_id, keys in open_batches.items():
                    cids = {custom_id_for(k) for k in keys}
                    waiting = {cid: group.pop(cid) for cid in list(group) if cid in cids}
                    if waiting:
                        _log.info("resuming batch %s (%d requests of this run)", batch_id, len(waiting))
                        self._spawn(self._follow(batch_id, waiting))
            if not group:
                return
            entries = [q.line for q in group.values()]
            batch_id, file_id = await self._submit(entries)
            self._stats.batches += 1
            self.batch_sizes.append(len(entries))
            if self._store is not None:
                await self._store.record(batch_id, file_id, [q.pending for q in group.values()],
                                         provider=self._provider, base_url=self._base_url, model=self._model)
        except BadRequest as exc:  # the service refused the whole batch: each request on its own
            _log.warning("a batch of %d requests was refused: %s", len(group), exc)
            self._resolve(group, [LineResult(cid, retry="refused") for cid in group])
            return
        except FatalError as exc:
            self._fail(group, exc)
            return
        except (TransientError, RateLimited) as exc:
            _log.warning("could not submit a batch of %d requests: %s", len(group), exc)
            self._resolve(group, [LineResult(cid, retry="submit_failed") for cid in group])
            return
        except BaseException as exc:
            self._fail(group, exc)
            raise
        await self._follow(batch_id, group)

    async def _submit(self, entries: list[bytes]) -> tuple[str, str | None]:
        """Upload and create one batch, trying again after a transient error (as the SDKs do):
        serving the group online instead would double its price for one stray 500."""
        def count(exc: BaseException, wait: float) -> None:
            _log.info("submitting a batch of %d requests failed (%s); trying again in %.1f s",
                      len(entries), exc, wait)
            self._stats.retries["batch_submit"] = self._stats.retries.get("batch_submit", 0) + 1

        policy = retry_policy(max_attempts=_MAX_SUBMIT_TRIES, retry_after_cap=_SUBMIT_RETRY_CAP_S,
                              sleep=asyncio.sleep, on_retry=count)
        submitted: tuple[str, str | None] = await policy(self.submitter.submit, entries)
        return submitted

    async def _follow(self, batch_id: str, waiting: dict[str, _Queued]) -> None:
        """Poll `batch_id` until it is done, then hand every waiter its line.

        Transient errors while polling or downloading are retried with the poll backoff; a
        batch the provider no longer knows (e.g. a recorded one from another account) or
        that cannot be read after `_MAX_READ_FAILURES` tries is given up: its waiters are
        retried like failed lines, and it is marked collected so no run follows it again.
        """
        lines: list[LineResult] = []
        orphans: dict[str, PendingRequest] = {}
        try:
            delay = self.options.poll_interval
            failures = 0
            while True:
                try:
                    poll = await self.submitter.poll(batch_id)
                    if poll.done:
                        requests = {cid: q.pending.request for cid, q in waiting.items()}
                        if self._store is not None:
                            for member in await self._store.members(batch_id):
                                if member.custom_id not in requests:
                                    orphans[member.custom_id] = member
                                    requests[member.custom_id] = member.request
                        lines = await self.submitter.results(batch_id, poll, requests)
                except (TransientError, RateLimited) as exc:
                    failures += 1
                    _log.warning("reading batch %s failed (%d): %s", batch_id, failures, exc)
                    if failures >= _MAX_READ_FAILURES:
                        lines = [LineResult(cid, retry="unreadable") for cid in waiting]
                        break
                except BadRequest as exc:  # 404: the provider does not know this batch (any more)
                    _log.warning("batch %s cannot be read, its requests are sent again: %s", batch_id, exc)
                    lines = [LineResult(cid, retry="lost") for cid in waiting]
                    break
                else:
                    failures = 0
                    if self._store is not None:
                        await self._store.set_status(batch_id, poll.status)
                    if poll.done:
                        break
                await asyncio.sleep(delay)
                delay = min(delay * self.options.poll_backoff, self.options.max_poll_interval)
        except FatalError as exc:
            self._fail(waiting, exc)
            return
        except BaseException as exc:
            self._fail(waiting, exc)
            raise
        # Every answer is in the response cache before the batch is marked collected, so a
        # kill at any point leaves either a batch to resume or the answers: never neither.
        statuses: dict[str, str] = {}
        for line in lines:
            statuses[line.custom_id] = "done" if line.response is not None else (
                "error" if line.error is not None else f"retry:{line.retry}")
            if line.response is None:
                continue
            key = waiting[line.custom_id].pending.key if line.custom_id in waiting else None
            orphan = orphans.get(line.custom_id)
            if orphan is not None:
                key = orphan.key
                self._book(line.response.usage)  # paid for in an earlier run; keep the answer
            if key is not None and self._cache_put is not None:
                await self._cache_put(key, line.response)
        self._resolve(waiting, lines)
        if self._store is not None:
            await self._store.collected(batch_id, statuses)

    def _resolve(self, waiting: Mapping[str, _Queued], lines: Iterable[LineResult]) -> None:
        for line in lines:
            q = waiting.get(line.custom_id)
            if q is not None and not q.future.done():
                q.future.set_result(line)
        for cid, q in waiting.items():
            if not q.future.done():
                q.future.set_result(LineResult(cid, retry="missing"))

    def _fail(self, waiting: Mapping[str, _Queued], exc: BaseException) -> None:
        for q in waiting.values():
            if not q.future.done():
                if isinstance(exc, ClearAPIError):
                    q.future.set_result(LineResult(q.pending.custom_id, error=exc))
                else:
                    q.future.set_exception(exc)
                    q.future.exception()  # retrieved here; the waiter re-raises it

    async def aclose(self) -> None:
        """Stop timers and pollers (batches stay recorded: a re-run resumes them)."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for q in self._queue.values():
            q.future.cancel()
        self._queue = {}
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.submitter.aclose()
