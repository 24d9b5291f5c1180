"""Upload a fine-tuning file to OpenAI, create the job, and watch it.

Why validate first: a hosted job rejects a bad file only after an upload and minutes of
queueing; `submit_job` runs `validate_file` on every file before any request is made and
refuses (`ValidationFailed`) unless `force=True`.

Retries use the engine's policy (`clearapi.engine.retry`: `RateLimited` and
`TransientError`, `Retry-After` honoured up to a cap) around each SDK call, with SDK
retries off. Job creation is not idempotent, so it is retried only after a 429 (the
request was refused, not half-done); uploads and reads are retried on any transient error.
SDK exceptions are translated by the OpenAI adapter's `map_error`, the one place that
knows them.

Watching a remote job polls `jobs.retrieve` and `jobs.list_events` with a sleep between
polls: waiting on a remote service is what the sleep is for (there is no push channel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from openai import AsyncOpenAI
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from pydantic import BaseModel, ConfigDict

from clearapi.engine.retry import retry_policy
from clearapi.errors import ClearAPIError, ConfigError, FatalError, TransientError
from clearapi.finetune.validate import ValidationReport, validate_file

__all__ = [
    "METHODS",
    "TERMINAL_STATUSES",
    "JobSubmission",
    "ValidationFailed",
    "job_error_message",
    "submit_job",
    "watch_job",
]

T = TypeVar("T")
MapError = Callable[[BaseException], ClearAPIError]
Sleep = Callable[[float], Awaitable[None]]

#: which OpenAI fine-tuning method a validated target is uploaded as
METHODS: dict[str, Literal["supervised", "dpo"]] = {"openai": "supervised", "openai-dpo": "dpo"}
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class ValidationFailed(FatalError):
    """A file would be rejected by the service; nothing was uploaded."""

    def __init__(self, reports: list[ValidationReport]) -> None:
        bad = [r for r in reports if not r.ok]
        super().__init__("; ".join(f"{r.file}: {r.errors} validation errors" for r in bad)
                         + " (nothing uploaded; fix the file or pass --force)")
        self.reports = reports


class JobSubmission(BaseModel):
    """What `submit_job` created."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: str
    model: str
    method: str
    training_file: str
    validation_file: str | None = None
    reports: list[ValidationReport]
    forced: bool = False


async def _retrying(call: Callable[[], Awaitable[T]], *, map_error: MapError, max_attempts: int,
                    retry_after_cap: float, sleep: Sleep, only_rate_limits: bool = False,
                    on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    async def translated() -> T:
        try:
            return await call()
        except ClearAPIError:
            raise
        except Exception as exc:
            mapped = map_error(exc)
            if only_rate_limits and isinstance(mapped, TransientError):
                # not idempotent: a 5xx may have created the job; let the user look first
                raise FatalError(f"{mapped.message} (not retried: the request may have been applied; "
                                 "check `fine_tuning.jobs.list` before trying again)") from exc
            raise mapped from exc

    policy = retry_policy(max_attempts=max_attempts, retry_after_cap=retry_after_cap, sleep=sleep,
                          on_retry=on_retry or (lambda exc, wait: None))
    result: T = await policy(translated)
    return result


async def submit_job(client: AsyncOpenAI, training: str | Path, *, map_error: MapError,
                     target: str = "openai", model: str | None = None,
                     validation: str | Path | None = None, suffix: str | None = None,
                     epochs: int | None = None, force: bool = False, max_attempts: int = 8,
                     retry_after_cap: float = 60.0, sleep: Sleep = asyncio.sleep,
                     on_retry: Callable[[BaseException, float], None] | None = None) -> JobSubmission:
    """Validate, upload (``purpose="fine-tune"``) and create the fine-tuning job."""
    if target not in METHODS:
        raise ConfigError(f"upload supports targets {', '.join(METHODS)}, not {target!r}")
    paths = [Path(training)] + ([Path(validation)] if validation is not None else [])
    # reading and checking a large file is blocking work: keep it off the event loop
    reports = [await asyncio.to_thread(validate_file, p, target, model=model, epochs=epochs,
                                       validation_set=i > 0) for i, p in enumerate(paths)]
    if any(not r.ok for r in reports) and not force:
        raise ValidationFailed(reports)
    model_name = reports[0].model
    kw: dict[str, Any] = {"map_error": map_error, "max_attempts": max_attempts,
                          "retry_after_cap": retry_after_cap, "sleep": sleep, "on_retry": on_retry}

    async def upload(path: Path) -> str:
        data = await asyncio.to_thread(path.read_bytes)

        async def call() -> str:
            obj = await client.files.create(file=(path.name, data), purpose="fine-tune")
            return obj.id
        return await _retrying(call, **kw)

    training_id = await upload(paths[0])
    validation_id = await upload(paths[1]) if len(paths) > 1 else None
    method_type = METHODS[target]
    hyper: dict[str, Any] = {"n_epochs": epochs} if epochs is not None else {}
    method: dict[str, Any] = {"type": method_type, method_type: {"hyperparameters": hyper}}

    async def create() -> FineTuningJob:
        extra: dict[str, Any] = {}
        if validation_id is not None:
            extra["validation_file"] = validation_id
        if suffix is not None:
            extra["suffix"] = suffix
        return await client.fine_tuning.jobs.create(model=model_name, training_file=training_id,
                                                    method=method,  # type: ignore[arg-type]
                                                    **extra)

    job = await _retrying(create, only_rate_limits=True, **kw)
    return JobSubmission(job_id=job.id, status=job.status, model=model_name, method=method_type,
                         training_file=training_id, validation_file=validation_id, reports=reports,
                         forced=force and any(not r.ok for r in reports))


async def watch_job(client: AsyncOpenAI, job_id: str, *, map_error: MapError, poll_interval: float = 15.0,
                    on_event: Callable[[FineTuningJobEvent], None] | None = None,
                    on_status: Callable[[FineTuningJob], None] | None = None,
                    max_attempts: int = 8, retry_after_cap: float = 60.0,
                    sleep: Sleep = asyncio.sleep) -> FineTuningJob:
    """Poll until the job is succeeded, failed or cancelled; report new events oldest first."""
    kw: dict[str, Any] = {"map_error": map_error, "max_attempts": max_attempts,
                          "retry_after_cap": retry_after_cap, "sleep": sleep}
    seen: set[str] = set()
    last_status: str | None = None
    while True:
        async def retrieve() -> FineTuningJob:
            return await client.fine_tuning.jobs.retrieve(job_id)

        async def events() -> list[FineTuningJobEvent]:
            page = await client.fine_tuning.jobs.list_events(job_id, limit=50)
            return list(page.data)

        job = await _retrying(retrieve, **kw)
        for ev in reversed(await _retrying(events, **kw)):  # the API lists newest first
            if ev.id not in seen:
                seen.add(ev.id)
                if on_event:
                    on_event(ev)
        if job.status != last_status:
            last_status = job.status
            if on_status:
                on_status(job)
        if job.status in TERMINAL_STATUSES:
            return job
        await sleep(poll_interval)


def job_error_message(job: FineTuningJob) -> str:
    """One line saying why a job did not succeed."""
    if job.status == "cancelled":
        return f"fine-tuning job {job.id} was cancelled"
    err = job.error
    detail = f"{err.message} ({err.code}{', param ' + err.param if err.param else ''})" if err else "no reason given"
    return f"fine-tuning job {job.id} failed: {detail}"
