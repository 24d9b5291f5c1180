"""The emulator's settings, one pydantic model that is also the ``/admin/config`` JSON.

Everything that shapes behaviour lives here so a test, a benchmark and the CLI describe an
emulator the same way, and a running one can be re-shaped (``emu.configure(fault_rate=0)`` or
``POST /admin/config``) without restarting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ALL_FAULTS", "TRANSIENT_FAULTS", "EmulatorConfig", "FaultKind", "Latency"]

FaultKind = Literal["500", "503", "429", "insufficient_quota", "reset", "truncated", "hang", "401", "529"]
#: kinds a well-behaved client should retry through; the default pool for `fault_rate`
TRANSIENT_FAULTS: tuple[FaultKind, ...] = ("500", "503", "429", "reset", "truncated", "529")
ALL_FAULTS: tuple[FaultKind, ...] = ("500", "503", "429", "insufficient_quota", "reset", "truncated",
                                     "hang", "401", "529")


class Latency(BaseModel):
    """Service time added to every API request that passes the rate limits.

    ``fixed``: `ms`; ``uniform``: uniform(`ms`, `max_ms`); ``lognormal``: median `ms`, shape `sigma`.
    Drawn from an RNG seeded by the emulator's `seed`, so runs repeat.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    ms: float = Field(0.0, ge=0)
    max_ms: float | None = Field(None, ge=0)
    sigma: float = Field(0.5, ge=0)


class EmulatorConfig(BaseModel):
    """How the emulator behaves. See the package docstring for the meaning of each group."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    #: when set, requests must carry it (``Authorization: Bearer`` / ``x-api-key``); never echoed
    api_key: str | None = Field(None, repr=False)
    seed: int = 0

    # rate limits: token buckets refilled continuously at limit/60 per second, holding at most
    # `burst_seconds` worth (never less than one request / one request's tokens)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    burst_seconds: float = Field(1.0, gt=0)
    #: tokens a request without max_tokens is charged for its completion, per choice
    default_max_tokens: int = Field(256, ge=1)
    #: prompt + max_tokens beyond this is the real services' 400 (``context_length_exceeded`` /
    #: "prompt is too long"): a dataset row too long for the model is refused, not answered
    context_window: int = Field(128_000, ge=1)

    latency: Latency = Field(default_factory=Latency)

    #: send ``x-ratelimit-*`` / ``anthropic-ratelimit-*`` headers while a limit is set; off by
    #: default, as most servers that are not OpenAI's or Anthropic's own (vLLM, llama.cpp,
    #: gateways) send none; 429s still carry ``retry-after``
    ratelimit_headers: bool = False

    # faults: fault_prompts (by text) > fault_at (by request number) > fault_script (in order) >
    # fault_rates > fault_rate
    #: total chance that a request fails with one of `fault_kinds`
    fault_rate: float = Field(0.0, ge=0, le=1)
    fault_kinds: list[FaultKind] = Field(default_factory=lambda: list(TRANSIENT_FAULTS))
    fault_rates: dict[FaultKind, float] = Field(default_factory=dict)
    #: share of requests answered with a retryable 500 whatever else is set, as real servers now and
    #: then do; drawn from the seed and the request's content (and its earlier stray 500s), never
    #: from arrival order, so it does not shift the other faults and a faulted run meets the same ones
    stray_500_rate: float = Field(0.02, ge=0, le=1)
    #: e.g. [("500", 3), ("ok", 2), ("reset", 1)]: the next API requests, in order
    fault_script: list[tuple[FaultKind | Literal["ok"], int]] = Field(default_factory=list)
    #: e.g. {1: "500", 4: "hang"}: 1-based API request number since start or /reset
    fault_at: dict[int, FaultKind] = Field(default_factory=dict)
    #: e.g. {"capital of Peru": "500"}: every API request whose messages contain the substring fails
    #: with that kind, retries included (one row's calls fail, the others are answered)
    fault_prompts: dict[str, FaultKind] = Field(default_factory=dict)
    #: how long a "hang" fault holds the connection; None = until the client leaves or the server stops
    hang_seconds: float | None = Field(None, ge=0)

    # answers
    #: substring of the last user message -> fixed answer text
    answers: dict[str, str] = Field(default_factory=dict)
    #: the defaults are rude like real servers, so a test meets what production meets; ``polite=True``
    #: is the ideal server (exact lists, no empty completions, no stray 500s) for a test that needs it
    polite: bool = False
    #: every ``top_logprobs`` list as long as asked; False (the default) lists fewer for some tokens,
    #: as real servers do (which ones is a pure function of the seed and the request)
    exact_top_logprobs: bool = False
    #: share of free-text completions that come back empty, chosen by the seed and the request
    empty_rate: float = Field(0.02, ge=0, le=1)
    #: False: ``logprobs`` is accepted but every answer comes back without them (``"logprobs": null``),
    #: as some OpenAI-compatible servers and gateways do
    returns_logprobs: bool = True
    #: a multiple-choice question gets a bare option letter when max_tokens is at most this
    mc_max_tokens: int = Field(5, ge=1)
    models: list[str] = Field(default_factory=lambda: ["gpt-4o-mini", "gpt-4.1-nano", "claude-3-5-haiku-latest",
                                                       "emulator-small"])
    #: Anthropic answers 400 without an ``anthropic-version`` header, like the real API
    require_anthropic_version: bool = True

    #: count repeated identical bodies (about 100 bytes per distinct body); switch off when measuring
    #: the memory of a client that runs the emulator in its own process for millions of requests
    track_bodies: bool = True

    #: replay mode: answer API requests only from these cassettes (miss -> 404 ``cassette_miss``)
    cassette: Path | list[Path] | None = None

    @model_validator(mode="before")
    @classmethod
    def _polite(cls, data: object) -> object:
        # polite wins over the rude settings, also when `configure` merges it into a full dump
        if isinstance(data, dict) and data.get("polite"):
            return {**data, "exact_top_logprobs": True, "empty_rate": 0.0, "stray_500_rate": 0.0}
        return data

    @model_validator(mode="after")
    def _check(self) -> EmulatorConfig:
        for kind, rate in self.fault_rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault_rates[{kind!r}] must be within [0, 1]")
        if self.latency.kind == "uniform" and (self.latency.max_ms is None
                                               or self.latency.max_ms < self.latency.ms):
            raise ValueError("uniform latency needs max_ms >= ms")
        return self

    def public_dict(self) -> dict[str, object]:
        """The settings as JSON, the API key masked."""
        data = self.model_dump(mode="json")
        if data.get("api_key"):
            data["api_key"] = "***"
        return data
