"""From a profile to a live adapter: the registry of wire protocols (`clearapi.adapters`).

`create_adapter` is the only place that maps protocol names to classes; the engine calls
it to build its default adapter and never names a protocol itself. The modules are
imported lazily so that using the local model never imports the openai SDK's machinery
and a missing optional dependency (llama-cpp-python) only matters to those who use it.
"""

from __future__ import annotations

import importlib
import os

from clearapi.errors import AuthError, ConfigError
from clearapi.profiles import Profile
from clearapi.protocols import Adapter
from clearapi.redact import valid_api_key_problem

__all__ = ["ADAPTERS", "create_adapter", "resolve_api_key"]

#: protocol -> (module, class); every `Profile.protocol` value must appear here.
ADAPTERS: dict[str, tuple[str, str]] = {
    "openai_chat": ("clearapi.adapters.openai_chat", "OpenAIChatAdapter"),
    "anthropic_messages": ("clearapi.adapters.anthropic_messages", "AnthropicMessagesAdapter"),
    "local_llama": ("clearapi.adapters.local_llama", "LocalLlamaAdapter"),
}


def resolve_api_key(profile: Profile, explicit: str | None = None) -> str | None:
    """The key to use: an explicit one, else the profile's env var; None if none is needed.

    A profile that names an env var and is not `key_optional` must get a key, and the
    error says exactly which variable to set, in one line, without any key material.
    """
    if explicit:
        return _checked_key(explicit, "the API key given", profile)
    if not profile.api_key_env:
        return None
    from_env = os.environ.get(profile.api_key_env, "").strip()
    if from_env:
        return _checked_key(from_env, profile.api_key_env, profile)
    if profile.key_optional:
        return None
    raise AuthError(f"missing API key for provider {profile.name!r}: set {profile.api_key_env}")


def _checked_key(key: str, where: str, profile: Profile) -> str:
    """Refuse a key that cannot be a key before anything is sent; the message never quotes it."""
    problem = valid_api_key_problem(key)
    if problem is not None:
        raise AuthError(f"{where} for provider {profile.name!r} {problem}; API keys are printable ASCII "
                        "without spaces: paste it again (nothing was sent)")
    return key


def create_adapter(profile: Profile, *, model: str | None = None, base_url: str | None = None,
                   api_key: str | None = None, timeout: float = 120.0, max_concurrency: int = 16,
                   threads: int | None = None) -> Adapter:
    """An adapter for `profile`, with command-line style overrides applied (`threads`: the local
    provider's llama.cpp threads; None leaves the choice to $CLEARAPI_THREADS or the idle cores).

    The key is resolved here (explicit > environment), so a missing key fails before any
    work starts rather than on the first request.
    """
    try:
        module_name, class_name = ADAPTERS[profile.protocol]
    except KeyError:  # pragma: no cover - Profile.protocol is a Literal of ADAPTERS' keys
        raise ConfigError(f"provider {profile.name!r}: no adapter for protocol {profile.protocol!r}") from None
    key = resolve_api_key(profile, api_key)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"provider {profile.name!r} needs {exc.name or 'a missing package'}: {exc}") from exc
    cls = getattr(module, class_name)
    adapter: Adapter
    if profile.protocol == "local_llama":
        # In-process: no URL, key, timeout or connection pool; `model` may be a GGUF path.
        adapter = cls(model=model, provider=profile.name, n_threads=threads,
                      capabilities=profile.capabilities_for(model or profile.default_model))
    elif threads is not None:
        raise ConfigError(f"--threads is for the local provider (llama.cpp in this process), not {profile.name!r}")
    else:
        adapter = cls(profile, model=model, base_url=base_url, api_key=key, timeout=timeout,
                      max_concurrency=max_concurrency)
    return adapter
