"""What the two SDK-backed adapters (OpenAI chat, Anthropic Messages) hold in common.

Both point one SDK client at a profile's base URL with an explicit key, SDK retries off
(the engine owns retrying) and a connection pool sized to the run's concurrency, and both
close that client once. Keeping this in one base class means the safety rules (never let
the SDK fall back to an environment key, never retry behind the engine's back) are written
once; each subclass only builds its own SDK's client.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import httpx2

from clearapi.errors import ConfigError, redact
from clearapi.profiles import Profile, resolve_base_url

__all__ = ["NO_KEY", "HostedAdapter", "pool_limits"]

#: Sent when a server needs no key: an explicit placeholder, so the SDK never reads one from the environment.
NO_KEY = "no-key-required"


class _Closable(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Closable)


def pool_limits(max_concurrency: int) -> httpx2.Limits:
    """A pool that holds as many live connections as the run has calls in flight."""
    return httpx2.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)


class HostedAdapter(Generic[ClientT]):
    """Base of an `Adapter` over a provider SDK's async client (set as ``_client`` by the subclass)."""

    _client: ClientT

    def __init__(self, profile: Profile, *, model: str | None, base_url: str | None,
                 api_key: str | None) -> None:
        url = resolve_base_url(profile, base_url)[0]
        if not url:
            raise ConfigError(f"provider {profile.name!r} has no base_url; pass --base-url")
        self._profile = profile
        self._model = model or profile.default_model
        self._base_url = url
        self._key = api_key
        self._closed = False

    @property
    def model(self) -> str:
        return self._model

    @property
    def profile(self) -> Profile:
        return self._profile

    def redact(self, text: str) -> str:
        """`text` without this adapter's key, for errors built outside the SDK's (batch lines)."""
        return redact(text, self._key)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()
