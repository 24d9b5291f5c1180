"""Emulator extension: OpenAI's Files and Fine-tuning Jobs endpoints.

Why: `clearapi upload` must be tested with the real ``openai`` SDK over real HTTP, and no
hosted API is reachable here. Install it with ``Emulator(config, extensions=[install_files])``
(or ``emulator_factory(extensions=[install_files])``).

Endpoints (shapes follow the SDK's types ``FileObject``, ``FileDeleted``, ``FineTuningJob``,
``FineTuningJobEvent``)::

    POST   /v1/files                        multipart: file, purpose
    GET    /v1/files                        ?purpose=
    GET    /v1/files/{file_id}
    GET    /v1/files/{file_id}/content
    DELETE /v1/files/{file_id}
    POST   /v1/fine_tuning/jobs
    GET    /v1/fine_tuning/jobs
    GET    /v1/fine_tuning/jobs/{job_id}
    GET    /v1/fine_tuning/jobs/{job_id}/events  ?after=&limit=  (newest first, like the API)
    POST   /v1/fine_tuning/jobs/{job_id}/cancel

Jobs advance one status per ``GET`` of the job: validating_files -> queued -> running ->
succeeded, each step logging an event, so a client's polling loop is exercised without
waiting on a clock. A job fails (status ``failed`` with an ``error`` object, and an
error-level event) when its training file has fewer than 10
non-blank lines, or has a line that is not a JSON object (at validation, mirroring
OpenAI's own file check), or when it contains `FAIL_MARKER` (while running). Rate limits and faults (e.g. ``fault_at={1: "429"}`` to rate-limit
the first upload) come from the emulator's shared pipeline.

Other extensions (Batches) share the store: ``files_store(state).put(data, purpose,
filename)`` and ``.get(file_id)``, and the small response helpers `or_404`, `list_page` and
`add_routes`, so every emulated OpenAI resource answers a miss, a listing and a route the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from clearapi_testing.emulator import ApiError, Request, Response, Router, State, json_response
from clearapi_testing.emulator.router import Handler, RouteProvider

__all__ = ["FAIL_MARKER", "FilesStore", "StoredFile", "add_routes", "files_store", "install_files", "list_page",
           "or_404"]

T = TypeVar("T")

#: a training file containing this text makes its job fail (for testing failure paths)
FAIL_MARKER = b"EMULATOR_FAIL_JOB"
PURPOSES = frozenset({"fine-tune", "batch", "assistants", "vision", "user_data", "evals"})
_STEPS = ("validating_files", "queued", "running", "succeeded")
_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
#: a key of its own in the shared store (the emulator's docstring example uses "files" for a dict)
_STORE_KEY = "openai_files_store"


@dataclass
class StoredFile:
    id: str
    data: bytes
    purpose: str
    filename: str
    created_at: int
    status: str = "processed"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": self.status,
                "status_details": None}


class FilesStore:
    """Uploaded files, kept in the emulator's shared in-memory store."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._files: dict[str, StoredFile] = {}

    def put(self, data: bytes, purpose: str, filename: str) -> StoredFile:
        f = StoredFile(id=self._state.new_id("file"), data=data, purpose=purpose, filename=filename,
                       created_at=self._state.now())
        self._files[f.id] = f
        return f

    def get(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def delete(self, file_id: str) -> bool:
        return self._files.pop(file_id, None) is not None

    def list(self, purpose: str | None = None) -> list[StoredFile]:
        return [f for f in self._files.values() if purpose is None or f.purpose == purpose]


def or_404(found: T | None, message: str, *, param: str | None = None, type: str | None = None) -> T:
    """`found`, or the API's 404 with `message` when the lookup came back empty."""
    if found is None:
        raise ApiError(404, message, param=param, type=type)
    return found


def list_page(data: list[Any], **extra: Any) -> Response:
    """A one-page ``{"object": "list"}`` answer, as OpenAI's list endpoints give."""
    return json_response({"object": "list", "data": data, "has_more": False, **extra})


def add_routes(router: Router, provider: RouteProvider, routes: Sequence[tuple[str, str, Handler]]) -> None:
    """Register ``(method, pattern, handler)`` rows for one provider."""
    for method, pattern, handler in routes:
        router.add(method, pattern, handler, provider=provider)


def files_store(state: State) -> FilesStore:
    """The one `FilesStore` of this emulator (created on first use)."""
    store = state.store.get(_STORE_KEY)
    if not isinstance(store, FilesStore):
        store = FilesStore(state)
        state.store[_STORE_KEY] = store
    return store


@dataclass
class _Job:
    body: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0


def _jobs(state: State) -> dict[str, _Job]:
    jobs: dict[str, _Job] = state.store.setdefault("fine_tuning_jobs", {})
    return jobs


def _training_problem(data: bytes) -> str | None:
    """What OpenAI's file validation would say about this file, if anything (simplified)."""
    lines = [ln for ln in data.splitlines() if ln.strip()]
    for i, ln in enumerate(lines, start=1):
        try:
            obj = orjson.loads(ln)
        except orjson.JSONDecodeError:
            return f"Invalid file format. Line {i} is not valid JSON."
        if not isinstance(obj, dict):
            return f"Invalid file format. Line {i} is not a JSON object."
    if len(lines) < 10:
        return f"Training file has {len(lines)} example(s), but must have at least 10 examples"
    return None


def install_files(router: Router, state: State) -> None:
    """Register the Files and Fine-tuning Jobs routes on `router`."""
    store = files_store(state)
    jobs = _jobs(state)

    def file_or_404(file_id: str) -> StoredFile:
        return or_404(store.get(file_id), f"No such File object: {file_id}", param="id")

    async def create_file(ctx: State, req: Request) -> Response:
        parts = req.multipart()
        if "file" not in parts or "purpose" not in parts:
            raise ApiError(400, "Missing required parameter: 'file' and 'purpose' are required.",
                           param="file" if "file" not in parts else "purpose")
        purpose = parts["purpose"].text
        if purpose not in PURPOSES:
            raise ApiError(400, f"'{purpose}' is not one of {sorted(PURPOSES)} - 'purpose'", param="purpose")
        filename = parts["file"].filename or "upload"
        if purpose == "fine-tune" and not filename.endswith(".jsonl"):
            raise ApiError(400, f"Invalid file format for Fine-Tuning API. Must be .jsonl (got {filename!r})",
                           param="file")
        return json_response(store.put(parts["file"].data, purpose, filename).to_json())

    async def list_files(ctx: State, req: Request) -> Response:
        return list_page([f.to_json() for f in store.list(req.query.get("purpose"))])

    async def get_file(ctx: State, req: Request) -> Response:
        return json_response(file_or_404(req.params["file_id"]).to_json())

    async def file_content(ctx: State, req: Request) -> Response:
        return Response(body=file_or_404(req.params["file_id"]).data, content_type="application/octet-stream")

    async def delete_file(ctx: State, req: Request) -> Response:
        file_id = req.params["file_id"]
        file_or_404(file_id)
        store.delete(file_id)
        return json_response({"id": file_id, "object": "file", "deleted": True})

    def event(ctx: State, job: _Job, message: str, level: str = "info") -> None:
        job.events.append({"id": ctx.new_id("ftevent"), "object": "fine_tuning.job.event",
                           "created_at": ctx.now(), "level": level, "message": message, "type": "message"})

    async def create_job(ctx: State, req: Request) -> Response:
        body = req.json_object()
        model, training = body.get("model"), body.get("training_file")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model")
        if not isinstance(training, str):
            raise ApiError(400, "Missing required parameter: 'training_file'.", param="training_file")
        for key in ("training_file", "validation_file"):
            fid = body.get(key)
            if fid is None:
                continue
            f = store.get(fid)
            if f is None:
                raise ApiError(400, f"invalid {key}: {fid}", param=key, code="invalid_request_error")
            if f.purpose != "fine-tune":
                raise ApiError(400, f"File {fid} has purpose {f.purpose!r}, expected 'fine-tune'.", param=key)
        method = body.get("method") or {"type": "supervised", "supervised": {"hyperparameters": {}}}
        mtype = method.get("type", "supervised") if isinstance(method, dict) else "supervised"
        hp_in = ((method.get(mtype) or {}).get("hyperparameters") if isinstance(method, dict) else None) \
            or body.get("hyperparameters") or {}
        n_epochs = hp_in.get("n_epochs", "auto")
        hyper = {"batch_size": hp_in.get("batch_size", "auto"), "n_epochs": n_epochs,
                 "learning_rate_multiplier": hp_in.get("learning_rate_multiplier", "auto")}
        job_id = ctx.new_id("ftjob")
        suffix = body.get("suffix")
        job = _Job(body={
            "id": job_id, "object": "fine_tuning.job", "created_at": ctx.now(), "error": None,
            "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper, "model": model,
            "organization_id": "org-emulator", "result_files": [], "seed": body.get("seed") or 42,
            "status": _STEPS[0], "trained_tokens": None, "training_file": training,
            "validation_file": body.get("validation_file"), "estimated_finish": None, "integrations": [],
            "metadata": body.get("metadata"),
            "method": {"type": mtype, mtype: {"hyperparameters": hyper}},
            "user_provided_suffix": suffix,
        })
        jobs[job_id] = job
        event(ctx, job, f"Created fine-tuning job: {job_id}")
        event(ctx, job, f"Validating training file: {training}")
        return json_response(job.body)

    def advance(ctx: State, job: _Job) -> None:
        status = job.body["status"]
        if status in _TERMINAL:
            return
        nxt = _STEPS[_STEPS.index(status) + 1]
        f = store.get(job.body["training_file"])
        problem: str | None = None
        if f is None:
            problem = "The training file was deleted before the job finished."
        elif status == "validating_files":
            problem = _training_problem(f.data)
        elif nxt == "succeeded" and FAIL_MARKER in f.data:
            problem = "Fine-tuning failed during training (EMULATOR_FAIL_JOB marker in the training file)."
        if problem is not None:
            job.body.update(status="failed", finished_at=ctx.now(),
                            error={"code": "invalid_training_file", "message": problem,
                                   "param": "training_file"})
            event(ctx, job, problem, level="error")
            return
        job.body["status"] = nxt
        if nxt == "queued":
            event(ctx, job, "Files validated, moving job to queued state")
        elif nxt == "running":
            event(ctx, job, "Fine-tuning job started")
            event(ctx, job, "Step 1/10: training loss=1.23")
        else:
            tokens = len(f.data) // 4 if f is not None else 0
            suffix = job.body.get("user_provided_suffix") or "custom"
            job.body.update(finished_at=ctx.now(), trained_tokens=tokens,
                            fine_tuned_model=f"ft:{job.body['model']}:emulator:{suffix}:{job.body['id'][-8:]}",
                            result_files=[store.put(b"step,train_loss\n1,1.23\n", "fine-tune-results",
                                                    "step_metrics.csv").id])
            event(ctx, job, "Step 10/10: training loss=0.42")
            event(ctx, job, "The job has successfully completed")

    def job_or_404(job_id: str) -> _Job:
        return or_404(jobs.get(job_id), f"Could not find fine-tuning job {job_id}", param="fine_tuning_job_id")

    async def get_job(ctx: State, req: Request) -> Response:
        job = job_or_404(req.params["job_id"])
        advance(ctx, job)
        return json_response(job.body)

    async def list_jobs(ctx: State, req: Request) -> Response:
        return list_page([j.body for j in reversed(list(jobs.values()))])

    async def list_events(ctx: State, req: Request) -> Response:
        job = job_or_404(req.params["job_id"])
        newest_first = list(reversed(job.events))
        after = req.query.get("after")
        if after:
            ids = [e["id"] for e in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        limit = int(req.query.get("limit", "20"))
        page = newest_first[:limit]
        return json_response({"object": "list", "data": page, "has_more": len(newest_first) > limit})

    async def cancel_job(ctx: State, req: Request) -> Response:
        job = job_or_404(req.params["job_id"])
        if job.body["status"] in _TERMINAL:
            raise ApiError(400, f"Job {job.body['id']} has already {job.body['status']}.", param="job_id")
        job.body.update(status="cancelled", finished_at=ctx.now())
        event(ctx, job, "Fine-tuning job cancelled")
        return json_response(job.body)

    add_routes(router, "openai", [
        ("POST", "/v1/files", create_file),
        ("GET", "/v1/files", list_files),
        ("GET", "/v1/files/{file_id}", get_file),
        ("GET", "/v1/files/{file_id}/content", file_content),
        ("DELETE", "/v1/files/{file_id}", delete_file),
        ("POST", "/v1/fine_tuning/jobs", create_job),
        ("GET", "/v1/fine_tuning/jobs", list_jobs),
        ("GET", "/v1/fine_tuning/jobs/{job_id}", get_job),
        ("GET", "/v1/fine_tuning/jobs/{job_id}/events", list_events),
        ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", cancel_job),
    ])
