"""Cassettes: recorded HTTP exchanges with a real API, replayed by the emulator.

Why: no hosted API is reachable from CI, yet tests must notice when our requests drift from
what a real service was once asked. A cassette stores real exchanges; the emulator started with
``EmulatorConfig(cassette=path)`` answers a request only if an identical one was recorded, and
answers anything else with a ``cassette_miss`` error (HTTP 404), so a changed prompt, parameter or
path fails the test instead of silently passing.

File format (JSON, UTF-8, pretty-printed so diffs are reviewable; ``format_version`` 1)::

    {
      "format_version": 1,
      "recorded_at": "2026-11-25T13:40:00Z",
      "recorded_with": {"server": "llama_cpp.server 0.3.9", "model": "SmolLM2-135M-Instruct",
                        "versions": {"openai": "3.57.0", "clearapi": "0.1.0"}},
      "how": "free text: what was recorded, against what, with which settings",
      "rerecord_command": "python -m clearapi_testing.record ... (a command a key holder can run)",
      "interactions": [
        {"request": {"method": "POST", "path": "/v1/chat/completions", "body": {...}},
         "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": {...}}}
      ]
    }

``request.path`` is the URL path as the server saw it (``/v1/chat/completions`` for OpenAI with
``base_url=.../v1``; ``/v1/messages`` for Anthropic), without the query string. ``body`` is the
parsed JSON body (``null`` for GETs). ``response.body`` is parsed JSON (a non-JSON body may be
stored as a JSON string; the player then sends it verbatim as text).

Matching (`request_key`): method (upper-cased), path, and the canonical JSON of the body (sorted
keys, compact separators) after removing top-level keys that vary between identical calls and do
not change the answer: `VOLATILE_KEYS` (``user``, ``metadata``, ``store``, ``stream_options``).
When several interactions share a key they are replayed in recorded order and the last one repeats
once they are used up, so a recording of k samples of one request answers k calls in turn.

Secrets: `save_cassette` refuses (``ValueError``) to write any header named in `SECRET_HEADERS`,
and scrubs every string in bodies and headers through `clearapi.errors.redact`, so API keys
never land on disk. Recorders should still drop request headers entirely (the format has none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from clearapi.errors import redact
from clearapi.writers import write_json_atomic

__all__ = [
    "FORMAT_VERSION",
    "SECRET_HEADERS",
    "VOLATILE_KEYS",
    "Cassette",
    "CassettePlayer",
    "Interaction",
    "RecordedRequest",
    "RecordedResponse",
    "RecordedWith",
    "canonical_body",
    "load_cassette",
    "request_key",
    "save_cassette",
]

FORMAT_VERSION = 1
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                            "proxy-authorization", "openai-organization", "openai-project"})
VOLATILE_KEYS = frozenset({"user", "metadata", "store", "stream_options"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordedRequest(_Model):
    method: str = "POST"
    path: str
    body: Any = None


class RecordedResponse(_Model):
    status: int = 200
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


class Interaction(_Model):
    request: RecordedRequest
    response: RecordedResponse


class RecordedWith(_Model):
    server: str
    model: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)


class Cassette(_Model):
    format_version: int = FORMAT_VERSION
    recorded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    recorded_with: RecordedWith
    how: str
    rerecord_command: str
    interactions: list[Interaction] = Field(default_factory=list)


def canonical_body(body: Any) -> bytes:
    """Canonical JSON of a request body with `VOLATILE_KEYS` removed at the top level."""
    if isinstance(body, Mapping):
        body = {k: v for k, v in body.items() if k not in VOLATILE_KEYS}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def request_key(method: str, path: str, body: Any) -> str:
    """The matching key: ``"b2:" + blake2b(method, path, canonical body)``."""
    path = path.split("?", 1)[0]
    h = hashlib.blake2b(digest_size=16)
    h.update(method.upper().encode())
    h.update(b"\0")
    h.update(path.encode())
    h.update(b"\0")
    h.update(canonical_body(body))
    return "b2:" + h.hexdigest()


def load_cassette(path: str | Path) -> Cassette:
    """Read and validate a cassette; errors name the file."""
    p = Path(path)
    try:
        data = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read cassette: {exc}") from exc
    if isinstance(data, dict) and data.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"{p}: cassette format_version {data.get('format_version')!r} is not "
                         f"{FORMAT_VERSION}; re-record it")
    try:
        return Cassette.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"{p}: invalid cassette: {exc}") from exc


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def save_cassette(path: str | Path, cassette: Cassette) -> Path:
    """Write a cassette atomically, refusing secret headers and redacting key-looking strings."""
    for i, inter in enumerate(cassette.interactions):
        for name in inter.response.headers:
            if name.lower() in SECRET_HEADERS:
                raise ValueError(f"interaction {i}: refusing to save secret header {name!r}")
    p = Path(path)
    write_json_atomic(p, _scrub(cassette.model_dump(mode="json")))
    return p


class CassettePlayer:
    """Answers requests from one or more cassettes (see module docstring for matching)."""

    def __init__(self, cassettes: Iterable[Cassette | str | Path]) -> None:
        self._by_key: dict[str, list[RecordedResponse]] = {}
        self._used: dict[str, int] = {}
        self.sources: list[str] = []
        for c in cassettes:
            if not isinstance(c, Cassette):
                self.sources.append(str(c))
                c = load_cassette(c)
            for inter in c.interactions:
                rq = inter.request
                self._by_key.setdefault(request_key(rq.method, rq.path, rq.body), []).append(inter.response)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def lookup(self, method: str, path: str, body: Any) -> RecordedResponse | None:
        """The recorded response for this request, or None on a miss."""
        key = request_key(method, path, body)
        answers = self._by_key.get(key)
        if not answers:
            return None
        i = self._used.get(key, 0)
        self._used[key] = i + 1
        return answers[min(i, len(answers) - 1)]

    def rewind(self) -> None:
        """Forget which repeated interactions were used, so replay restarts from the first."""
        self._used.clear()


def player_from(sources: Path | str | Sequence[Path | str] | None) -> CassettePlayer | None:
    """Build a player from the emulator's ``cassette`` setting (one path or several)."""
    if sources is None:
        return None
    if isinstance(sources, str | Path):
        sources = [sources]
    return CassettePlayer(sources)
