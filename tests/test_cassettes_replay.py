"""Recorded cassettes, replayed by the emulator to the real openai SDK through our adapter.

Each cassette in ``cassettes/`` was recorded from a real model (the in-process SmolLM2 behind an
OpenAI-shaped transport, and llama-cpp-python's own server) by ``python -m
clearapi_testing.record``, which also saved the `ChatResponse` the adapter made of each exchange
(``NAME.normalised.json``). Replayed, the same requests must give the same normalised answers,
and a request the cassette does not hold must fail instead of passing silently.

No model is needed here: this runs everywhere, in a few seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from clearapi.adapters.openai_chat import OpenAIChatAdapter
from clearapi.errors import ClearAPIError
from clearapi.profiles import Profile
from clearapi.records import ChatRequest
from clearapi_testing.cassettes import load_cassette
from clearapi_testing.emulator import Emulator, EmulatorConfig
from clearapi_testing.record import RECORDED_REQUESTS, normalised, normalised_path

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
RECORDED = sorted(p for p in CASSETTES.glob("*.json") if not p.name.endswith(".normalised.json"))


def test_cassettes_exist_and_say_how_they_were_recorded() -> None:
    names = {p.stem for p in RECORDED}
    assert {"local", "llamacpp-server"} <= names, names
    for path in RECORDED:
        cassette = load_cassette(path)
        assert cassette.interactions
        assert "clearapi_testing.record" in cassette.rerecord_command
        assert cassette.recorded_with.model and cassette.how
        assert normalised_path(path).is_file(), f"{path.name} has no normalised responses"
        text = path.read_text()
        assert "authorization" not in text.lower() and "bearer" not in text.lower()


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_replay_gives_identical_normalised_responses(path: Path) -> None:
    expected: dict[str, Any] = orjson.loads(normalised_path(path).read_bytes())
    profile = Profile.model_validate(expected["profile"])
    assert [e["name"] for e in expected["exchanges"]] == [n for n, _ in RECORDED_REQUESTS]
    # the adapter alone has no retries: a stray 500 (drawn from the body's bytes) would fail the
    # comparison this test makes, which is of the normalised answers, not of the retry loop
    async with Emulator(EmulatorConfig(cassette=path, stray_500_rate=0.0)) as emu:
        adapter = OpenAIChatAdapter(profile, model=expected["model"], base_url=emu.base_url + "/v1")
        try:
            for exchange, (name, request) in zip(expected["exchanges"], RECORDED_REQUESTS, strict=True):
                # the request set in the code is the one that was recorded
                assert ChatRequest.model_validate(exchange["request"]) == request, name
                got = normalised(await adapter.chat(request))
                assert got == exchange["response"], name
        finally:
            await adapter.aclose()
        stats = emu.stats()
        assert stats.cassette_misses == 0
        assert stats.cassette_hits == len(load_cassette(path).interactions)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_normalised_responses_hold_the_recorded_bodies(path: Path) -> None:
    """Independent of the adapter: every recorded choice's text and logprobs are in the normalised form."""
    cassette = load_cassette(path)
    expected: dict[str, Any] = orjson.loads(normalised_path(path).read_bytes())
    recorded_choices = [c for i in cassette.interactions for c in i.response.body["choices"]]
    normal_choices = [c for e in expected["exchanges"] for c in e["response"]["choices"]]
    assert len(recorded_choices) == len(normal_choices)
    for raw, norm in zip(recorded_choices, normal_choices, strict=True):
        assert raw["message"]["content"] == norm["text"]
        if raw.get("logprobs"):
            tokens = raw["logprobs"]["content"]
            assert [t["token"] for t in tokens] == [t["token"] for t in norm["logprobs"]]
            for t, n in zip(tokens, norm["logprobs"], strict=True):
                assert math.isclose(t["logprob"], n["logprob"], abs_tol=1e-9)
    by_name = {e["name"]: e for e in expected["exchanges"]}
    rating = by_name["rating_mc"]["response"]["choices"][0]["logprobs"][0]
    assert len(rating["top"]) == 5, "the 1-token rating keeps its 5 alternatives"
    assert len(by_name["samples_n3"]["response"]["choices"]) == 3


async def test_a_request_the_cassette_does_not_hold_fails() -> None:
    path = CASSETTES / "local.json"
    expected: dict[str, Any] = orjson.loads(normalised_path(path).read_bytes())
    profile = Profile.model_validate(expected["profile"])
    _, request = RECORDED_REQUESTS[0]
    changed = request.model_copy(update={"max_tokens": request.max_tokens + 1})
    async with Emulator(EmulatorConfig(cassette=path)) as emu:
        adapter = OpenAIChatAdapter(profile, model=expected["model"], base_url=emu.base_url + "/v1")
        try:
            with pytest.raises(ClearAPIError, match="cassette"):
                await adapter.chat(changed)
        finally:
            await adapter.aclose()
        assert emu.stats().cassette_misses == 1
