"""Provider profiles: data in `providers/*.toml`, validated here.

A profile says which wire protocol to speak, where, with which key, what the service can
do and what it costs. A new OpenAI-compatible provider is one new TOML file, shipped in the
wheel (`clearapi/_providers`) or dropped in a folder named by `CLEARAPI_PROVIDERS`
(``os.pathsep``-separated; later folders override earlier ones, so users can override ours).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clearapi.errors import ConfigError
from clearapi.records import Capabilities

__all__ = ["Limits", "ModelRule", "Price", "Profile", "list_profiles", "load_profile", "profile_dirs"]

Protocol = Literal["openai_chat", "anthropic_messages", "local_llama"]
TokenParam = Literal["max_tokens", "max_completion_tokens"]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: float | None = Field(default=None, gt=0, description="requests per minute; None = learn it")
    tpm: float | None = Field(default=None, gt=0, description="tokens per minute; None = learn it")
    max_concurrency: int = Field(default=16, ge=1)
    ratelimit_headers: bool = Field(
        default=False, description="the provider's own host sends rate-limit headers: rpm/tpm are a first "
        "guess there, corrected by them; elsewhere (no headers, another base URL) they are not used")
    tpm_counts_max_tokens: bool | None = Field(
        default=None, description="the service counts max_tokens against TPM and never refunds it; "
                                  "None = what the protocol's services do (OpenAI does, Anthropic settles)")


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1, description="0.5 = batch costs half")


class ModelRule(BaseModel):
    """What differs for the models whose names match a glob (``[models."o*"]`` in TOML).

    Unset fields leave the profile's value alone. Several rules may match one model; they
    apply from the shortest pattern to the longest, so ``"gpt-5-chat*"`` can undo part of
    ``"gpt-5*"``. This keeps model knowledge (reasoning models refuse logprobs and
    temperature, want ``max_completion_tokens``) in data rather than in adapter if/else.
    """

    model_config = ConfigDict(extra="forbid")

    max_tokens_param: TokenParam | None = None
    sampling_params: bool | None = Field(default=None, description="accepts temperature/top_p")
    logprobs: bool | None = None
    max_top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: bool | None = None
    seed: bool | None = None
    score_given_text: bool | None = None
    note: str = ""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    protocol: Protocol
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="env var holding the key; None = no key")
    base_url_env: str | None = Field(default=None, description="env var that overrides base_url (the SDK's own)")
    default_model: str
    capabilities: Capabilities = Field(default_factory=Capabilities)
    limits: Limits = Field(default_factory=Limits)
    prices: dict[str, Price] = Field(default_factory=dict)
    prices_checked: date | None = Field(default=None, description="when the prices were read")
    checked_live: bool = Field(default=False, description="whether we ran against the real service")
    key_optional: bool = Field(default=False, description="a key is sent when set but not required")
    max_tokens_param: TokenParam = "max_tokens"
    sampling_params: bool = Field(default=True, description="accepts temperature/top_p")
    models: dict[str, ModelRule] = Field(default_factory=dict, description="per-model-glob overrides")
    sources: list[str] = Field(default_factory=list, description="where the numbers were read")

    @property
    def tpm_counts_max_tokens(self) -> bool:
        """How the service counts tokens against its TPM limit (see `Limits.tpm_counts_max_tokens`)."""
        told = self.limits.tpm_counts_max_tokens
        return self.protocol == "openai_chat" if told is None else told

    def rules_for(self, model: str | None) -> list[ModelRule]:
        """The model rules matching `model`, least specific first."""
        model = model or self.default_model
        hits = [k for k in self.models if fnmatch.fnmatchcase(model, k)]
        return [self.models[k] for k in sorted(hits, key=len)]

    def setting_for(self, model: str | None, name: str) -> object:
        """A profile-level setting (``max_tokens_param``, ``sampling_params``) after model rules."""
        value: object = getattr(self, name)
        for rule in self.rules_for(model):
            override = getattr(rule, name)
            if override is not None:
                value = override
        return value

    def capabilities_for(self, model: str | None) -> Capabilities:
        """The profile's capabilities with the matching model rules applied."""
        caps = self.capabilities.model_copy()
        for rule in self.rules_for(model):
            for field in ("logprobs", "max_top_logprobs", "n", "seed", "score_given_text"):
                override = getattr(rule, field)
                if override is not None:
                    setattr(caps, field, override)
        if not caps.logprobs:
            caps.max_top_logprobs = 0
        if not caps.n:
            caps.max_n = 1
        return caps

    def price_for(self, model: str | None) -> Price | None:
        """Exact model name first, then the longest price key the model name starts with,
        then the longest glob key that matches (``"*"`` prices every model of a self-hosted server)."""
        model = model or self.default_model
        if model in self.prices:
            return self.prices[model]
        best = max((k for k in self.prices if model.startswith(k)), key=len, default=None)
        if best:
            return self.prices[best]
        globbed = max((k for k in self.prices if fnmatch.fnmatchcase(model, k)), key=len, default=None)
        return self.prices[globbed] if globbed else None


def resolve_base_url(profile: Profile, explicit: str | None = None) -> tuple[str | None, str]:
    """The base URL in force and where it came from: ``--base-url``, then the profile's environment
    variable (``OPENAI_BASE_URL``, as the SDKs and every peer honour it), then the profile."""
    if explicit:
        return explicit, "--base-url"
    if profile.base_url_env:
        from_env = os.environ.get(profile.base_url_env, "").strip()
        if from_env:
            return from_env, f"${profile.base_url_env}"
    return profile.base_url, "profile"


def profile_dirs() -> list[Path]:
    """Where profiles are looked for, lowest priority first."""
    here = Path(__file__).resolve().parent
    dirs = [here / "_providers", here.parent / "providers"]
    extra = os.environ.get("CLEARAPI_PROVIDERS", "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return [d for d in dirs if d.is_dir()]


def _read(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc}") from exc
    data.setdefault("name", path.stem)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: invalid profile at {loc}: {first['msg']}") from exc


def list_profiles() -> dict[str, Profile]:
    """Every known profile by name; a later folder's file overrides an earlier one's."""
    found: dict[str, Profile] = {}
    for d in profile_dirs():
        for path in sorted(d.glob("*.toml")):
            profile = _read(path)
            found[profile.name] = profile
    return found


def load_profile(name: str) -> Profile:
    profiles = list_profiles()
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "(none found)"
        raise ConfigError(f"unknown provider {name!r}; known providers: {known}")
    return profiles[name]
