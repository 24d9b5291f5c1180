"""The engine: one object that every call to a provider goes through.

The life of ``await engine.chat(request)``::

    stopped? ──► cache hit? ──► same request in flight? ──► budget reserve ──► retry loop:
                  │ yes: return      │ yes: share its answer                  slot (max_concurrency)
                  ▼                  ▼                                         pacer (RPM, TPM, cool-down)
               cached=True       cached=True                                   adapter.chat ──► settle usage,
                                                                               learn limits, count
    ──► commit to the cache ──► return

and ``engine.map(items, fn)`` runs ``fn`` over a stream of items with at most ``window``
in flight, yielding results in input order. Four errors stop the whole run at once,
because no other call can succeed after them: `AuthError`, `QuotaExhausted`,
`BudgetExceeded`, and `ServiceDown` from the circuit breaker (`clearapi.engine.breaker`:
request after request failed to connect, timed out or got a 5xx, with no success between). They latch the engine; every queued call, backoff sleep and later call
raises the same error without touching the API. Other `FatalError`s (a `BadRequest` for
one prompt) fail only their own call; `map` still stops on them unless `fn` catches them.

``Engine(..., batch=True)`` (or a `BatchOptions`) turns on batch mode: after the cache and
single-flight checks, a miss goes to `clearapi.engine.batch.BatchDispatcher`, which sends
it with the other misses of the moment through the provider's batch API (half price) and
falls back to the online path above for what a batch cannot serve.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

from clearapi.connect import create_adapter
from clearapi.engine.batch import BatchDispatcher, BatchOptions, submitter_for
from clearapi.engine.breaker import CircuitBreaker, counts_against_server
from clearapi.engine.budget import Budget, prompt_tokens_estimate
from clearapi.engine.cache import BatchStore, ResponseCache, cache_key, default_cache_path
from clearapi.engine.limits import AdaptiveRates, Pacer, Ticket
from clearapi.engine.progress import ProgressBar, RowsProgress, want_progress
from clearapi.engine.retry import RETRYABLE, reason_of, retry_policy
from clearapi.errors import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    ClearAPIError,
    ConfigError,
    FatalError,
    QuotaExhausted,
    RateLimited,
    ServiceDown,
    TransientError,
)
from clearapi.profiles import Profile, load_profile, resolve_base_url
from clearapi.protocols import Adapter
from clearapi.records import Capabilities, ChatRequest, ChatResponse, RateLimitInfo, RunStats
from clearapi.redact import redact_url

__all__ = ["Engine", "RateLimits", "Retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: errors after which no other call can succeed: they stop every call of the engine
RUN_STOPPING: tuple[type[FatalError], ...] = (AuthError, QuotaExhausted, BudgetExceeded, ServiceDown)

#: how long everyone pauses after a 429 that carried no Retry-After
DEFAULT_COOL_DOWN_S = 1.0


@dataclass(frozen=True)
class RateLimits:
    """How fast the engine may call: ``Engine(limits=RateLimits(rpm=500, tpm=200_000))``.

    None leaves a value to the profile, then to the provider's headers, then to AIMD.
    """

    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int | None = None
    burst_seconds: float = 0.5


@dataclass(frozen=True)
class Retries:
    """How long one call may take and how often it is tried: ``Engine(retries=Retries(max_attempts=3))``."""

    max_attempts: int = 8
    retry_after_cap: float = 60.0
    timeout: float = 120.0


def _clone(exc: BaseException) -> BaseException:
    """A fresh copy of an error to raise in another task (tracebacks must not be shared)."""
    try:
        return copy.copy(exc)
    except Exception:  # pragma: no cover - exotic constructor
        return exc


class Engine:
    """Calls a provider under limits, with retries, a response cache and accounting.

    Use ``async with Engine("openai", model=..., rpm=..., tpm=...) as engine:``. A told
    `rpm`/`tpm` is a ceiling. Otherwise the limits come from the provider's rate-limit
    headers (the profile's limits are a first guess only on its own host, which sends
    them), else from the concurrency bound alone; a 429 backs off below any of them (AIMD). ``cache=True`` uses ``$CLEARAPI_CACHE`` or ``~/.cache/clearapi/cache.sqlite``; a
    path uses that file; ``False``/``None`` turns caching off. ``max_cost`` (USD) needs a
    known price for the model. ``adapter`` replaces the one built from the profile (the
    engine does not close an adapter it was given). `limits` (`RateLimits`) and `retries`
    (`Retries`) group the pacing and retry settings; the flat keywords of the same names are
    shorthand for one field each, and giving a field both ways is a `ConfigError`. ``breaker`` stops every call with
    `ServiceDown` after that many failed attempts in a row (connection, timeout, 5xx) over at
    least 5 different requests; a `CircuitBreaker` sets both, 0 or None turns it off.
    ``threads`` is the local provider's llama.cpp thread count (a `ConfigError` for any other).
    """

    def __init__(
        self,
        provider: str | Profile = "local",
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        limits: RateLimits | None = None,
        retries: Retries | None = None,
        breaker: int | CircuitBreaker | None = 20,
        batch: bool | BatchOptions = False,
        cache: str | Path | bool | None = True,
        max_cost: float | None = None,
        progress: bool | None = None,
        adapter: Adapter | None = None,
        threads: int | None = None,
        # shorthand for one field of `limits` or `retries` (``Engine(rpm=60)``)
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        burst_seconds: float | None = None,
        max_attempts: int | None = None,
        retry_after_cap: float | None = None,
        timeout: float | None = None,
    ) -> None:
        #: the pacing and retry settings in force (the groups given, or made from the shorthand)
        self.limits: RateLimits = _grouped(limits, RateLimits(), "limits", rpm=rpm, tpm=tpm,
                                           max_concurrency=max_concurrency, burst_seconds=burst_seconds)
        self.retries: Retries = _grouped(retries, Retries(), "retries", max_attempts=max_attempts,
                                         retry_after_cap=retry_after_cap, timeout=timeout)
        rpm, tpm, max_concurrency = self.limits.rpm, self.limits.tpm, self.limits.max_concurrency
        burst = self.limits.burst_seconds
        attempts, cap, seconds = self.retries.max_attempts, self.retries.retry_after_cap, self.retries.timeout
        self.profile: Profile = provider if isinstance(provider, Profile) else load_profile(provider)
        self.model: str = model or getattr(adapter, "model", None) or self.profile.default_model
        #: the URL in force (--base-url, then the profile's env var, then the profile) and where it came from
        self.base_url, self.base_url_source = resolve_base_url(self.profile, base_url)
        #: what is written down or hashed: the same URL without credentials
        self._shown_url = redact_url(self.base_url)
        _check_positive(rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, timeout=seconds,
                        max_attempts=attempts, burst_seconds=burst)
        if max_cost is not None and max_cost < 0:
            raise ConfigError(f"max_cost must be >= 0, got {max_cost}")
        if cap < 0:
            raise ConfigError(f"retry_after_cap must be >= 0, got {cap}")

        price = self.profile.price_for(self.model)
        if max_cost is not None and price is None:
            raise ConfigError(
                f"--max-cost needs a price, and provider {self.profile.name!r} lists none for model "
                f"{self.model!r}; add [prices.\"{self.model}\"] input/output (USD per million tokens) to "
                "its profile, or run without --max-cost")
        self._budget = Budget(max_cost, price)

        self.max_concurrency: int = max_concurrency or self.profile.limits.max_concurrency
        self._timeout = seconds
        self._retry_after_cap = cap
        self._max_attempts = attempts

        if adapter is None:
            adapter = create_adapter(self.profile, model=self.model, base_url=self.base_url, api_key=api_key,
                                     timeout=seconds, max_concurrency=self.max_concurrency, threads=threads)
            self._owns_adapter = True
        else:
            self._owns_adapter = False
        self.adapter: Adapter = adapter
        self._adapter_model_differs = getattr(adapter, "model", None) not in (None, self.model)

        if cache is True:
            self.cache_path: Path | None = default_cache_path()
        elif cache is False or cache is None:
            self.cache_path = None
        else:
            self.cache_path = Path(cache).expanduser()
        self._cache = ResponseCache(self.cache_path) if self.cache_path is not None else None

        self._pacer = Pacer(burst_seconds=burst)
        self._tpm_counts_max_tokens = self.profile.tpm_counts_max_tokens
        guess = self.profile.limits if _sends_ratelimit_headers(self.profile, base_url) else None
        self._rates = AdaptiveRates(self._pacer, user_rpm=rpm, user_tpm=tpm,
                                    default_rpm=guess.rpm if guess else None,
                                    default_tpm=guess.tpm if guess else None)
        self._slots = asyncio.Semaphore(self.max_concurrency)
        #: with no limit known, the first call goes alone: its answer may carry the limit in
        #: headers, and a burst of max_concurrency calls must not land before it is read
        self._probed = asyncio.Event()
        self._probing = False
        if not isinstance(breaker, CircuitBreaker):
            if breaker is not None and breaker < 0:
                raise ConfigError(f"breaker must be >= 0, got {breaker}")
            breaker = CircuitBreaker(attempts=breaker or 0, requests=min(5, breaker or 5))
        self._breaker = breaker
        self._retrying = retry_policy(max_attempts=attempts, retry_after_cap=cap,
                                      sleep=self._sleep, on_retry=self._count_retry)
        self._flights: dict[str, asyncio.Future[ChatResponse | None]] = {}
        #: cache writes of answers already paid for; shielded from cancellation, awaited by aclose
        self._pending_puts: set[asyncio.Future[None]] = set()
        self._sleepers: set[asyncio.Future[None]] = set()
        self._stopped: FatalError | None = None
        self._stats = RunStats(cost_known=self._budget.cost_known)
        self._in_flight = 0
        self._started: float | None = None
        self._finished: float | None = None
        self._closed = False
        self._bar = ProgressBar(lambda: self.stats) if want_progress(progress) else None
        self._rows = RowsProgress(self._bar)
        #: batch mode (clearapi.engine.batch): cache misses go to the provider's batch API
        self.batch: BatchOptions | None = BatchOptions() if batch is True else (batch or None)
        self._batch: BatchDispatcher | None = None
        if self.batch is not None:
            if not self.profile.capabilities_for(self.model).batch:
                raise ConfigError(f"provider {self.profile.name!r} has no batch API (its profile says "
                                  "batch = false); run without --batch")
            self._batch = BatchDispatcher(
                submitter_for(self.adapter, provider=self.profile.name), self.batch,
                budget=self._budget, stats=self._stats, discount=price.batch_discount if price else 0.0,
                provider=self.profile.name, base_url=self._shown_url or "", model=self.model,
                store=BatchStore(self._cache) if self._cache is not None else None,
                cache_put=self._cache.put if self._cache is not None else None,
                prompt_estimate=_prompt_tokens_estimate)

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._start()
        if self._cache is not None:
            try:
                await self._cache.open()
            except BaseException:
                await self.aclose()
                raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError("this Engine is closed; create a new one")
        if self._started is None:
            self._started = time.monotonic()
            if self._bar is not None:
                self._bar.start()

    async def aclose(self) -> None:
        """Stop the bar, close the cache and the adapter it built. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finished = time.monotonic()
        if self._bar is not None:
            self._bar.stop()
        try:
            if self._batch is not None:
                await self._batch.aclose()
            if self._pending_puts:
                await asyncio.gather(*self._pending_puts, return_exceptions=True)
            if self._cache is not None:
                await self._cache.aclose()
        finally:
            if self._owns_adapter:
                await self.adapter.aclose()

    # -- public state -------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return self.adapter.capabilities

    @property
    def stats(self) -> RunStats:
        """A snapshot of what the engine did so far."""
        # Built field by field (no deep copy): the progress bar reads this from rich's own
        # thread while the loop updates counters, and dict(...) is one atomic C-level copy.
        wall = 0.0 if self._started is None else (self._finished or time.monotonic()) - self._started
        return self._stats.model_copy(update={
            "retries": dict(self._stats.retries),
            "wall_seconds": wall,
            "cost_usd": self._budget.spent,
            "learned_rpm": self._rates.learned_rpm,
            "learned_tpm": self._rates.learned_tpm,
        })

    @property
    def stopped(self) -> FatalError | None:
        """The run-stopping error, once one happened."""
        return self._stopped

    @property
    def in_flight(self) -> int:
        """Calls currently being answered by the provider (not waiting for a slot)."""
        return self._in_flight

    @property
    def rpm(self) -> float | None:
        """The requests-per-minute rate the engine paces at now (None = concurrency only)."""
        return self._pacer.rpm

    @property
    def tpm(self) -> float | None:
        return self._pacer.tpm

    @property
    def shows_progress(self) -> bool:
        """Whether a progress bar is drawn (then a row count for its total is worth a pass)."""
        return self._bar is not None

    def progress_rows(self, total: int | None = None) -> RowsProgress:
        """The rows counter of the progress bar; `map` advances it, or call ``.advance()``."""
        if total is not None:
            self._rows.set_total(total)
        return self._rows

    def share_limits(self, pacer: Pacer, rates: AdaptiveRates) -> None:
        """Pace every call with a limiter other engines use too (`clearapi.executors`: one limit
        for a cluster's workers, not one each). Call before the first call."""
        self._pacer = pacer
        self._rates = rates

    def add_stats(self, other: RunStats) -> None:
        """Count what other processes did for this engine's run (an executor's workers), so one
        summary tells the whole run."""
        s = self._stats
        for name in ("requests", "logical_calls", "cache_hits", "rate_limited", "failures", "batches",
                     "batch_requests", "prompt_tokens", "completion_tokens"):
            setattr(s, name, getattr(s, name) + getattr(other, name))
        for reason, count in other.retries.items():
            s.retries[reason] = s.retries.get(reason, 0) + count
        self._budget.spent += other.cost_usd

    def stop(self, error: FatalError) -> None:
        """Stop every call of this engine with `error` (what a run-stopping error does)."""
        if self._stopped is not None:
            return
        self._stopped = error
        self._pacer.abort(_clone(error))
        for fut in list(self._sleepers):
            if not fut.done():
                fut.set_exception(_clone(error))

    # -- one call -----------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One logical call: from the cache, from an identical call in flight, or the API."""
        self._start()
        self._raise_if_stopped()
        self._stats.logical_calls += 1
        # the request goes to the adapter as given (no model = the adapter's model, which is
        # ours unless a given adapter was built for another); the key names the effective model
        if request.model is None and self._adapter_model_differs:
            request = request.model_copy(update={"model": self.model})
        key = cache_key(request, profile=self.profile.name, protocol=self.profile.protocol,
                        base_url=self._shown_url, model=request.model or self.model)
        while True:
            shared = await self._join_flight(key)
            if shared is not None:
                return shared
            if self._cache is not None:
                hit = await self._cache.get(key)
                if hit is not None:
                    self._stats.cache_hits += 1
                    return hit
                if key in self._flights:  # became in flight while we read the cache
                    continue
            return await self._lead_flight(key, request)

    async def _join_flight(self, key: str) -> ChatResponse | None:
        """Wait for an identical call in flight; None if there is none (or it was cancelled)."""
        while (flight := self._flights.get(key)) is not None:
            try:
                response = await asyncio.shield(flight)
            except asyncio.CancelledError:
                if flight.cancelled():
                    continue
                raise
            except BaseException as exc:
                raise _clone(exc) from None
            if response is not None:
                self._stats.cache_hits += 1
                return response.model_copy(update={"cached": True})
        return None

    async def _lead_flight(self, key: str, request: ChatRequest) -> ChatResponse:
        flight: asyncio.Future[ChatResponse | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            response = await self._call(request, key)
        except asyncio.CancelledError:
            flight.set_result(None)  # followers try again themselves
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: followers re-raise copies
            raise
        else:
            flight.set_result(response)
            return response
        finally:
            del self._flights[key]

    async def _call(self, request: ChatRequest, key: str) -> ChatResponse:
        if self._batch is not None:  # batch mode: None = serve this one online (below)
            try:
                served = await self._batch.call(key, request)
            except RUN_STOPPING as exc:
                self.stop(exc)
                raise
            if served is not None:  # already in the cache: the dispatcher commits a batch's answers
                return served
        prompt_est = _prompt_tokens_estimate(request)
        completion_max = (1 if request.mode == "score" else request.max_tokens) * request.n
        tpm = self._rates.tpm_limit
        if tpm is not None and prompt_est + completion_max > tpm:
            self._stats.failures += 1
            raise BadRequest(
                f"this request needs about {prompt_est + completion_max:.0f} tokens (prompt + max_tokens × n), "
                f"more than the whole tokens-per-minute limit of {tpm:.0f}: it can never be sent; "
                "lower max_tokens or n, or shorten the prompt")
        hold = _Hold(worst=self._budget.worst_case(prompt_est * 4 / 3, completion_max), key=key)
        response: ChatResponse | None = None
        try:
            try:  # the common case, a first attempt that works, skips tenacity's bookkeeping
                response = await self._attempt(request, prompt_est, completion_max, hold)
            except RETRYABLE as exc:
                response = await self._retry(exc, request, prompt_est, completion_max, hold)
        except FatalError as exc:
            self._stats.failures += 1
            exc.attempts = exc.attempts or 1
            if isinstance(exc, RUN_STOPPING):
                self.stop(exc)
            raise
        except ClearAPIError as exc:
            self._stats.failures += 1
            exc.attempts = exc.attempts or 1
            raise
        finally:
            self._budget.settle(hold.reserved, response.usage if response is not None else None)
        assert response is not None
        return response

    async def _commit(self, key: str, response: ChatResponse) -> None:
        """Write an answer to the cache while its concurrency slot is still held.

        Holding the slot bounds what a SIGKILL can lose to the calls in flight
        (``max_concurrency``); shielding means an answer that was paid for is committed even
        if its call is cancelled now (a stop, Ctrl-C), so a re-run does not pay for it again.
        """
        if self._cache is None:
            return
        put = asyncio.ensure_future(self._cache.put(key, response))
        self._pending_puts.add(put)
        put.add_done_callback(self._pending_puts.discard)
        await asyncio.shield(put)

    async def _retry(self, first: BaseException, request: ChatRequest, prompt_est: float,
                     completion_max: int, hold: _Hold) -> ChatResponse:
        """Hand a failed first attempt to the tenacity policy, which sees it as its attempt 1."""
        replay: list[BaseException] = [first]

        async def attempt() -> ChatResponse:
            if replay:
                raise replay.pop()
            return await self._attempt(request, prompt_est, completion_max, hold)

        retrying = self._retrying.copy()
        try:
            response: ChatResponse = await retrying(attempt)
        except ClearAPIError as exc:
            exc.attempts = retrying.statistics.get("attempt_number")
            raise
        return response

    async def _attempt(self, request: ChatRequest, prompt_est: float, completion_max: int,
                       hold: _Hold) -> ChatResponse:
        tokens_est = prompt_est + completion_max
        async with self._slots:
            self._raise_if_stopped()
            if not hold.reserved:
                # reserved with a slot in hand, so calls queued behind the concurrency
                # bound do not hold budget they are not spending yet
                hold.reserved = self._budget.reserve(hold.worst)
            calls_est = request.n if request.n > 1 and not self.adapter.capabilities.n else 1
            probe = not self._probed.is_set() and not self._probing and self._rates.rpm_limit is None
            if probe:
                self._probing = True
            elif not self._probed.is_set() and self._probing:
                await self._probed.wait()
            try:
                ticket = await self._pacer.acquire(tokens=tokens_est, requests=calls_est)
                self._raise_if_stopped()
            except BaseException:
                if probe:
                    self._probed.set()
                raise
            self._in_flight += 1
            try:
                async with asyncio.timeout(self._timeout * 1.5 + 5.0):
                    try:
                        response = await self.adapter.chat(request)
                    finally:
                        # a call cancelled by a stop is not counted: most never left the client's
                        # pool, and the stop message must not claim calls the server never saw
                        if not _cancelling():
                            self._stats.requests += 1
            except RateLimited as exc:
                self._on_rate_limited(ticket, exc)
                raise
            except TransientError as exc:
                if exc.reason != "timeout":  # a timed-out call may still have been counted
                    self._pacer.settle(ticket, tokens=0.0)
                self._on_server_failure(hold.key, exc)
                raise
            except TimeoutError as exc:
                timeout = TransientError(f"{self.profile.name}: no answer within {self._timeout:.0f}s",
                                         reason="timeout")
                self._on_server_failure(hold.key, timeout)
                raise timeout from exc
            finally:
                self._in_flight -= 1
                if probe:
                    self._probed.set()
            await self._commit(hold.key, response)
        self._on_success(ticket, response, tokens_est, completion_max)
        return response

    # -- accounting and learning ------------------------------------------------------
    def _on_success(self, ticket: Ticket, response: ChatResponse, tokens_est: float,
                    completion_max: int) -> None:
        calls = max(1, response.calls)
        self._stats.requests += calls - 1
        usage = response.usage
        counted: float = tokens_est
        if usage.total_tokens:
            # OpenAI counts max_tokens against TPM up front and never refunds it; Anthropic
            # settles output tokens to what was generated. Settle the way the service counts.
            completion = usage.completion_tokens
            if self._tpm_counts_max_tokens:
                completion = max(completion, completion_max)
            counted = usage.prompt_tokens + completion
        self._pacer.settle(ticket, requests=float(calls), tokens=counted)
        self._breaker.success()
        self._rates.on_success(ticket, response.ratelimit)
        self._stats.prompt_tokens += response.usage.prompt_tokens
        self._stats.completion_tokens += response.usage.completion_tokens

    def _on_rate_limited(self, ticket: Ticket, exc: RateLimited) -> None:
        self._stats.rate_limited += 1
        self._pacer.settle(ticket, tokens=0.0)
        hint = exc.retry_after
        if hint is None or not math.isfinite(hint) or hint <= 0:
            hint = DEFAULT_COOL_DOWN_S
        self._pacer.cool_down(min(hint, self._retry_after_cap))
        logger.debug("429: every call waits %.2fs", min(hint, self._retry_after_cap))
        info = exc.ratelimit
        self._rates.on_rate_limited(ticket, info if isinstance(info, RateLimitInfo) else None, str(exc))

    def _on_server_failure(self, key: str, exc: TransientError) -> None:
        """Feed the circuit breaker; when it trips, stop every call and raise the stop here."""
        if _cancelling() or not counts_against_server(exc) or not self._breaker.failure(key):
            return
        down = ServiceDown(
            f"the server at {self._shown_url or self.profile.name} failed {self._breaker.failed} requests "
            f"in a row (last: {exc}); {self._breaker.since()}; stopped. Check that it is up and reachable")
        self.stop(down)
        raise _clone(self._stopped or down) from exc

    def _count_retry(self, exc: BaseException, wait: float) -> None:
        reason = reason_of(exc)
        self._stats.retries[reason] = self._stats.retries.get(reason, 0) + 1
        logger.debug("retrying in %.2fs after %s: %s", wait, reason, exc)  # messages are redacted

    def _raise_if_stopped(self) -> None:
        if self._stopped is not None:
            raise _clone(self._stopped)

    async def _sleep(self, seconds: float) -> None:
        """A backoff sleep that a run-stopping error ends at once."""
        self._raise_if_stopped()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, seconds), _resolve, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._sleepers.discard(fut)

    # -- many calls ---------------------------------------------------------------------
    @overload
    def map(self, items: Iterable[T] | AsyncIterable[T], fn: Callable[[T], Awaitable[R]], *,
            window: int | None = ..., return_exceptions: Literal[False] = ...,
            total: int | None = ..., count_rows: bool = ..., buffer: int | None = ...) -> AsyncGenerator[R, None]: ...

    @overload
    def map(self, items: Iterable[T] | AsyncIterable[T], fn: Callable[[T], Awaitable[R]], *,
            window: int | None = ..., return_exceptions: Literal[True],
            total: int | None = ..., count_rows: bool = ...,
            buffer: int | None = ...) -> AsyncGenerator[R | Exception, None]: ...

    def map(self, items: Iterable[T] | AsyncIterable[T], fn: Callable[[T], Awaitable[R]], *,
            window: int | None = None, return_exceptions: bool = False, total: int | None = None,
            count_rows: bool = True, buffer: int | None = None) -> AsyncGenerator[Any, None]:
        """Run `fn` over `items`, yielding results in input order, `window` at a time.

        Items are pulled lazily, so memory stays flat on any number of them: at most
        `window` are in flight, and at most `buffer` (default 8 x `window`; `window` in batch
        mode) are in flight or finished-but-waiting for an earlier one. The buffer is what keeps
        one slow item (a call backing off before a retry) from stalling the others: with no room
        beyond the window, the window would fill with finished items waiting for it. Errors:

        * ``return_exceptions=False`` (default): the first exception from `fn` stops the
          map, like `asyncio.gather`. Best practice is for `fn` to catch what it can
          handle per item (e.g. turn a `BadRequest` into a rejected row) and let the rest
          stop the run.
        * ``return_exceptions=True``: an `Exception` that is not a `FatalError` is yielded
          in its item's place; a `FatalError` still stops the map.

        On stop: calls in flight are cancelled, results already finished are yielded in
        order up to the first item that did not finish, then the error is raised. Nothing
        is yielded out of order. Each yielded result advances the progress bar's rows
        (`count_rows`); `total` sets its total. Close the iterator early with
        ``contextlib.aclosing`` to cancel what is in flight at once. The default `window`
        is 256, or `BatchOptions.map_window` (50,000) in batch mode.
        """
        if window is None:  # batch mode: a whole stage of the method in one batch
            window = self.batch.map_window if self.batch is not None else 256
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if buffer is None:
            buffer = window if self.batch is not None else 8 * window
        if buffer < window:
            raise ValueError(f"buffer must be >= window ({window}), got {buffer}")
        if total is not None:
            self._rows.set_total(total)
        return self._map(items, fn, window, buffer, return_exceptions, count_rows)

    async def _map(self, items: Iterable[T] | AsyncIterable[T], fn: Callable[[T], Awaitable[R]],
                   window: int, buffer: int, return_exceptions: bool,
                   count_rows: bool) -> AsyncGenerator[Any, None]:
        loop = asyncio.get_running_loop()
        pending: deque[asyncio.Future[R]] = deque()
        failed: asyncio.Future[BaseException] = loop.create_future()
        running = 0
        #: set when any item finishes (a slot is free), recreated before each wait for one
        freed: asyncio.Future[None] = loop.create_future()

        def stops(exc: BaseException) -> bool:
            return not (return_exceptions and isinstance(exc, Exception) and not isinstance(exc, FatalError))

        def on_done(task: asyncio.Future[R]) -> None:
            nonlocal running
            running -= 1
            if not freed.done():
                freed.set_result(None)
            if task.cancelled() or failed.done():
                return
            exc = task.exception()
            if exc is not None and stops(exc):
                failed.set_result(exc)

        async_it = aiter(items) if isinstance(items, AsyncIterable) else None
        sync_it = iter(items) if async_it is None else None  # type: ignore[arg-type]
        exhausted = False
        try:
            while True:
                while not exhausted and running < window and len(pending) < buffer and not failed.done():
                    try:
                        item = next(sync_it) if sync_it is not None else await anext(async_it)  # type: ignore[arg-type]
                    except (StopIteration, StopAsyncIteration):
                        exhausted = True
                        break
                    task: asyncio.Future[R] = asyncio.ensure_future(fn(item))
                    task.add_done_callback(on_done)
                    running += 1
                    pending.append(task)
                if not pending or failed.done():
                    break
                head = pending[0]
                if not head.done():
                    if exhausted or len(pending) >= buffer:
                        await asyncio.wait((head, failed), return_when=asyncio.FIRST_COMPLETED)
                    else:  # the window is full: start another item as soon as any one finishes
                        if freed.done():
                            freed = loop.create_future()
                        await asyncio.wait((freed, head, failed), return_when=asyncio.FIRST_COMPLETED)
                    if failed.done():
                        break
                    if not head.done():
                        continue
                exc = head.exception()
                if exc is not None and stops(exc):
                    # its done-callback may not have run yet: never rely on it to stop
                    if not failed.done():
                        failed.set_result(exc)
                    break
                pending.popleft()
                yield exc if exc is not None else head.result()
                if count_rows:
                    self._rows.advance()
            if failed.done():
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                while pending and not pending[0].cancelled():
                    head = pending[0]
                    exc = head.exception()
                    if exc is not None and stops(exc):
                        raise exc  # the earliest error in input order
                    pending.popleft()
                    yield exc if exc is not None else head.result()
                    if count_rows:
                        self._rows.advance()
                raise failed.result()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


@dataclass(slots=True)
class _Hold:
    """One logical call's state across attempts: its cache key and budget reservation."""

    worst: float
    key: str = ""
    reserved: float = 0.0


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _sends_ratelimit_headers(profile: Profile, base_url: str | None) -> bool:
    """Whether the profile's limits are a fair first guess: only on its own host, which sends
    the headers that correct it. A --base-url override (vLLM, a gateway) starts unpaced."""
    if not profile.limits.ratelimit_headers:
        return False
    return base_url is None or base_url.rstrip("/") == (profile.base_url or "").rstrip("/")


def _prompt_tokens_estimate(request: ChatRequest) -> float:
    return prompt_tokens_estimate(request.messages)


G = TypeVar("G", RateLimits, Retries)


def _grouped(group: G | None, default: G, name: str, **shorthand: float | None) -> G:
    """`group`, or `default` with the shorthand keywords that were given; not both (one would be lost)."""
    given: dict[str, Any] = {k: v for k, v in shorthand.items() if v is not None}
    if group is None:
        return dataclasses.replace(default, **given)
    if given:
        raise ConfigError(f"{', '.join(given)} given both as keyword(s) and in {name}=; give each once")
    return group


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
