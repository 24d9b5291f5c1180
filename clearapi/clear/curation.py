"""The library API of the method: `score` (an async stream of scores) and `curate` (the whole run).

A curate run is two passes over the input, so memory stays flat on any file size:

1. **score**: stream the input; every `Example` is scored (`pipeline.score_example`) under
   the engine's limits, in input order; its `Score` goes to a scratch file in the output
   folder and only ``confidence`` stays in memory (8 bytes a row, for ``--filter-fraction``).
   Reader rejects and rows whose calls failed after all retries go to ``rejects.jsonl``.
2. **decide**: the threshold is now known (absolute, or the quantile for a fraction). The
   input is read again alongside the scratch scores; each row is decided
   (`policy.decide`), the pairwise judgement asked only where it can change the decision,
   and ``curated.jsonl`` / ``scores.jsonl`` are written.

A run-stopping error (bad key, no quota, ``--max-cost`` reached) ends pass 1 early: what
was scored is still decided (without new judgements), written, and `Summary.completed` is
False with the reason. Every answer is in the response cache, so re-running the same
command resumes where it stopped at no cost for the finished part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from array import array
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from clearapi._version import __version__
from clearapi.clear.combine import GATES, weights_for
from clearapi.clear.demos import DemoPool
from clearapi.clear.estimate import Estimate, estimate_run
from clearapi.clear.pipeline import RowWork, ScoringPlan, judge, score_example
from clearapi.clear.policy import (
    DEFAULT_CORRECT_THRESHOLD,
    DEFAULT_ETA,
    DEFAULT_THRESHOLD,
    CurationAction,
    Judgement,
    PolicySettings,
    decide,
    fraction_threshold,
    needs_judgement,
)
from clearapi.clear.signals import SIGNAL_NAMES
from clearapi.datasets import DatasetReader, ReadStats
from clearapi.engine import Engine
from clearapi.engine.batch import BatchOptions
from clearapi.errors import (
    BadRequest,
    ClearAPIError,
    ConfigError,
    FatalError,
    RateLimited,
    TransientError,
)
from clearapi.finetune.targets import record_for
from clearapi.profiles import load_profile
from clearapi.records import Capabilities, Example, Reject, RowCounts, Score, Summary
from clearapi.writers import AtomicJsonlWriter, dumps_line, write_json_atomic

__all__ = ["CurateOptions", "curate", "estimate", "score"]

#: errors that fail one row (it becomes a reject) rather than the run
ROW_ERRORS: tuple[type[ClearAPIError], ...] = (TransientError, RateLimited, BadRequest)

_log = logging.getLogger("clearapi")

OUTPUTS = {"curated": "curated.jsonl", "scores": "scores.jsonl", "rejects": "rejects.jsonl",
           "summary": "summary.json", "report": "report.html"}


@dataclass
class CurateOptions:
    """Everything a run is configured by (the CLI's flags, one to one)."""

    provider: str = "local"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int | None = None
    cache: str | Path | bool | None = True
    action: CurationAction = "both"
    threshold: float | None = None
    filter_fraction: float | None = None
    correct_threshold: float = DEFAULT_CORRECT_THRESHOLD
    eta: float = DEFAULT_ETA
    samples: int = 4
    #: ask the temperature-0 answer too (None: where the provider scores given text, i.e. self-hosted)
    best_answer: bool | None = None
    #: the dataset's rows shown before each answer/scoring prompt (None: 3 where self-hosted, else 0)
    demonstrations: int | None = None
    #: disjoint draws of them each row is asked under (None: 2 where self-hosted with demonstrations, else 1)
    demo_sets: int | None = None
    seed: int = 0
    max_cost: float | None = None
    target: str = "openai"
    model_path: str | None = None
    prompt_column: str | None = None
    response_column: str | None = None
    progress: bool | None = None
    #: batch mode: misses go through the provider's batch API at its batch price
    batch: bool = False
    batch_retry: Literal["online", "batch"] = "online"
    batch_poll_interval: float = 10.0

    def check(self) -> None:
        if self.threshold is not None and self.filter_fraction is not None:
            raise ConfigError("give either --threshold or --filter-fraction, not both")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.filter_fraction is not None and not 0.0 <= self.filter_fraction <= 1.0:
            raise ConfigError(f"filter fraction must be in [0, 1], got {self.filter_fraction}")
        ScoringPlan.check_counts(samples=self.samples, demonstrations=self.demonstrations, demo_sets=self.demo_sets)
        PolicySettings(action=self.action, correct_threshold=self.correct_threshold, eta=self.eta)

    def settings(self) -> dict[str, Any]:
        """What goes into summary.json: every option except the key."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "api_key"}
        out["threshold_rule"] = (
            f"filter fraction {self.filter_fraction}" if self.filter_fraction is not None
            else f"absolute {self.threshold if self.threshold is not None else DEFAULT_THRESHOLD}")
        return out


def _options(**kwargs: Any) -> CurateOptions:
    unknown = set(kwargs) - set(CurateOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    opts = CurateOptions(**kwargs)
    opts.check()
    return opts


def _engine(opts: CurateOptions) -> Engine:
    model = opts.model
    if opts.model_path is not None:
        if load_profile(opts.provider).protocol != "local_llama":
            raise ConfigError("--model-path is for the local provider (a GGUF file)")
        model = str(Path(opts.model_path).expanduser())
    batch = BatchOptions(retry=opts.batch_retry, poll_interval=opts.batch_poll_interval) if opts.batch else False
    return Engine(opts.provider, model=model, base_url=opts.base_url, api_key=opts.api_key, rpm=opts.rpm,
                  tpm=opts.tpm, max_concurrency=opts.max_concurrency, cache=opts.cache, max_cost=opts.max_cost,
                  progress=opts.progress, batch=batch)


def _window(engine: Engine) -> int | None:
    """Rows in flight: bounded by concurrency online; in batch mode the engine's batch window,
    so every row's calls of one stage land in one batch."""
    return None if engine.batch is not None else max(4, 2 * engine.max_concurrency)


def _reader(input: str | os.PathLike[str], opts: CurateOptions) -> DatasetReader:
    return DatasetReader(input, prompt_column=opts.prompt_column, response_column=opts.response_column)


def _model_name(engine: Engine) -> str:
    return Path(engine.model).name if engine.model.endswith(".gguf") else engine.model


def _plan(caps: Capabilities, opts: CurateOptions) -> ScoringPlan:
    return ScoringPlan.for_capabilities(caps, samples=opts.samples, seed=opts.seed, best_answer=opts.best_answer,
                                        demonstrations=opts.demonstrations, demo_sets=opts.demo_sets)


def _demo_pool(reader: DatasetReader, plan: ScoringPlan) -> DemoPool | None:
    """The rows demonstrations are drawn from: the first eligible rows of the input (a short read)."""
    if not plan.demonstrations:
        return None
    with contextlib.closing(iter(reader)) as rows:
        return DemoPool.from_rows(rows, seed=plan.seed)


async def _score_rows(engine: Engine, reader: DatasetReader, plan: ScoringPlan,
                      file: str) -> AsyncIterator[Score | Reject]:
    """Scores (or rejects) in input order; a row whose calls fail after retries becomes a reject."""
    model = _model_name(engine)
    demos = await asyncio.to_thread(_demo_pool, reader, plan)

    async def one(item: Example | Reject) -> Score | Reject:
        if isinstance(item, Reject):
            return item
        try:
            return await score_example(engine, item, plan, model=model, demos=demos)
        except ROW_ERRORS as exc:
            # a bad request is refused at once; only the others went through the retry loop
            how = "was refused" if isinstance(exc, BadRequest) else "failed after retries"
            return Reject(file=file, line=item.line, field=None,
                          error=f"API call {how}: {type(exc).__name__}: {exc}")

    async for result in engine.map(iter(reader), one, window=_window(engine)):
        yield result


async def score(input: str | os.PathLike[str], *, engine: Engine | None = None,
                on_reject: Callable[[Reject], None] | None = None, **options: Any) -> AsyncIterator[Score]:
    """Score every row of `input`, yielding a `Score` per example in input order.

    Takes the same options as `curate` (provider, model, samples, seed, cache...). Rows
    that cannot be read, or whose calls failed after every retry, are not yielded: they
    go to `on_reject` if given. Pass `engine` to reuse one (its provider options win).
    """
    opts = _options(**options)
    reader = _reader(input, opts)
    async with contextlib.AsyncExitStack() as stack:
        if engine is None:
            engine = await stack.enter_async_context(_engine(opts))
        plan = _plan(engine.capabilities, opts)
        async for item in _score_rows(engine, reader, plan, str(input)):
            if isinstance(item, Reject):
                if on_reject is not None:
                    on_reject(item)
            else:
                yield item


def estimate(input: str | os.PathLike[str], **options: Any) -> Estimate:
    """What a run would cost, from the file and the provider's profile, without any call."""
    opts = _options(**options)
    profile = load_profile(opts.provider)
    model = opts.model or profile.default_model
    caps = profile.capabilities_for(model)
    plan = _plan(caps, opts)
    price = profile.price_for(model)
    if opts.batch and price is not None and price.batch_discount:  # what batch mode is billed at
        keep = 1.0 - price.batch_discount
        price = price.model_copy(update={"input": price.input * keep, "output": price.output * keep})
    reader = _reader(input, opts)
    return estimate_run(reader, plan, price, demos=_demo_pool(reader, plan), action=opts.action,
                        filter_fraction=opts.filter_fraction, provider=profile.name, model=model)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Tally:
    def __init__(self) -> None:
        self.counts = RowCounts()
        self.calls = 0
        self.tokens = 0
        self.last_line = 0


async def curate(input: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 engine: Engine | None = None, dry_run: bool = False, **options: Any) -> Summary:
    """Score, filter and correct `input`; write curated.jsonl, scores.jsonl, rejects.jsonl,
    summary.json (and report.html) to `out_dir`; return the summary.

    Options (all keyword): provider="local", model, base_url, api_key, rpm, tpm,
    max_concurrency, cache=True, action="both", threshold, filter_fraction,
    correct_threshold=0.6, eta=0.8, samples=4, best_answer=None, demonstrations=None, demo_sets=None, seed=0,
    max_cost,
    target="openai",
    model_path, prompt_column, response_column, progress, batch=False, batch_retry="online",
    batch_poll_interval=10.0 (seconds; the first wait between polls of a batch). ``dry_run=True`` makes no call
    and writes nothing: the returned summary carries the estimate in
    ``settings["estimate"]``. Pass `engine` to reuse one (its provider options win).
    """
    opts = _options(**options)
    started = _now()
    if dry_run:
        est = estimate(input, **options)
        return Summary(clearapi_version=__version__, input=str(input), output_dir=str(out_dir),
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
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    reader = _reader(input, opts)
    async with contextlib.AsyncExitStack() as stack:
        if engine is None:
            engine = await stack.enter_async_context(_engine(opts))
        return await _run(engine, reader, str(input), out, opts, started)
    raise AssertionError("unreachable")  # pragma: no cover


async def _run(engine: Engine, reader: DatasetReader, input: str, out: Path, opts: CurateOptions,
               started: str) -> Summary:
    plan = _plan(engine.capabilities, opts)
    settings = PolicySettings(action=opts.action, correct_threshold=opts.correct_threshold, eta=opts.eta)
    tally = _Tally()
    stopped: FatalError | None = None
    scratch = out / ".clearapi-scores.partial.jsonl"
    confidences = array("d")
    scored_lines = 0
    with AtomicJsonlWriter(out / OUTPUTS["rejects"]) as rejects:
        # --- pass 1: score ------------------------------------------------------------------
        with scratch.open("wb") as fh:
            try:
                async for item in _score_rows(engine, reader, plan, input):
                    tally.counts.rows += 1
                    tally.last_line = item.line
                    if isinstance(item, Reject):
                        rejects.write(item)
                        tally.counts.rejected += 1
                        continue
                    fh.write(dumps_line(item))
                    scored_lines += 1
                    if item.confidence is not None:
                        confidences.append(item.confidence)
            except FatalError as exc:
                stopped = exc
        read_stats = reader.stats  # pass 2 reads the input again, with fresh counters, and stops early
        # --- threshold ----------------------------------------------------------------------
        if opts.filter_fraction is not None:
            threshold = fraction_threshold(confidences, opts.filter_fraction)
        else:
            threshold = opts.threshold if opts.threshold is not None else DEFAULT_THRESHOLD
        del confidences
        # --- pass 2: decide, write -----------------------------------------------------------
        try:
            with AtomicJsonlWriter(out / OUTPUTS["curated"]) as curated, \
                    AtomicJsonlWriter(out / OUTPUTS["scores"]) as scores:
                pairs = _pairs(reader, scratch)

                async def one(pair: tuple[Example, Score]) -> tuple[Example, Score, FatalError | None]:
                    return await _decide_row(engine, plan, settings, threshold, pair, stopped)

                async for example, row, error in engine.map(pairs, one, window=_window(engine), count_rows=False):
                    if error is not None and stopped is None:
                        stopped = error  # the exception itself: a QuotaExhausted stays a QuotaExhausted
                    scores.write(row)
                    tally.calls += row.calls
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
    summary = _summary(engine, input, out, opts, plan, started, tally, threshold, stopped, read_stats)
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
                      pair: tuple[Example, Score],
                      stopped: FatalError | None) -> tuple[Example, Score, FatalError | None]:
    example, row = pair
    candidate = row.candidate
    judgement: Judgement | None = None
    judgement_error: str | None = None
    run_error: FatalError | None = None
    if needs_judgement(row.confidence, threshold, candidate, settings):
        assert candidate is not None
        if stopped is not None or engine.stopped is not None:
            judgement_error = f"run stopped before the pairwise judgement ({stopped or engine.stopped})"
        else:
            work = RowWork()
            try:
                judgement = await judge(engine, plan, example, candidate.text, work)
            except ROW_ERRORS as exc:
                judgement_error = f"pairwise judgement failed: {type(exc).__name__}: {exc}"
            except FatalError as exc:
                judgement_error = f"pairwise judgement not asked: {exc}"
                run_error = exc
            row.calls += work.calls
            row.tokens += work.usage.total_tokens
            if judgement is not None:
                row.details["judgement"] = {"candidate_second": judgement.candidate_second,
                                            "candidate_first": judgement.candidate_first}
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
             tally: _Tally, threshold: float, stopped: FatalError | None, read_stats: ReadStats) -> Summary:
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
               "scoring_calls_planned": plan.calls_per_row()}
    reason = None
    if stopped is not None:
        reason = (f"{type(stopped).__name__}: {stopped}. Rows after line {tally.last_line} were not "
                  "processed; re-run the same command to resume (finished calls come from the cache).")
    elif read_stats.truncated:
        reason = read_stats.stopped_reason
    return Summary(
        clearapi_version=__version__, input=input, output_dir=str(out), provider=engine.profile.name,
        model=model, started_at=started, finished_at=_now(), completed=stopped is None,
        stopped_reason=reason, counts=tally.counts,
        # what the run did, not what was asked: None ("the provider's default") becomes the value used
        settings={**opts.settings(), "best_answer": plan.best_answer, "demonstrations": plan.demonstrations,
                  "demo_sets": plan.sets(), "per_row": per_row, "format": read_stats.format},
        threshold=threshold, engine=engine.stats, signals=signals,
        outputs={k: v for k, v in OUTPUTS.items() if k != "report"},
    )


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

