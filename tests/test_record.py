"""The cassette recorder, end to end without a model: record the fixed request set from the
emulator as if it were OpenAI (with a key, as a key holder would), then replay the cassette.

Also the in-process OpenAI-shaped path to the local model, which the local cassette is
recorded through, checked against the local adapter it wraps.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from clearapi.adapters.openai_chat import OpenAIChatAdapter
from clearapi.profiles import Profile
from clearapi.records import ChatRequest, Message
from clearapi_testing.cassettes import load_cassette
from clearapi_testing.emulator import Emulator, EmulatorConfig
from clearapi_testing.record import RECORDED_REQUESTS, local_profile, normalised, normalised_path, record

KEY = "sk-test-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


async def test_record_then_replay_never_stores_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "openai.json"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    async with Emulator(EmulatorConfig(api_key=KEY)) as emu:
        cassette = await record("openai", out, base_url=emu.base_url + "/v1", model="gpt-4o-mini")
        assert emu.stats().requests == len(cassette.interactions)
    text = out.read_text() + normalised_path(out).read_text()
    assert KEY not in text and KEY[:12] not in text
    assert "authorization" not in text.lower()
    assert "gpt-4o-mini" in cassette.rerecord_command and "--provider openai" in cassette.rerecord_command
    assert len(cassette.interactions) == len(RECORDED_REQUESTS)  # OpenAI honours n: one call each
    assert {i.request.path for i in cassette.interactions} == {"/v1/chat/completions"}
    assert all("logprobs" in i.request.body or i.request.body.get("n") == 3 for i in cassette.interactions)

    expected: dict[str, Any] = orjson.loads(normalised_path(out).read_bytes())
    profile = Profile.model_validate(expected["profile"])
    async with Emulator(EmulatorConfig(cassette=out)) as replay:
        adapter = OpenAIChatAdapter(profile, model="gpt-4o-mini", base_url=replay.base_url + "/v1")
        try:
            for exchange, (_, request) in zip(expected["exchanges"], RECORDED_REQUESTS, strict=True):
                assert normalised(await adapter.chat(request)) == exchange["response"]
        finally:
            await adapter.aclose()
        assert replay.stats().cassette_misses == 0
    assert load_cassette(out).recorded_with.server.startswith("openai at http://127.0.0.1:")


@pytest.mark.local
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
async def test_local_openai_transport_serves_the_local_adapter(local_model_path: Path) -> None:
    from clearapi.adapters.local_llama import LocalLlamaAdapter
    from clearapi_testing.local_openai import LocalOpenAITransport

    local = LocalLlamaAdapter(model_path=local_model_path)
    client = httpx2.AsyncClient(transport=LocalOpenAITransport(LocalLlamaAdapter(model_path=local_model_path)))
    adapter = OpenAIChatAdapter(local_profile(), base_url="http://local-model.invalid/v1", http_client=client)
    req = ChatRequest(messages=[Message(role="user", content="Name one fruit.")], max_tokens=4,
                      temperature=1.0, n=3, seed=5, logprobs=True, top_logprobs=2)
    try:
        via_http = await adapter.chat(req)
    finally:
        await adapter.aclose()
    direct = await local.chat(req)
    assert via_http.calls == 1, "the transport honours n: one HTTP call for three samples"
    assert [c.model_dump() for c in via_http.choices] == [c.model_dump() for c in direct.choices]
    assert via_http.usage == direct.usage
