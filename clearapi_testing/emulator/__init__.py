"""A loopback emulator of the OpenAI and Anthropic HTTP APIs, for tests and benchmarks.

No hosted API is reachable from CI, so clearapi's engine, adapters and method are exercised
against this real HTTP/1.1 server on 127.0.0.1, driven by the real ``openai`` and ``anthropic``
SDKs. It answers deterministically, enforces RPM/TPM limits the way the services do, injects
faults, and counts what clients really sent.

Start it::

    async with Emulator(EmulatorConfig(rpm=600, fault_rate=0.1, seed=1)) as emu:
        client = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="x", max_retries=0)
        anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="x", max_retries=0)
        ...
        emu.stats().requests, emu.stats().peak_in_flight, emu.stats().repeated_ok_bodies

    with EmulatorThread(rpm=60) as emu: ...        # own loop in a thread (pytest fixtures use this)
    python -m clearapi_testing.emulator --port 8080 --rpm 600 --latency-ms 20 --fault-rate 0.05

Endpoints: ``POST /v1/chat/completions`` (``n``, ``logprobs``, ``top_logprobs``, ``max_tokens`` /
``max_completion_tokens``, ``seed``, ``temperature``, ``stop``), ``GET /v1/models[/{id}]``,
``POST /v1/messages`` (+ ``/count_tokens``); admin (no auth, limits, faults or counting):
``GET /stats``, ``POST /reset``, ``GET|POST /admin/config``. ``stream=true`` is a clear 400.

Behaviour (`EmulatorConfig`): answers from `responder.DefaultResponder` (or yours); auth when
``api_key`` is set; limits in `limits` (token buckets, ``burst_seconds`` = 1 s by default, headers
on every response); latency fixed / uniform / lognormal; faults in `faults` (random at a rate per
kind or overall, or scripted by request number); cassette replay in `clearapi_testing.cassettes`.
Rude by default like real servers (short ``top_logprobs`` lists, empty completions, stray 500s, all
drawn from the seed and the request's content), ideal with ``polite=True``; ``returns_logprobs=False``
(``--no-logprobs``) answers without logprobs even when asked, as some compatible servers do.
Change any of it while running: ``emu.configure(fault_rate=0)`` or ``POST /admin/config``.
``await emu.wait_requests(n)`` (``EmulatorThread.wait_requests(n)`` in sync code) returns once n
API requests have arrived, so a test can act mid-run without sleeping.

Note: the anthropic 2.x SDK's ``messages.create`` has no ``temperature`` argument; clients send it
with ``extra_body={"temperature": t}`` and the emulator honours it (range [0, 1], as the API).

Extending (Files, fine-tuning jobs, Batches live in their own modules)::

    from clearapi_testing.emulator import ApiError, Request, Response, Router, State, json_response

    def install_files(router: Router, state: State) -> None:
        files: dict[str, dict] = state.store.setdefault("files", {})   # shared in-memory store

        async def create(ctx: State, req: Request) -> Response:
            part = req.multipart()["file"]                            # SDK uploads are multipart
            fid = ctx.new_id("file")                                  # deterministic ids
            files[fid] = {"id": fid, "object": "file", "bytes": len(part.data), "created_at": ctx.now(),
                          "filename": part.filename, "purpose": req.multipart()["purpose"].text}
            return json_response(files[fid])

        async def get(ctx: State, req: Request) -> Response:
            if req.params["file_id"] not in files:
                raise ApiError(404, "No such File object", param="id")  # rendered in the provider's shape
            return json_response(files[req.params["file_id"]])

        router.add("POST", "/v1/files", create, provider="openai")
        router.add("GET", "/v1/files/{file_id}", get, provider="openai")

    Emulator(config, extensions=[install_files])     # or EmulatorThread / emulator_factory(extensions=...)

Every API route gets auth, rate limits (``cost=`` a function returning (requests, tokens); default
one request, no tokens), faults, latency, ``x-request-id`` and counting. ``api=False`` makes an
admin-style route. ``ctx.background(coro)`` runs work (a batch finishing later) that is cancelled
at shutdown; ``ctx.stopping`` is set when the server stops; ``ctx.rng`` is seeded.
"""

from clearapi_testing.emulator.app import App, Extension
from clearapi_testing.emulator.config import ALL_FAULTS, TRANSIENT_FAULTS, EmulatorConfig, FaultKind, Latency
from clearapi_testing.emulator.responder import (
    Completion,
    DefaultResponder,
    Responder,
    ResponderRequest,
    Token,
    count_tokens,
)
from clearapi_testing.emulator.router import Route, Router
from clearapi_testing.emulator.server import Emulator
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.stats import StatsSnapshot
from clearapi_testing.emulator.thread import EmulatorThread
from clearapi_testing.emulator.wire import ApiError, Part, Request, Response, json_response

__all__ = [
    "ALL_FAULTS",
    "TRANSIENT_FAULTS",
    "ApiError",
    "App",
    "Completion",
    "DefaultResponder",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "Extension",
    "FaultKind",
    "Latency",
    "Part",
    "Request",
    "Responder",
    "ResponderRequest",
    "Response",
    "Route",
    "Router",
    "State",
    "StatsSnapshot",
    "Token",
    "count_tokens",
    "json_response",
]
