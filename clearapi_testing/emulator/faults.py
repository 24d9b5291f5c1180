"""Injected faults: which request gets which failure, and what each failure looks like on the wire.

Choice, in order of precedence (all reproducible for a given `seed`):
0. ``fault_prompts``: a map from a substring of the request's message texts to a kind (every
   request that contains it, so one row's calls fail however often they are retried);
1. ``fault_at``: a map from 1-based API request number (since start or ``/reset``) to a kind;
2. ``fault_script``: ``[("500", 3), ("ok", 2), ("reset", 1)]`` applies to the next API requests in order;
3. ``fault_rates``: an independent probability per kind;
4. ``fault_rate``: a total probability, the kind drawn uniformly from ``fault_kinds`` (kinds that do
   not exist for the route's provider are left out: ``529`` is Anthropic's, ``insufficient_quota``
   OpenAI's);
5. ``stray_500_rate`` (on by default, off with ``polite``): a plain 500, drawn from the seed, the
   request body and how many stray 500s that body already got, never from arrival order: a run
   with injected faults on top meets the same stray 500s as a clean run (a retry draws anew).

Kinds: ``500``, ``503``, ``429`` (spurious, with ``retry-after``), ``insufficient_quota`` (OpenAI:
429 with type and code ``insufficient_quota``; Anthropic: its real 400 "credit balance is too low"),
``401``, ``529`` (overloaded), ``reset`` (the TCP connection is aborted with RST before any byte
of the answer), ``truncated`` (a 200 whose JSON body is cut in half, with a matching
Content-Length), ``hang`` (nothing is sent until the client gives up, `hang_seconds` pass or the
server stops).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator
from typing import Any

import orjson

from clearapi_testing.emulator.config import EmulatorConfig, FaultKind
from clearapi_testing.emulator.limits import retry_after_headers
from clearapi_testing.emulator.wire import ApiError, Provider

__all__ = ["FaultPlan", "fault_error", "message_text"]

#: how long an injected 429 asks the client to wait
SPURIOUS_RETRY_AFTER_S = 0.2


def _applies(kind: FaultKind, provider: Provider) -> bool:
    if kind == "529":
        return provider == "anthropic"
    if kind == "insufficient_quota":
        return provider == "openai"
    return True


class FaultPlan:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}:faults")
        #: stray 500s each body already got (only bodies that got one: a few percent)
        self._strays: dict[bytes, int] = {}
        self._segment = 0
        self._used = 0

    def pick(self, number: int, provider: Provider, body: bytes = b"") -> FaultKind | None:
        cfg = self.config
        if cfg.fault_prompts:
            text = message_text(body)
            for needle, matched in cfg.fault_prompts.items():
                if needle in text:
                    return matched
        at = cfg.fault_at.get(number)
        if at is not None:
            return at
        script = cfg.fault_script
        while self._segment < len(script):
            kind, count = script[self._segment]
            if self._used < count:
                self._used += 1
                return None if kind == "ok" else kind
            self._segment += 1
            self._used = 0
        for kind, rate in cfg.fault_rates.items():
            if rate and self.rng.random() < rate:
                return kind
        if cfg.fault_rate and self.rng.random() < cfg.fault_rate:
            pool = [k for k in cfg.fault_kinds if _applies(k, provider)]
            if pool:
                return self.rng.choice(pool)
        if cfg.stray_500_rate and self._stray(body):
            return "500"
        return None

    def _stray(self, body: bytes) -> bool:
        key = hashlib.blake2b(body, digest_size=12, key=str(self.config.seed).encode()).digest()
        got = self._strays.get(key, 0)
        draw = hashlib.blake2b(key + got.to_bytes(4, "little"), digest_size=8).digest()
        if int.from_bytes(draw, "little") / 2**64 >= self.config.stray_500_rate:
            return False
        self._strays[key] = got + 1
        return True


def message_text(body: bytes) -> str:
    """Every text of a chat request's ``messages`` (and Anthropic's ``system``), one per line."""
    data: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(body) if body else None
    if not isinstance(data, dict):
        return ""
    return "\n".join(_strings([data.get("system"), data.get("messages")]))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def fault_error(kind: FaultKind, provider: Provider, model: str) -> ApiError | None:
    """The error an error-kind fault answers with (None for reset/truncated/hang)."""
    anthropic = provider == "anthropic"
    if kind == "500":
        return ApiError(500, "Internal server error (injected by the clearapi emulator)."
                        if anthropic else "The server had an error while processing your request. Sorry about that!")
    if kind == "503":
        return ApiError(503, "Service unavailable (injected by the clearapi emulator).")
    if kind == "529":
        return ApiError(529, "Overloaded", type="overloaded_error")
    if kind == "429":
        headers = retry_after_headers(SPURIOUS_RETRY_AFTER_S)
        if anthropic:
            return ApiError(429, "Rate limited (injected by the clearapi emulator).", type="rate_limit_error",
                            headers=headers)
        return ApiError(429, f"Rate limit reached for {model} (injected by the clearapi emulator). "
                        f"Please try again in {int(SPURIOUS_RETRY_AFTER_S * 1000)}ms.",
                        type="requests", code="rate_limit_exceeded", headers=headers)
    if kind == "insufficient_quota":
        if anthropic:
            return ApiError(400, "Your credit balance is too low to access the Anthropic API. "
                            "Please go to Plans & Billing to upgrade or purchase credits.",
                            type="invalid_request_error")
        return ApiError(429, "You exceeded your current quota, please check your plan and billing details.",
                        type="insufficient_quota", code="insufficient_quota")
    if kind == "401":
        if anthropic:
            return ApiError(401, "invalid x-api-key", type="authentication_error")
        return ApiError(401, "Incorrect API key provided. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.",
                        type="invalid_request_error", code="invalid_api_key")
    return None
