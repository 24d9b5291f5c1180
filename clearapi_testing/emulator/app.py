"""The request pipeline: route -> auth -> rate limits -> fault -> latency -> answer -> headers.

Separate from the socket code so the order of checks, which decides what a client observes,
reads top to bottom in one function (`App.handle`). Real 429s are decided before faults and cost
nothing; a request that passes the limits is charged even if a fault then fails it, as a real
service charges a request that later errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from clearapi_testing.cassettes import CassettePlayer, player_from, request_key
from clearapi_testing.emulator import admin, anthropic_api, openai_api
from clearapi_testing.emulator.config import EmulatorConfig, Latency
from clearapi_testing.emulator.faults import FaultPlan, fault_error
from clearapi_testing.emulator.limits import Clock, RateLimits, retry_after_headers
from clearapi_testing.emulator.responder import DefaultResponder, Responder
from clearapi_testing.emulator.router import Route, Router
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.stats import body_digest
from clearapi_testing.emulator.wire import ApiError, Provider, Request, Response, error_response

__all__ = ["App", "Extension", "draw_latency_ms"]

log = logging.getLogger("clearapi_testing.emulator")

#: ``install(router, state)``: how extensions add routes (see the package docstring)
Extension = Callable[[Router, State], None]

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "date"}


class App:
    def __init__(self, config: EmulatorConfig, *, responder: Responder | None = None,
                 extensions: Iterable[Extension] = (), clock: Clock = time.monotonic) -> None:
        self._custom_responder = responder is not None
        self.state = State(config, responder or self._default_responder(config), clock)
        self.router = Router()
        self._clock = clock
        self._latency_rng = random.Random(f"{config.seed}:latency")
        self._apply(config, None)
        admin.install(self.router, self)
        for install in (openai_api.install, anthropic_api.install, *extensions):
            install(self.router, self.state)

    @property
    def config(self) -> EmulatorConfig:
        return self.state.config

    @staticmethod
    def _default_responder(config: EmulatorConfig) -> Responder:
        return DefaultResponder(config.answers, config.mc_max_tokens, seed=config.seed,
                                exact_top_logprobs=config.exact_top_logprobs, empty_rate=config.empty_rate)

    def _apply(self, new: EmulatorConfig, old: EmulatorConfig | None) -> None:
        def changed(*names: str) -> bool:
            return old is None or any(getattr(old, n) != getattr(new, n) for n in names)

        self.state.config = new
        if changed("rpm", "tpm", "burst_seconds"):
            self.limits = RateLimits(new.rpm, new.tpm, new.burst_seconds, self._clock)
        if changed("fault_rate", "fault_kinds", "fault_rates", "fault_script", "fault_at", "seed",
                   "stray_500_rate"):
            self.faults = FaultPlan(new)
        if changed("cassette"):
            self.player: CassettePlayer | None = player_from(new.cassette)
        if not self._custom_responder and changed("answers", "mc_max_tokens", "seed",
                                                             "exact_top_logprobs", "empty_rate"):
            self.state.responder = self._default_responder(new)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Validate and apply new settings to the running emulator (unknown keys raise)."""
        merged = self.config.model_dump()
        merged.update(changes)
        new = EmulatorConfig.model_validate(merged)
        if new.host != self.config.host or new.port != self.config.port:
            raise ValueError("host and port cannot change while running")
        self._apply(new, self.config)
        return new

    def reset(self) -> None:
        """Zero the counters and restart request numbering, fault scripts, buckets and cassettes."""
        self.state.stats.reset()
        self.faults = FaultPlan(self.config)
        self.limits = RateLimits(self.config.rpm, self.config.tpm, self.config.burst_seconds, self._clock)
        if self.player is not None:
            self.player.rewind()

    # -- the pipeline ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        resolved = self.router.resolve(request.method, request.path)
        route: Route | None = None
        if resolved is not None:
            route, request.params = resolved
            if not route.api:
                try:
                    return await route.handler(self.state, request)
                except ApiError as err:
                    return error_response("openai", err)
        provider = self._provider(route, request)
        request.number = self.state.stats.begin(request.path)
        try:
            resp = await self._api(request, route, provider)
        except ApiError as err:
            resp = error_response(provider, err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler bug must not kill the connection silently
            log.exception("emulator handler failed")
            resp = error_response(provider, ApiError(500, f"emulator handler failed: {type(exc).__name__}"))
        if self.limits.active and self.config.ratelimit_headers:
            resp.headers += (self.limits.anthropic_headers() if provider == "anthropic"
                             else self.limits.openai_headers())
        rid = f"req_{request.number:012x}"
        resp.headers.append(("request-id", rid) if provider == "anthropic" else ("x-request-id", rid))
        return resp

    def done(self, request: Request, response: Response, sent: bool) -> None:
        """Account for an API request once its answer is sent (or the connection dropped)."""
        if not request.number:
            return
        digest = None
        if request.body and self.config.track_bodies:
            parsed: Any = None
            if request.body[:1] in (b"{", b"["):
                # canonical JSON, so a body rejected before parsing matches its later retry
                with contextlib.suppress(ApiError):
                    parsed = request.json()
            digest = body_digest(request.method, request.path, request.body, parsed)
        self.state.stats.end(response.status if sent else None, digest, response.tokens,
                             ok=sent and response.status == 200 and not response.truncated)

    @staticmethod
    def _provider(route: Route | None, request: Request) -> Provider:
        if route is not None and route.provider != "auto":
            return route.provider
        return "anthropic" if "anthropic-version" in request.headers else "openai"

    async def _api(self, request: Request, route: Route | None, provider: Provider) -> Response:
        cfg = self.config
        if cfg.api_key is not None:
            self._authenticate(request, provider, cfg.api_key)
        if provider == "anthropic" and cfg.require_anthropic_version and route is not None \
                and "anthropic-version" not in request.headers:
            raise ApiError(400, "anthropic-version: header is required", type="invalid_request_error")
        if route is None and self.player is None:
            allowed = self.router.allowed_methods(request.path)
            if allowed:
                raise ApiError(405, f"Method {request.method} not allowed for {request.path} "
                               f"(allowed: {', '.join(allowed)}).", type="invalid_request_error")
            raise ApiError(404, f"Unknown request URL: {request.method} {request.path}.",
                           type="invalid_request_error" if provider == "openai" else "not_found_error",
                           code="unknown_url")
        cost = route.cost(self.state, request) if route is not None else (1, 0)
        denied = self.limits.acquire(*cost)
        if denied is not None:
            self.state.stats.rate_limited += 1
            raise self._rate_limited(request, provider, cost, *denied)
        fault = self.faults.pick(request.number, provider, request.body)
        if fault is not None:
            self.state.stats.faults[fault] += 1
        await self._sleep_latency()
        if fault is not None:
            err = fault_error(fault, provider, self._model_of(request))
            if err is not None:
                raise err
            if fault in ("reset", "hang"):
                return Response(status=0, action=fault)
        resp = await self._answer(request, route, provider)
        if fault == "truncated":
            resp.body = resp.body[: max(1, len(resp.body) // 2)]
            resp.tokens = (0, 0)
            resp.truncated = True
        return resp

    async def _answer(self, request: Request, route: Route | None, provider: Provider) -> Response:
        if self.player is None:
            assert route is not None
            return await route.handler(self.state, request)
        body = request.json()
        recorded = self.player.lookup(request.method, request.path, body)
        if recorded is None:
            self.state.stats.cassette_misses += 1
            key = request_key(request.method, request.path, body)
            raise ApiError(404, f"cassette_miss: no recorded interaction matches {request.method} "
                           f"{request.path} (key {key}); the request drifted from the cassette, or the "
                           "cassette needs re-recording.",
                           type="invalid_request_error" if provider == "openai" else "not_found_error",
                           code="cassette_miss")
        self.state.stats.cassette_hits += 1
        headers = [(k, v) for k, v in recorded.headers.items() if k.lower() not in _HOP_HEADERS
                   and k.lower() != "content-type"]
        ctype = recorded.headers.get("content-type") or recorded.headers.get("Content-Type")
        if isinstance(recorded.body, str) and not (ctype or "").startswith("application/json"):
            return Response(recorded.status, recorded.body.encode(), headers, ctype or "text/plain")
        return Response(recorded.status, orjson.dumps(recorded.body), headers, "application/json")

    @staticmethod
    def _model_of(request: Request) -> str:
        try:
            body = request.json()
        except ApiError:
            return "unknown"
        return str(body.get("model", "unknown")) if isinstance(body, dict) else "unknown"

    @staticmethod
    def _authenticate(request: Request, provider: Provider, key: str) -> None:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
        if provider == "anthropic":
            given = request.headers.get("x-api-key", given)
        if given is not None and hmac.compare_digest(given.encode(), key.encode()):
            return
        if provider == "anthropic":
            raise ApiError(401, "invalid x-api-key", type="authentication_error")
        if given is None:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                           "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                           type="invalid_request_error", code="missing_api_key")
        raise ApiError(401, "Incorrect API key provided. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.",
                       type="invalid_request_error", code="invalid_api_key")

    def _rate_limited(self, request: Request, provider: Provider, cost: tuple[int, int],
                      wait: float, which: str) -> ApiError:
        headers = retry_after_headers(wait)
        cfg = self.config
        if which == "too_large":
            msg = (f"Request too large: tokens per min (TPM) limit {int(cfg.tpm or 0)}, requested {cost[1]}. "
                   "Reduce the prompt or max_tokens.")
        else:
            limit = int((cfg.rpm if which == "requests" else cfg.tpm) or 0)
            unit = "requests per min (RPM)" if which == "requests" else "tokens per min (TPM)"
            asked = cost[0] if which == "requests" else cost[1]
            msg = (f"Rate limit reached for {self._model_of(request)} on {unit}: Limit {limit}, "
                   f"Requested {asked}. Please try again in {max(1, math.ceil(wait * 1000))}ms.")
        if provider == "anthropic":
            return ApiError(429, msg, type="rate_limit_error", headers=headers)
        return ApiError(429, msg, type="tokens" if which != "requests" else "requests",
                        code="rate_limit_exceeded", headers=headers)

    async def _sleep_latency(self) -> None:
        ms = draw_latency_ms(self.config.latency, self._latency_rng)
        if ms > 0:
            await asyncio.sleep(ms / 1000.0)


def draw_latency_ms(lat: Latency, rng: random.Random) -> float:
    """One service time in ms from the configured distribution."""
    if lat.kind == "uniform":
        return rng.uniform(lat.ms, lat.max_ms if lat.max_ms is not None else lat.ms)
    if lat.kind == "lognormal":
        return lat.ms * math.exp(rng.gauss(0.0, lat.sigma)) if lat.ms > 0 else 0.0
    return lat.ms
