"""The library API of the method: `score` (an async stream of scores) and `curate` (the whole run).

A curate run is two passes over the input, so memory stays flat on any file size:

0. **plan**: the scoring plan follows the provider's capabilities; whether the server really
   returns logprobs is settled on the first rows before any row is scored (`clearapi.clear.probe`),
   so every row is scored under one plan: the logprobs one, or the sampled fallback, said in
   ``methods`` and the summary.
1. **score**: stream the input; every `Example` is scored (`pipeline.score_example`) under
   the engine's limits, in input order; its `Score` goes to a scratch file in the output
   folder and only ``confidence`` stays in memory (8 bytes a row, for the calibrated cut and ``--filter-fraction``).
   Reader rejects (bad input lines) go to ``rejects.jsonl``; rows whose calls failed after all
   retries (or were refused) go to ``failed.jsonl``: the input was fine, the API did not answer.
2. **decide**: the threshold is now known (calibrated to the dataset's confidences by
   `calibrate`, or absolute, or the quantile for a fraction). The
   input is read again alongside the scratch scores; each row is decided
   (`policy.decide`), the pairwise judgement asked only where it can change the decision,
   and ``curated.jsonl`` / ``scores.jsonl`` are written. With an absolute threshold (known
   up front) each row is decided in pass 1 as soon as it is scored, so judgements for early
   rows share the limit with the scoring of later ones instead of waiting for it to end.

A run-stopping error (bad key, no quota, ``--max-cost`` reached) ends pass 1 early: what
was scored is still decided (without new judgements), written, and `Summary.completed` is
False with the reason. A run that finishes with failed rows is complete, and says so in
`Summary.warnings` (the CLI exits 3). Every answer is in the response cache, so re-running the same
command resumes where it stopped, or retries the failed rows, at no cost for the finished part.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from clearapi._version import __version__
from clearapi.clear.calibrate import calibrate, drop_warning
from clearapi.clear.combine import GATES, weights_for
from clearapi.clear.demos import DemoPool
from clearapi.clear.estimate import Estimate, estimate_run
from clearapi.clear.judge import LIKELIHOOD_CORRECT_THRESHOLD, JudgeSpec, Panel, panel_judgement
from clearapi.clear.options import CurateOptions
from clearapi.clear.pipeline import Chat, RowWork, ScoringPlan, score_example
from clearapi.clear.policy import (
    DEFAULT_CORRECT_THRESHOLD,
    Judgement,
    PolicySettings,
    decide,
    fraction_threshold,
    needs_judgement,
)
from clearapi.clear.probe import PROBE_ROWS, Primed, settle_logprobs
from clearapi.clear.signals import SIGNAL_NAMES
from clearapi.datasets import DatasetReader, ReadStats
from clearapi.engine import Engine, RateLimits, Retries
from clearapi.engine.batch import BatchOptions
from clearapi.engine.cache import default_cache_path
from clearapi.errors import (
    BadRequest,
    ClearAPIError,
    ConfigError,
    FatalError,
    RateLimited,
    TransientError,
)
from clearapi.finetune.targets import record_for
from clearapi.outdir import OutputFolder, partial_name
from clearapi.profiles import load_profile
from clearapi.records import Capabilities, ChatResponse, Example, FailedRow, Reject, RowCounts, Score, Summary
from clearapi.redact import redact_url
from clearapi.spool import SpooledInput
from clearapi.writers import AtomicJsonlWriter, dumps_line, write_json_atomic

__all__ = ["CurateOptions", "curate", "estimate", "score"]

#: what `curate`, `score` and `estimate` read (see `clearapi.sources.open_input`)
Input = str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Any

#: errors that fail one row (it goes to failed.jsonl) rather than the run
ROW_ERRORS: tuple[type[ClearAPIError], ...] = (TransientError, RateLimited, BadRequest)

_log = logging.getLogger("clearapi")

OUTPUTS = {"curated": "curated.jsonl", "scores": "scores.jsonl", "rejects": "rejects.jsonl",
           "failed": "failed.jsonl", "summary": "summary.json", "report": "report.html"}


def _engine(opts: CurateOptions) -> Engine:
    model = opts.model
    if opts.model_path is not None:
        if load_profile(opts.provider).protocol != "local_llama":
            raise ConfigError("--model-path is for the local provider (a GGUF file)")
        model = str(Path(opts.model_path).expanduser())
    batch = BatchOptions(retry=opts.batch_retry, poll_interval=opts.batch_poll_interval) if opts.batch else False
    return Engine(opts.provider, model=model, base_url=opts.base_url, api_key=opts.api_key, threads=opts.threads,
                  limits=RateLimits(rpm=opts.rpm, tpm=opts.tpm, max_concurrency=opts.max_concurrency),
                  retries=Retries(timeout=opts.timeout), breaker=opts.breaker, batch=batch, cache=opts.cache,
                  max_cost=opts.max_cost, progress=opts.progress)


def cache_path(cache: str | os.PathLike[str] | bool | None) -> Path | None:
    """The response cache file a run with this ``cache`` option reads (None: no cache)."""
    if cache is True:
        return default_cache_path()
    if cache is False or cache is None:
        return None
    return Path(cache).expanduser()


def _judge_engine(spec: JudgeSpec, opts: CurateOptions) -> Engine:
    """A judge's own engine: its own limits (the profile's), cache handle and cost accounting."""
    local = load_profile(spec.provider).protocol == "local_llama"
    return Engine(spec.provider, model=spec.model, base_url=spec.base_url, api_key=opts.judge_api_key,
                  cache=opts.cache, progress=False, breaker=opts.breaker, threads=opts.threads if local else None)


def _window(engine: Engine) -> int | None:
    """Rows in flight: bounded by concurrency online; in batch mode the engine's batch window,
    so every row's calls of one stage land in one batch."""
    return None if engine.batch is not None else max(4, 2 * engine.max_concurrency)


def _reader(input: Input, opts: CurateOptions) -> DatasetReader:
    from clearapi.sources import open_input

    if isinstance(input, SpooledInput):
        reader = open_input(input.path, prompt_column=opts.prompt_column, response_column=opts.response_column)
        reader.name = input.name
        return reader
    return open_input(input, prompt_column=opts.prompt_column, response_column=opts.response_column)


def _spool(input: Input) -> contextlib.AbstractContextManager[Any]:
    """A path that can be read only once (stdin, a pipe) is copied to a private file first;
    other inputs (files, DataFrames, datasets, lists) are read in place."""
    if isinstance(input, (str, os.PathLike)):
        return SpooledInput(input)
    return contextlib.nullcontext(input)


async def _spooled(stack: contextlib.AsyncExitStack, input: Input) -> Any:
    spool = _spool(input)
    entered = await asyncio.to_thread(spool.__enter__)
    stack.push(spool)
    return entered


def _input_name(input: Input) -> str:
    return os.fspath(input) if isinstance(input, (str, os.PathLike)) else f"<{type(input).__name__}>"


def _model_name(engine: Engine) -> str:
    return Path(engine.model).name if engine.model.endswith(".gguf") else engine.model


def _plan(caps: Capabilities, opts: CurateOptions) -> ScoringPlan:
    return ScoringPlan.for_capabilities(caps, samples=opts.samples, seed=opts.seed, best_answer=opts.best_answer,
                                        demonstrations=opts.demonstrations, demo_sets=opts.demo_sets)


async def _run_plan(engine: Engine, reader: DatasetReader,
                    opts: CurateOptions) -> tuple[ScoringPlan, dict[str, ChatResponse]]:
    """The run's plan, with whether the server returns logprobs settled on its first rows
    (`clearapi.clear.probe`), and the probe's answers its rows will ask again. Batch mode
    serves providers whose own hosts return what their profiles say, and is not probed."""
    caps = engine.capabilities
    plan = _plan(caps, opts)
    if plan.rating != "logprobs" or engine.batch is not None:
        return plan, {}
    fallback = _plan(caps.model_copy(update={"logprobs": False, "max_top_logprobs": 0}), opts)
    first = await asyncio.to_thread(_first_examples, reader, opts.limit)
    return await settle_logprobs(engine, first, plan, fallback)


def _first_examples(reader: DatasetReader, limit: int | None) -> list[Example]:
    """Up to `PROBE_ROWS` examples from the input's first `limit` rows (a short read)."""
    out: list[Example] = []
    with contextlib.closing(iter(reader)) as rows:
        for item in itertools.islice(rows, limit):
            if isinstance(item, Example):
                out.append(item)
                if len(out) == PROBE_ROWS:
                    break
    return out


def _demo_pool(reader: DatasetReader, plan: ScoringPlan) -> DemoPool | None:
    """The rows demonstrations are drawn from: the first eligible rows of the input (a short read)."""
    if not plan.demonstrations:
        return None
    with contextlib.closing(iter(reader)) as rows:
        return DemoPool.from_rows(rows, seed=plan.seed)


def failed_row(file: str, example: Example, exc: ClearAPIError) -> FailedRow:
    """The failed.jsonl line of a row whose call raised `exc` (its message is already redacted)."""
    return FailedRow(file=file, line=example.line, id=example.id, error_type=type(exc).__name__,
                     error=f"{type(exc).__name__}: {exc}", attempts=exc.attempts)


async def score_row(engine: Chat, example: Example, plan: ScoringPlan, file: str, *, model: str,
                    demos: DemoPool | None) -> Score | FailedRow:
    """One row's score, or its failed.jsonl line (what every executor runs per row)."""
    try:
        return await score_example(engine, example, plan, model=model, demos=demos)
    except ROW_ERRORS as exc:
        return failed_row(file, example, exc)


#: the "score these rows" stage: `_score_rows` here, or an executor's (`clearapi.executors`)
ScoreRows = Callable[..., AsyncIterator[Score | Reject | FailedRow]]


@contextlib.asynccontextmanager
async def _score_stage(opts: CurateOptions, engine: Engine) -> AsyncIterator[ScoreRows]:
    """Only scoring is distributed: reading, deciding and writing stay in this process."""
    if opts.executor != "ray":
        yield _score_rows
        return
    from clearapi.executors.ray_exec import RayExecutor

    async with RayExecutor(opts, engine) as executor:
        yield executor.score_rows


async def _score_rows(engine: Engine, reader: DatasetReader, plan: ScoringPlan, file: str,
                      then: Callable[[Example, Score], Awaitable[Score]] | None = None,
                      limit: int | None = None,
                      primed: Mapping[str, ChatResponse] | None = None) -> AsyncIterator[Score | Reject | FailedRow]:
    """Scores, rejects (bad input) and failed rows (calls that failed after retries) in input
    order. `then` runs on each score in the row's own task (curate's judgement, while later rows
    score); `limit` keeps the first N input rows, rejects and failures included; `primed` holds
    answers the plan's probe already received."""
    model = _model_name(engine)
    demos = await asyncio.to_thread(_demo_pool, reader, plan)
    chat: Chat = Primed(engine, primed) if primed else engine

    async def one(item: Example | Reject) -> Score | Reject | FailedRow:
        if isinstance(item, Reject):
            return item
        scored = await score_row(chat, item, plan, file, model=model, demos=demos)
        return scored if then is None or isinstance(scored, FailedRow) else await then(item, scored)

    from clearapi.sources import count_rows

    total = await asyncio.to_thread(count_rows, reader) if engine.shows_progress else None
    if total is not None and limit is not None:
        total = min(total, limit)
    rows = itertools.islice(iter(reader), limit)
    async for result in engine.map(rows, one, window=_window(engine), total=total):
        yield result


async def score(input: Input, *, engine: Engine | None = None,
                on_reject: Callable[[Reject], None] | None = None,
                on_failure: Callable[[FailedRow], None] | None = None,
                on_truncated: Callable[[str], None] | None = None, **options: Any) -> AsyncIterator[Score]:
    """Score every row of `input`, yielding a `Score` per example in input order.

    `input` is a path (JSONL, CSV, Parquet, a `datasets` folder, ``hf:ORG/NAME[:SPLIT]``), a
    pandas DataFrame, a `datasets.Dataset` or an iterable of dicts.

    Takes the same options as `curate` (provider, model, samples, seed, cache...). Rows
    that cannot be read are not yielded: they go to `on_reject` if given. Rows whose calls
    failed after every retry (or were refused) are not yielded either: they go to `on_failure`
    if given, and scoring them again later costs only their missing calls. An input that
    broke off (a truncated gzip) calls `on_truncated` with the reader's reason at the end.
    Pass `engine` to reuse one (its provider options win).
    """
    opts = CurateOptions.from_kwargs(options)
    async with contextlib.AsyncExitStack() as stack:
        source = await _spooled(stack, input)
        reader = _reader(source, opts)
        if engine is None:
            engine = await stack.enter_async_context(_engine(opts))
        plan, primed = await _run_plan(engine, reader, opts)
        score_rows = await stack.enter_async_context(_score_stage(opts, engine))
        async for item in score_rows(engine, reader, plan, reader.name, limit=opts.limit, primed=primed):
            if isinstance(item, Reject):
                if on_reject is not None:
                    on_reject(item)
            elif isinstance(item, FailedRow):
                if on_failure is not None:
                    on_failure(item)
            else:
                yield item
        if reader.stats.truncated and on_truncated is not None:
            on_truncated(reader.stats.stopped_reason or f"{reader.name} broke off before its end")


def estimate(input: Input, **options: Any) -> Estimate:
    """What a run would cost, from the file and the provider's profile, without any call."""
    opts = CurateOptions.from_kwargs(options)
    profile = load_profile(opts.provider)
    model = opts.model or profile.default_model
    caps = profile.capabilities_for(model)
    plan = _plan(caps, opts)
    price = profile.price_for(model)
    if opts.batch and price is not None and price.batch_discount:  # what batch mode is billed at
        keep = 1.0 - price.batch_discount
        price = price.model_copy(update={"input": price.input * keep, "output": price.output * keep})
    with _spool(input) as source:
        reader = _reader(source, opts)
        rows = itertools.islice(iter(reader), opts.limit)
        est = estimate_run(rows, plan, price, demos=_demo_pool(reader, plan), action=opts.action,
                           filter_fraction=opts.filter_fraction, provider=profile.name, model=model,
                           separate_judge=bool(opts.judges()))
    for spec in opts.judges():
        judge_profile = load_profile(spec.provider)
        judge_model = spec.model or judge_profile.default_model
        # a separate judge gives text verdicts, as many per order as its own capabilities need
        judge_plan = ScoringPlan.for_capabilities(judge_profile.capabilities_for(judge_model), seed=opts.seed)
        est.add_judge(judge_profile.name, judge_model, judge_profile.price_for(judge_model),
                      calls_per_row=judge_plan.judge_calls(likelihood=False))
    return est


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Tally:
    def __init__(self) -> None:
        self.counts = RowCounts()
        self.calls = 0
        self.judged = 0
        self.judgement_calls = 0
        self.tokens = 0
        self.last_line = 0


async def curate(input: Input, out_dir: str | os.PathLike[str], *,
                 engine: Engine | None = None, dry_run: bool = False, **options: Any) -> Summary:
    """Score, filter and correct `input` (any input `score` takes); write curated.jsonl, scores.jsonl, rejects.jsonl,
    failed.jsonl, summary.json (and report.html) to `out_dir`; return the summary.

    Options (all keyword) are the fields of `CurateOptions`, each with its default and the help of
    its command-line flag (``provider="local"``, ``samples=4``, ``threshold``...); an unknown name is a
    TypeError. ``dry_run=True`` makes no call and writes nothing: the returned summary carries the
    estimate in ``settings["estimate"]``. Pass `engine` to reuse one (its provider options win).
    """
    opts = CurateOptions.from_kwargs(options)
    started = _now()
    if dry_run:
        est = estimate(input, **options)
        return Summary(clearapi_version=__version__, input=_input_name(input), output_dir=str(out_dir),
                       provider=est.provider, model=est.model, started_at=started, finished_at=_now(),
                       completed=False, stopped_reason="dry run: no call was made",
                       settings={**opts.settings(), "dry_run": True, "estimate": est.as_dict()})
    if opts.target != "openai":
        from clearapi.finetune.targets import TARGETS

        if opts.target not in TARGETS:
            raise ConfigError(f"unknown target {opts.target!r}; choose one of {', '.join(sorted(TARGETS))}")
        if TARGETS[opts.target].preference:
            # curated.jsonl holds every kept or corrected row; a preference file holds only
            # accepted corrections, so it is made from the finished output folder instead
            raise ConfigError(
                f"{opts.target!r} is a preference target: curate with a supervised target, then run "
                f"`clearapi convert {out_dir} --target {opts.target} -o pairs.jsonl`")
    out = Path(out_dir)
    # outputs are staged, then moved into place in one step (clearapi.outdir); checked before
    # anything is opened or created, the cache included
    cache = engine.cache_path if engine is not None else cache_path(opts.cache)
    reads = [input if isinstance(input, (str, os.PathLike)) else None, cache, opts.model_path]
    folder = OutputFolder(out, outputs=OUTPUTS.values(), reads=reads)
    folder.check()
    async with contextlib.AsyncExitStack() as stack:
        source = await _spooled(stack, input)
        reader = _reader(source, opts)
        if engine is None:
            engine = await stack.enter_async_context(_engine(opts))
        judges = [(spec.name, await stack.enter_async_context(_judge_engine(spec, opts)))
                  for spec in opts.judges()]
        await asyncio.to_thread(stack.enter_context, folder)
        score_rows = await stack.enter_async_context(_score_stage(opts, engine))
        summary = await _run(engine, reader, reader.name, folder.stage, opts, started, output_dir=out,
                             judges=judges, score_rows=score_rows)
        if not summary.completed:  # partial results go under names that say so
            summary.outputs = {k: partial_name(v) for k, v in summary.outputs.items()}
            write_json_atomic(folder.stage / OUTPUTS["summary"], summary)
        await asyncio.to_thread(folder.commit, complete=summary.completed)
        return summary
    raise AssertionError("unreachable")  # pragma: no cover


async def _run(engine: Engine, reader: DatasetReader, input: str, out: Path, opts: CurateOptions,
               started: str, *, output_dir: Path, judges: list[tuple[str, Engine]] | None = None,
               score_rows: ScoreRows | None = None) -> Summary:
    stopped: FatalError | None = None
    try:
        plan, primed = await _run_plan(engine, reader, opts)
    except FatalError as exc:  # a bad key, no quota: met on the first row, as without the probe
        plan, primed, stopped = _plan(engine.capabilities, opts), {}, exc
    judges = judges or []
    panel = Panel([(name, e, ScoringPlan.for_capabilities(e.capabilities, seed=opts.seed)) for name, e in judges],
                  majority=opts.judge_majority)
    gate = opts.correct_threshold
    if gate is None:
        gate = LIKELIHOOD_CORRECT_THRESHOLD if plan.likelihood and not judges else DEFAULT_CORRECT_THRESHOLD
    settings = PolicySettings(action=opts.action, correct_threshold=gate, eta=opts.eta)
    tally = _Tally()
    scratch = out / ".clearapi-scores.partial.jsonl"
    confidences = array("d")
    scored_lines = 0
    # An absolute threshold is known before any row is scored (a calibrated or fractional one is
    # not): each row is then decided (its judgement asked) as soon as it is scored, keeping the
    # limit busy while later rows score.
    early: list[FatalError] = []  # run-stopping errors of those early judgements

    likelihood_demos = await asyncio.to_thread(_demo_pool, reader, plan) if plan.likelihood else None

    async def decide_now(example: Example, row: Score) -> Score:
        assert opts.threshold is not None
        _, row, error = await _decide_row(engine, plan, settings, opts.threshold, (example, row), None,
                                          panel=panel, demos=likelihood_demos)
        if error is not None:
            early.append(error)
        return row

    with AtomicJsonlWriter(out / OUTPUTS["rejects"]) as rejects, \
            AtomicJsonlWriter(out / OUTPUTS["failed"]) as failed:
        # --- pass 1: score ------------------------------------------------------------------
        with scratch.open("wb") as fh:
            try:
                if stopped is not None:  # the probe met it: no row is scored
                    raise stopped
                early_decide = decide_now if opts.filter_fraction is None and opts.threshold is not None else None
                async for item in (score_rows or _score_rows)(engine, reader, plan, input, early_decide, opts.limit,
                                                              primed):
                    tally.counts.rows += 1
                    tally.last_line = item.line
                    if isinstance(item, Reject):
                        rejects.write(item)
                        tally.counts.rejected += 1
                        continue
                    if isinstance(item, FailedRow):
                        failed.write(item)
                        tally.counts.failed += 1
                        continue
                    fh.write(dumps_line(item))
                    scored_lines += 1
                    if item.confidence is not None:
                        confidences.append(item.confidence)
            except FatalError as exc:
                stopped = exc
        if early and stopped is None:
            stopped = early[0]
        read_stats = reader.stats  # pass 2 reads the input again, with fresh counters, and stops early
        # --- threshold ----------------------------------------------------------------------
        calibration = calibrate(confidences)
        if opts.filter_fraction is not None:
            threshold = fraction_threshold(confidences, opts.filter_fraction)
        else:
            threshold = opts.threshold if opts.threshold is not None else calibration.threshold
        below = sum(1 for c in confidences if c < threshold)
        warning = drop_warning(below, len(confidences), calibration, threshold)
        del confidences
        # --- pass 2: decide, write -----------------------------------------------------------
        try:
            with AtomicJsonlWriter(out / OUTPUTS["curated"]) as curated, \
                    AtomicJsonlWriter(out / OUTPUTS["scores"]) as scores:
                pairs = _pairs(reader, scratch)

                async def one(pair: tuple[Example, Score]) -> tuple[Example, Score, FatalError | None]:
                    if pair[1].action is not None:  # decided in pass 1
                        return pair[0], pair[1], None
                    return await _decide_row(engine, plan, settings, threshold, pair, stopped, panel=panel,
                                             demos=likelihood_demos)

                async for example, row, error in engine.map(pairs, one, window=_window(engine), count_rows=False):
                    if error is not None and stopped is None:
                        stopped = error  # the exception itself: a QuotaExhausted stays a QuotaExhausted
                    scores.write(row)
                    tally.calls += row.calls
                    if "judgement" in row.details:
                        tally.judged += 1
                        tally.judgement_calls += (row.details["judgement"]["scorer_calls"]
                                                  + row.details["judgement"]["judge_calls"])
                    tally.tokens += row.tokens
                    if row.action == "drop":
                        tally.counts.dropped += 1
                        continue
                    try:
                        record = record_for(example, row.action or "keep", row.correction, opts.target)
                    except ValueError as exc:  # RenderError: the target cannot express this row
                        rejects.write(Reject(file=input, line=example.line, field=getattr(exc, "field", None),
                                             error=f"cannot write this row for target {opts.target!r}: {exc}"))
                        tally.counts.rejected += 1
                        continue
                    curated.write(record)
                    if row.action == "correct":
                        tally.counts.corrected += 1
                    else:
                        tally.counts.kept += 1
        finally:
            with contextlib.suppress(FileNotFoundError):
                scratch.unlink()
    summary = _summary(engine, input, output_dir, opts, plan, started, tally, threshold, stopped, read_stats,
                       correct_threshold=settings.correct_threshold)
    if tally.counts.failed:
        summary.warnings.append(failed_warning(tally.counts.failed, OUTPUTS["failed"]))
    if plan.fallback:
        summary.warnings.append(f"token logprobs not used: {plan.fallback}. Every row was scored with the "
                                f"method's sampled fallback (self-rating sampled x{plan.rating_samples}, no answer "
                                "confidence), as on a provider without logprobs.")
    summary.calibration = calibration.report(threshold)
    if warning is not None:  # the CLI prints it on stderr; a library caller reads summary.warnings
        summary.warnings.append(warning)
    summary.judges = {name: e.stats for name, e in judges}
    write_json_atomic(out / OUTPUTS["summary"], summary)
    _write_report(out, summary)
    return summary


def _pairs(reader: DatasetReader, scratch: Path) -> Iterator[tuple[Example, Score]]:
    """The input's examples again, each with its pass-1 score (both are in input order)."""
    examples = (item for item in reader if isinstance(item, Example))
    with scratch.open("rb") as fh:
        for raw in fh:
            row = Score.model_validate(orjson.loads(raw))
            for example in examples:
                if example.line == row.line:
                    yield example, row
                    break
            else:  # pragma: no cover - the input changed between the passes
                raise ConfigError(f"{reader.name} changed while it was being curated (line {row.line} is gone)")


async def _decide_row(engine: Engine, plan: ScoringPlan, settings: PolicySettings, threshold: float,
                      pair: tuple[Example, Score], stopped: FatalError | None, *, panel: Panel | None = None,
                      demos: DemoPool | None = None) -> tuple[Example, Score, FatalError | None]:
    example, row = pair
    panel = panel or Panel()
    candidate = row.candidate
    judgement: Judgement | None = None
    judgement_error: str | None = None
    run_error: FatalError | None = None
    if needs_judgement(row.confidence, threshold, candidate, settings):
        assert candidate is not None
        if stopped is not None or engine.stopped is not None:
            judgement_error = f"run stopped before the pairwise judgement ({stopped or engine.stopped})"
        else:
            work, judge_work = RowWork(), RowWork()
            # the likelihood judge scores y′ under the demonstration sets y was scored under
            sets = [shown for shown, _ in demos.sets_for(example, plan.demonstrations, plan.sets())] \
                if demos is not None else [()]
            try:
                verdicts = await panel.verdicts(engine, plan, example, candidate.text, sets, work, judge_work)
                judgement = panel_judgement(verdicts, panel.majority)
            except ROW_ERRORS as exc:
                # a bad request is refused at once; only the others went through the retry loop
                how = "was refused" if isinstance(exc, BadRequest) else "failed after retries"
                judgement_error = f"pairwise judgement {how}: {type(exc).__name__}: {exc}"
            except FatalError as exc:
                judgement_error = f"pairwise judgement not asked: {exc}"
                run_error = exc
            row.calls += work.calls
            row.tokens += work.usage.total_tokens
            if judgement is not None:
                row.details["judgement"] = {"candidate_second": judgement.candidate_second,
                                            "candidate_first": judgement.candidate_first,
                                            "original": example.response, "candidate": candidate.text,
                                            "verdicts": [v.as_dict() for v in verdicts],
                                            "scorer_calls": work.calls, "judge_calls": judge_work.calls,
                                            "judge_tokens": judge_work.usage.total_tokens}
    decision = decide(row.confidence, threshold, settings, candidate=candidate, judgement=judgement,
                      judgement_error=judgement_error)
    row.decision = decision
    row.action = decision.action
    row.reason = decision.reason
    row.correction = decision.correction
    if candidate is not None and decision.action == "correct":
        row.correction_confidence = candidate.confidence
    return example, row, run_error


def _summary(engine: Engine, input: str, out: Path, opts: CurateOptions, plan: ScoringPlan, started: str,
             tally: _Tally, threshold: float, stopped: FatalError | None, read_stats: ReadStats, *,
             correct_threshold: float) -> Summary:
    model = _model_name(engine)
    weights = weights_for(model)
    methods = plan.methods()
    signals: dict[str, dict[str, Any]] = {
        name: {"weight": "gate" if name in GATES else weights.get(name, 0.0),
               "method": methods.get(name, "not available")}
        for name in SIGNAL_NAMES}
    rows = tally.counts.rows
    per_row = {"calls": round(tally.calls / rows, 3) if rows else 0.0,
               "tokens": round(tally.tokens / rows, 1) if rows else 0.0,
               "scoring_calls_planned": plan.calls_per_row(),
               "judged_rows": tally.judged,
               "judgement_calls": round(tally.judgement_calls / rows, 3) if rows else 0.0}
    reason = None
    if stopped is not None:
        done = (f"{rows} row(s) finished before the stop, the last at line {tally.last_line}" if rows
                else "No row finished before the stop")
        reason = (f"{type(stopped).__name__}: {stopped}. {done} ({engine.stats.requests} API call(s) made); "
                  "re-run the same command to resume (answers already received come from the cache).")
    elif read_stats.truncated:
        reason = read_stats.stopped_reason
    return Summary(
        clearapi_version=__version__, input=input, output_dir=str(out), provider=engine.profile.name,
        model=model, started_at=started, finished_at=_now(), completed=stopped is None,
        stopped_reason=reason, counts=tally.counts,
        # what the run did, not what was asked: None ("the provider's default") becomes the value used
        settings={**opts.settings(), "base_url": redact_url(engine.base_url),
                  "base_url_source": engine.base_url_source, "best_answer": plan.best_answer, "demonstrations": plan.demonstrations,
                  "demo_sets": plan.sets(), "correct_threshold": correct_threshold, "per_row": per_row,
                  "format": read_stats.format, "logprobs_fallback": plan.fallback},
        threshold=threshold, engine=engine.stats, signals=signals,
        outputs={k: v for k, v in OUTPUTS.items() if k != "report"},
    )


def failed_warning(count: int, file: str) -> str:
    """What a run with failed rows tells its user: they are not lost, a re-run asks them again."""
    return (f"{count} row(s) failed: the API did not answer their calls after every retry; they are listed "
            f"in {file} and are in no other output. Re-run the same command to retry them (answers already "
            "received come from the cache, so only their calls are made again).")


def _write_report(out: Path, summary: Summary) -> None:
    try:
        from clearapi.report import write_report
    except ImportError:  # pragma: no cover - the report package is part of clearapi
        return
    try:
        write_report(out)
    except Exception as exc:  # the report is a view of the outputs; never lose a run over it
        summary.outputs.pop("report", None)
        _log.warning("report.html not written: %s", exc)
    else:
        summary.outputs["report"] = OUTPUTS["report"]
        write_json_atomic(out / OUTPUTS["summary"], summary)

