"""Counters the tests and benchmarks read back: what the client really sent.

Repeated identical bodies are the emulator's way to prove "a resumed run repeats no completed
request": every API request body is hashed (method, path, canonical JSON) into an 8-byte digest;
`repeated_bodies` counts requests whose body was seen before (retries included), while
`repeated_ok_bodies` counts requests whose body had already been answered with a complete 200
before (work paid twice; a truncated 200 does not count as answered). Digests, not bodies, are kept, so a million requests cost tens of MB, not gigabytes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from clearapi_testing.cassettes import canonical_body

__all__ = ["Stats", "StatsSnapshot", "body_digest"]


class TokenTotals(BaseModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


class StatsSnapshot(BaseModel):
    """A copy of the counters (the ``GET /stats`` JSON)."""

    requests: int = 0
    by_path: dict[str, int] = Field(default_factory=dict)
    by_status: dict[str, int] = Field(default_factory=dict)
    #: 429s produced by the RPM/TPM limits (injected "429" faults are under `faults`)
    rate_limited: int = 0
    faults: dict[str, int] = Field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    connections: int = 0
    unique_bodies: int = 0
    repeated_bodies: int = 0
    max_repeats: int = 0
    repeated_ok_bodies: int = 0
    max_ok_repeats: int = 0
    cassette_hits: int = 0
    cassette_misses: int = 0
    tokens: TokenTotals = Field(default_factory=TokenTotals)

    def status(self, code: int) -> int:
        return self.by_status.get(str(code), 0)


def body_digest(method: str, path: str, body: bytes, parsed: Any = None) -> int:
    """8-byte digest of a request; a parsed JSON body is canonicalised so key order does not matter."""
    h = hashlib.blake2b(digest_size=8)
    h.update(method.encode())
    h.update(b"\0")
    h.update(path.encode())
    h.update(b"\0")
    h.update(canonical_body(parsed) if parsed is not None else body)
    return int.from_bytes(h.digest(), "little")


class Stats:
    """Mutable counters, touched only from the emulator's event loop."""

    def __init__(self) -> None:
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.reset()

    async def wait_requests(self, count: int) -> None:
        """Return once `count` API requests have arrived (since the last reset); no polling."""
        if self.requests >= count:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, fut))
        await fut

    def reset(self) -> None:
        self.requests = 0
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        # requests still being served survive a reset, so the gauge never goes wrong
        self.in_flight: int = getattr(self, "in_flight", 0)
        self.peak_in_flight = self.in_flight
        self.connections = 0
        self._seen: dict[int, int] = {}
        self._ok_seen: dict[int, int] = {}
        self.repeated_bodies = 0
        self.max_repeats = 0
        self.repeated_ok_bodies = 0
        self.max_ok_repeats = 0
        self.cassette_hits = 0
        self.cassette_misses = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def begin(self, path: str) -> int:
        """Count an API request arriving; returns its 1-based number."""
        self.requests += 1
        self.by_path[path] += 1
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        if self._waiters:
            still = []
            for want, fut in self._waiters:
                if fut.done():
                    continue
                if self.requests >= want:
                    fut.set_result(None)
                else:
                    still.append((want, fut))
            self._waiters = still
        return self.requests

    def end(self, status: int | None, digest: int | None, tokens: tuple[int, int], ok: bool = False) -> None:
        """Count a finished API request (`status` None: reset or hang, nothing sent; `ok`: a usable 200)."""
        self.in_flight = max(0, self.in_flight - 1)
        if status is not None:
            self.by_status[status] += 1
        self.prompt_tokens += tokens[0]
        self.completion_tokens += tokens[1]
        if digest is None:
            return
        seen = self._seen.get(digest, 0)
        if seen:
            self.repeated_bodies += 1
            self.max_repeats = max(self.max_repeats, seen)
        self._seen[digest] = seen + 1
        if ok:
            ok_seen = self._ok_seen.get(digest, 0)
            if ok_seen:
                self.repeated_ok_bodies += 1
                self.max_ok_repeats = max(self.max_ok_repeats, ok_seen)
            self._ok_seen[digest] = ok_seen + 1

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            requests=self.requests,
            by_path=dict(self.by_path),
            by_status={str(k): v for k, v in sorted(self.by_status.items())},
            rate_limited=self.rate_limited,
            faults=dict(self.faults),
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            connections=self.connections,
            unique_bodies=len(self._seen),
            repeated_bodies=self.repeated_bodies,
            max_repeats=self.max_repeats,
            repeated_ok_bodies=self.repeated_ok_bodies,
            max_ok_repeats=self.max_ok_repeats,
            cassette_hits=self.cassette_hits,
            cassette_misses=self.cassette_misses,
            tokens=TokenTotals(prompt=self.prompt_tokens, completion=self.completion_tokens,
                               total=self.prompt_tokens + self.completion_tokens),
        )
