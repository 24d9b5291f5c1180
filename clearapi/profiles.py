"""Provider profiles: data in `providers/*.toml`, validated here.

A profile says which wire protocol to speak, where, with which key, what the service can
do and what it costs. A new OpenAI-compatible provider is one new TOML file, shipped in the
wheel (`clearapi/_providers`) or dropped in a folder named by `CLEARAPI_PROVIDERS`
(``os.pathsep``-separated; later folders override earlier ones, so users can override ours).
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clearapi.errors import ConfigError
from clearapi.records import Capabilities

__all__ = ["Limits", "Price", "Profile", "list_profiles", "load_profile", "profile_dirs"]

Protocol = Literal["openai_chat", "anthropic_messages", "local_llama"]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: float | None = Field(default=None, gt=0, description="requests per minute; None = learn it")
    tpm: float | None = Field(default=None, gt=0, description="tokens per minute; None = learn it")
    max_concurrency: int = Field(default=16, ge=1)


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1, description="0.5 = batch costs half")


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    protocol: Protocol
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="env var holding the key; None = no key")
    default_model: str
    capabilities: Capabilities = Field(default_factory=Capabilities)
    limits: Limits = Field(default_factory=Limits)
    prices: dict[str, Price] = Field(default_factory=dict)
    prices_checked: date | None = Field(default=None, description="when the prices were read")
    checked_live: bool = Field(default=False, description="whether we ran against the real service")

    def price_for(self, model: str | None) -> Price | None:
        """Exact model name first, then the longest price key the model name starts with."""
        model = model or self.default_model
        if model in self.prices:
            return self.prices[model]
        best = max((k for k in self.prices if model.startswith(k)), key=len, default=None)
        return self.prices[best] if best else None


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
