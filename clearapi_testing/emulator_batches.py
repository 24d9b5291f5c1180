"""Emulator extension: OpenAI Batches and Anthropic Message Batches.

Why: batch mode (``curate --batch``) must be tested through the real ``openai`` and
``anthropic`` SDKs over real HTTP, including the unhappy paths a 24-hour job has (requests
that expire, lines that error, a client killed mid-poll). Install it with
``Emulator(config, extensions=[install_batches])``, or ``batches_extension(behaviour)`` to
shape and observe it (it installs the Files routes of `emulator_files` when missing, and
keeps batch input/output/error files in that same store)::

    POST /v1/batches                       {input_file_id, endpoint, completion_window, metadata}
    GET  /v1/batches                       list, newest first
    GET  /v1/batches/{batch_id}            advances the batch (see below)
    POST /v1/batches/{batch_id}/cancel
    POST /v1/messages/batches              {requests: [{custom_id, params}]}
    GET  /v1/messages/batches/{batch_id}   advances the batch
    GET  /v1/messages/batches/{batch_id}/results   JSONL, once ended
    POST /v1/messages/batches/{batch_id}/cancel

A batch moves one step every `BatchBehaviour.polls_per_step` polls (OpenAI: validating ->
in_progress -> finalizing -> completed; Anthropic: in_progress -> ended), so a client's polling
loop is exercised without waiting on a clock; ``hold=True`` keeps batches in progress (to kill
a client mid-poll). Each request is answered by the emulator's own chat / messages handler,
so a batch answer is byte-for-byte the online answer (apart from ids). Configurable faults:

* ``expire_every=k``: the batch ends expired, every k-th request unprocessed (OpenAI
  ``batch_expired`` lines in the error file; Anthropic ``expired`` results);
* a request whose JSON contains `ERROR_MARKER` gets an error line (HTTP `error_status`),
  only the first time it is batched when ``error_once`` (so a retry can succeed);
* ``max_requests``: a larger batch fails validation, like an input file over the limit.

`BatchBehaviour` also records what clients did: batch ids created, how many times each
custom_id was submitted (paid) and an event set on every poll.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from clearapi_testing.emulator import (
    ApiError,
    Request,
    Response,
    Router,
    State,
    anthropic_api,
    json_response,
    openai_api,
)
from clearapi_testing.emulator.wire import Provider, anthropic_error_body, error_response, openai_error_body
from clearapi_testing.emulator_files import add_routes, files_store, install_files, list_page, or_404

__all__ = ["ERROR_MARKER", "BatchBehaviour", "batches_extension", "install_batches"]

#: a batched request containing this text gets an error line
ERROR_MARKER = "EMULATOR_BATCH_LINE_ERROR"
_STORE_KEY = "batches"
_OPENAI_STEPS = ("validating", "in_progress", "finalizing", "completed")
_OPENAI_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


@dataclass
class BatchBehaviour:
    """How emulated batches behave, and what clients did with them (read by tests)."""

    polls_per_step: int = 1
    hold: bool = False
    expire_every: int = 0
    error_marker: str = ERROR_MARKER
    error_status: int = 500
    error_once: bool = True
    max_requests: int | None = None
    created: list[str] = field(default_factory=list)
    submitted: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    polled: threading.Event = field(default_factory=threading.Event)
    errored: set[str] = field(default_factory=set)

    @property
    def paid_twice(self) -> list[str]:
        """custom_ids that went into more than one batch."""
        return [cid for cid, n in self.submitted.items() if n > 1]


@dataclass
class _Batch:
    provider: Provider
    body: dict[str, Any]
    lines: list[tuple[str, bytes, dict[str, Any]]]  # (custom_id, raw JSON, request body)
    problem: str | None = None
    polls: int = 0
    step: int = 0
    results: list[tuple[str, str, Any]] | None = None  # (custom_id, kind, payload)


def batches_extension(behaviour: BatchBehaviour | None = None) -> Any:
    """An ``install(router, state)`` for the emulator using `behaviour` (kept by the caller)."""
    chosen = behaviour or BatchBehaviour()

    def install(router: Router, state: State) -> None:
        state.store["batch_behaviour"] = chosen
        install_batches(router, state)

    return install


def _behaviour(state: State) -> BatchBehaviour:
    b = state.store.get("batch_behaviour")
    if not isinstance(b, BatchBehaviour):
        b = BatchBehaviour()
        state.store["batch_behaviour"] = b
    return b


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def install_batches(router: Router, state: State) -> None:
    """Register the Batches routes (and the Files routes if no extension added them yet)."""
    if router.resolve("POST", "/v1/files") is None:
        install_files(router, state)
    files = files_store(state)
    batches: dict[str, _Batch] = state.store.setdefault(_STORE_KEY, {})
    behaviour = _behaviour(state)

    # -- running the requests ---------------------------------------------------------------
    async def answer(ctx: State, provider: Provider, body: dict[str, Any]) -> tuple[int, Any]:
        req = Request(method="POST", path="/v1/chat/completions" if provider == "openai" else "/v1/messages",
                      query={}, headers={}, body=orjson.dumps(body))
        try:
            if provider == "openai":
                resp: Response = await openai_api.chat_completions(ctx, req)
            else:
                resp = await anthropic_api.messages(ctx, req)
        except ApiError as err:
            resp = error_response(provider, err)
        return resp.status, orjson.loads(resp.body)

    async def run(ctx: State, batch: _Batch, expire: bool) -> None:
        """Answer every request (or expire / fail it); results are kept until the batch ends."""
        results: list[tuple[str, str, Any]] = []
        for i, (cid, raw, body) in enumerate(batch.lines, start=1):
            if expire and behaviour.expire_every and i % behaviour.expire_every == 0:
                results.append((cid, "expired", None))
            elif behaviour.error_marker and behaviour.error_marker.encode() in raw and not (
                    behaviour.error_once and cid in behaviour.errored):
                behaviour.errored.add(cid)
                status = behaviour.error_status
                msg = f"The server had an error processing this request ({behaviour.error_marker})."
                payload = (openai_error_body(status, msg) if batch.provider == "openai"
                           else anthropic_error_body(status, msg))
                results.append((cid, "error", (status, payload)))
            else:
                status, payload = await answer(ctx, batch.provider, body)
                results.append((cid, "ok" if status == 200 else "error", (status, payload)))
        batch.results = results

    def advance(batch: _Batch) -> bool:
        """Count a poll; True when the batch should take its next step now."""
        behaviour.polls += 1
        behaviour.polled.set()
        if behaviour.hold:
            return False
        batch.polls += 1
        if batch.polls < behaviour.polls_per_step:
            return False
        batch.polls = 0
        return True

    def new_lines(entries: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bytes, dict[str, Any]]]:
        out = []
        for cid, body in entries:
            behaviour.submitted[cid] += 1
            out.append((cid, orjson.dumps(body), body))
        return out

    # -- OpenAI ------------------------------------------------------------------------------
    def of(provider: str, batch_id: str) -> _Batch | None:
        batch = batches.get(batch_id)
        return batch if batch is not None and batch.provider == provider else None

    def openai_batch_or_404(batch_id: str) -> _Batch:
        return or_404(of("openai", batch_id), f"No batch found with id '{batch_id}'.", param="batch_id")

    async def create_openai(ctx: State, req: Request) -> Response:
        body = req.json_object()
        file_id, endpoint, window = body.get("input_file_id"), body.get("endpoint"), body.get("completion_window")
        if endpoint != "/v1/chat/completions":
            raise ApiError(400, f"Invalid endpoint {endpoint!r}: the emulator batches /v1/chat/completions.",
                           param="endpoint")
        if window != "24h":
            raise ApiError(400, "Invalid 'completion_window': only '24h' is supported.", param="completion_window")
        f = files.get(file_id) if isinstance(file_id, str) else None
        if f is None:
            raise ApiError(404, f"No such File object: {file_id}", param="input_file_id")
        if f.purpose != "batch":
            raise ApiError(400, f"File {file_id} has purpose {f.purpose!r}; batches need 'batch'.",
                           param="input_file_id")
        entries: list[tuple[str, dict[str, Any]]] = []
        problem = None
        seen: set[str] = set()
        for n, raw in enumerate(f.data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                problem = f"Line {n} is not valid JSON."
                break
            cid = obj.get("custom_id") if isinstance(obj, dict) else None
            if not isinstance(cid, str) or cid in seen:
                problem = f"Line {n}: custom_id missing or not unique."
                break
            if obj.get("method") != "POST" or obj.get("url") != endpoint or not isinstance(obj.get("body"), dict):
                problem = f"Line {n}: method must be POST, url must be {endpoint}, body an object."
                break
            seen.add(cid)
            entries.append((cid, obj["body"]))
        limit = behaviour.max_requests or 50_000
        if problem is None and len(entries) > limit:
            problem = f"The batch input file has {len(entries)} requests; the limit is {limit}."
        if problem is None and not entries:
            problem = "The batch input file is empty."
        batch_id = ctx.new_id("batch_")
        now = ctx.now()
        batch = _Batch("openai", {
            "id": batch_id, "object": "batch", "endpoint": endpoint, "errors": None,
            "input_file_id": file_id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 86_400, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(entries), "completed": 0, "failed": 0},
            "metadata": body.get("metadata")}, new_lines(entries) if problem is None else [], problem)
        batches[batch_id] = batch
        behaviour.created.append(batch_id)
        return json_response(batch.body)

    def openai_files(ctx: State, batch: _Batch) -> None:
        """Write the output and error files from the results."""
        ok: list[bytes] = []
        bad: list[bytes] = []
        assert batch.results is not None
        for cid, kind, payload in batch.results:
            rid = ctx.new_id("batch_req_")
            if kind == "expired":
                bad.append(orjson.dumps({"id": rid, "custom_id": cid, "response": None,
                                         "error": {"code": "batch_expired", "message": _EXPIRED_MESSAGE}}))
            elif kind == "cancelled":
                bad.append(orjson.dumps({"id": rid, "custom_id": cid, "response": None,
                                         "error": {"code": "batch_cancelled",
                                                   "message": "This request was cancelled."}}))
            else:
                status, body = payload
                line = orjson.dumps({"id": rid, "custom_id": cid, "error": None,
                                     "response": {"status_code": status, "request_id": f"req_{rid[-12:]}",
                                                  "body": body}})
                (ok if kind == "ok" else bad).append(line)
        counts = batch.body["request_counts"]
        counts.update(completed=len(ok), failed=len(bad))
        if ok:
            batch.body["output_file_id"] = files.put(b"\n".join(ok) + b"\n", "batch_output",
                                                     f"{batch.body['id']}_output.jsonl").id
        if bad:
            batch.body["error_file_id"] = files.put(b"\n".join(bad) + b"\n", "batch_output",
                                                    f"{batch.body['id']}_error.jsonl").id

    async def get_openai(ctx: State, req: Request) -> Response:
        batch = openai_batch_or_404(req.params["batch_id"])
        b = batch.body
        if b["status"] in _OPENAI_TERMINAL or not advance(batch):
            return json_response(b)
        now = ctx.now()
        status = b["status"]
        if status == "validating":
            if batch.problem is not None:
                b.update(status="failed", failed_at=now, errors={"object": "list", "data": [
                    {"code": "invalid_request", "message": batch.problem, "param": None, "line": None}]})
            else:
                b.update(status="in_progress", in_progress_at=now)
        elif status == "in_progress":
            await run(ctx, batch, expire=bool(behaviour.expire_every))
            b.update(status="finalizing", finalizing_at=now)
        elif status == "finalizing":
            openai_files(ctx, batch)
            if behaviour.expire_every:
                b.update(status="expired", expired_at=now)
            else:
                b.update(status="completed", completed_at=now)
        elif status == "cancelling":
            done = batch.results or []
            done_ids = {cid for cid, _, _ in done}
            batch.results = [*done, *((cid, "cancelled", None) for cid, _, _ in batch.lines if cid not in done_ids)]
            openai_files(ctx, batch)
            b.update(status="cancelled", cancelled_at=now)
        return json_response(b)

    async def list_openai(ctx: State, req: Request) -> Response:
        data = [x.body for x in reversed(list(batches.values())) if x.provider == "openai"]
        return list_page(data, first_id=data[0]["id"] if data else None,
                         last_id=data[-1]["id"] if data else None)

    async def cancel_openai(ctx: State, req: Request) -> Response:
        batch = openai_batch_or_404(req.params["batch_id"])
        if batch.body["status"] in _OPENAI_TERMINAL:
            raise ApiError(409, f"Cannot cancel a batch with status '{batch.body['status']}'.")
        batch.body.update(status="cancelling", cancelling_at=ctx.now())
        return json_response(batch.body)

    # -- Anthropic ---------------------------------------------------------------------------
    def anthropic_batch_or_404(batch_id: str) -> _Batch:
        return or_404(of("anthropic", batch_id), f"No message batch with id {batch_id}", type="not_found_error")

    def anthropic_counts(batch: _Batch) -> dict[str, int]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.results is None:
            counts["processing"] = len(batch.lines)
            return counts
        names = {"ok": "succeeded", "error": "errored", "expired": "expired", "cancelled": "canceled"}
        for _, kind, _ in batch.results:
            counts[names[kind]] += 1
        return counts

    async def create_anthropic(ctx: State, req: Request) -> Response:
        body = req.json_object()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: at least one request is required", type="invalid_request_error")
        entries: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, item in enumerate(requests):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not cid or len(cid) > 64 or cid in seen \
                    or not all(c.isalnum() or c in "_-" for c in cid):
                raise ApiError(400, f"requests.{i}.custom_id: must be unique and match ^[a-zA-Z0-9_-]{{1,64}}$",
                               type="invalid_request_error")
            if not isinstance(params, dict):
                raise ApiError(400, f"requests.{i}.params: Field required", type="invalid_request_error")
            seen.add(cid)
            entries.append((cid, params))
        limit = behaviour.max_requests or 100_000
        if len(entries) > limit:
            raise ApiError(413, f"A message batch holds at most {limit} requests; got {len(entries)}.",
                           type="request_too_large")
        batch_id = ctx.new_id("msgbatch_")
        now = float(ctx.now())
        batch = _Batch("anthropic", {
            "id": batch_id, "type": "message_batch", "processing_status": "in_progress",
            "created_at": _iso(now), "expires_at": _iso(now + 86_400), "ended_at": None, "archived_at": None,
            "cancel_initiated_at": None, "results_url": None}, new_lines(entries))
        batches[batch_id] = batch
        behaviour.created.append(batch_id)
        return json_response({**batch.body, "request_counts": anthropic_counts(batch)})

    async def get_anthropic(ctx: State, req: Request) -> Response:
        batch = anthropic_batch_or_404(req.params["batch_id"])
        b = batch.body
        if b["processing_status"] != "ended" and advance(batch):
            batch.step += 1
            canceling = b["processing_status"] == "canceling"
            if canceling or batch.step >= 2:
                if canceling:
                    batch.results = [(cid, "cancelled", None) for cid, _, _ in batch.lines]
                else:
                    await run(ctx, batch, expire=bool(behaviour.expire_every))
                host = req.headers.get("host", "127.0.0.1")
                b.update(processing_status="ended", ended_at=_iso(float(ctx.now())),
                         results_url=f"http://{host}/v1/messages/batches/{b['id']}/results")
        return json_response({**b, "request_counts": anthropic_counts(batch)})

    async def results_anthropic(ctx: State, req: Request) -> Response:
        batch = anthropic_batch_or_404(req.params["batch_id"])
        if batch.results is None or batch.body["processing_status"] != "ended":
            raise ApiError(400, f"Message batch {batch.body['id']} has not ended yet.", type="invalid_request_error")
        out: list[bytes] = []
        for cid, kind, payload in batch.results:
            result: dict[str, Any]
            if kind == "ok":
                result = {"type": "succeeded", "message": payload[1]}
            elif kind == "error":
                result = {"type": "errored", "error": payload[1]}
            else:
                result = {"type": "expired" if kind == "expired" else "canceled"}
            out.append(orjson.dumps({"custom_id": cid, "result": result}))
        return Response(body=b"\n".join(out) + b"\n", content_type="application/binary")

    async def cancel_anthropic(ctx: State, req: Request) -> Response:
        batch = anthropic_batch_or_404(req.params["batch_id"])
        if batch.body["processing_status"] == "in_progress":
            batch.body.update(processing_status="canceling", cancel_initiated_at=_iso(float(ctx.now())))
        return json_response({**batch.body, "request_counts": anthropic_counts(batch)})

    add_routes(router, "openai", [
        ("POST", "/v1/batches", create_openai),
        ("GET", "/v1/batches", list_openai),
        ("GET", "/v1/batches/{batch_id}", get_openai),
        ("POST", "/v1/batches/{batch_id}/cancel", cancel_openai),
    ])
    add_routes(router, "anthropic", [
        ("POST", "/v1/messages/batches", create_anthropic),
        ("GET", "/v1/messages/batches/{batch_id}", get_anthropic),
        ("GET", "/v1/messages/batches/{batch_id}/results", results_anthropic),
        ("POST", "/v1/messages/batches/{batch_id}/cancel", cancel_anthropic),
    ])
