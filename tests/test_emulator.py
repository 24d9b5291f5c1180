"""The emulator, driven by the real openai and anthropic SDKs over real HTTP on 127.0.0.1.

Only the clock of the rate-limit buckets is ever faked; everything else is the real server.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion

from clearapi_testing.cassettes import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    RecordedWith,
    save_cassette,
)
from clearapi_testing.emulator import (
    ApiError,
    Emulator,
    EmulatorConfig,
    EmulatorThread,
    Request,
    Response,
    Router,
    State,
    json_response,
)
from clearapi_testing.emulator.limits import RateLimits, format_duration
from clearapi_testing.emulator.responder import DefaultResponder, ResponderRequest

Factory = Callable[..., EmulatorThread]
USER = [{"role": "user", "content": "Explain why clean data helps fine-tuning."}]
MCQ = ("Question: Is the sky green?\nProposed answer: No.\nIs the proposed answer:\n"
       "(A) Correct\n(B) Incorrect\n(C) I am not sure\nAnswer with the letter only.")


_OPEN: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


def oai(base_url: str, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("api_key", "test-key")
    client = openai.AsyncOpenAI(base_url=base_url + "/v1", max_retries=0, **kw)
    _OPEN.append(client)
    return client


def anth(base_url: str, **kw: Any) -> anthropic.AsyncAnthropic:
    kw.setdefault("api_key", "test-key")
    client = anthropic.AsyncAnthropic(base_url=base_url, max_retries=0, **kw)
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as e:
        yield e


# -- wire shapes ---------------------------------------------------------------------------------


async def test_openai_shapes_logprobs_and_n(emu: Emulator) -> None:
    emu.configure(polite=True)  # checks the ideal shape: every list as long as asked
    client = oai(emu.base_url)
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, n=3, logprobs=True,  # type: ignore[arg-type]
                                             top_logprobs=4, temperature=0, seed=7)
    assert isinstance(r, ChatCompletion)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = {c.message.content for c in r.choices}
    assert len(texts) == 1, "temperature 0: every choice is the greedy answer"
    total = 0
    for choice in r.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        tokens = choice.logprobs.content
        total += len(tokens)
        assert "".join(t.token for t in tokens) == choice.message.content
        for t in tokens:
            assert -5 < t.logprob <= 0
            assert t.bytes == list(t.token.encode())
            assert len(t.top_logprobs) == 4
            lps = [x.logprob for x in t.top_logprobs]
            assert lps == sorted(lps, reverse=True)
            assert t.top_logprobs[0].token == t.token, "greedy: the chosen token is the most likely"
            assert sum(math.exp(v) for v in lps) <= 1.0 + 1e-9
    assert r.usage is not None
    assert r.usage.completion_tokens == total
    assert r.usage.total_tokens == r.usage.prompt_tokens + total
    assert r.object == "chat.completion" and r.model == "gpt-4o-mini"


async def test_sampling_varies_by_choice_but_repeats_exactly(emu: Emulator) -> None:
    client = oai(emu.base_url)
    kw: dict[str, Any] = {"model": "m", "messages": USER, "n": 4, "temperature": 1.0}
    a = await client.chat.completions.create(**kw)
    b = await client.chat.completions.create(**kw)
    texts = [c.message.content for c in a.choices]
    assert len(set(texts)) > 1
    assert texts == [c.message.content for c in b.choices]
    c = await client.chat.completions.create(**{**kw, "seed": 99})
    assert [x.message.content for x in c.choices] != texts
    assert all(x.logprobs is None for x in a.choices), "no logprobs unless asked"


async def test_max_tokens_and_stop(emu: Emulator) -> None:
    client = oai(emu.base_url)
    r = await client.chat.completions.create(model="m", messages=USER, max_tokens=2, logprobs=True)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 2
    r2 = await client.chat.completions.create(model="m", messages=USER, max_completion_tokens=3)
    assert r2.usage is not None and r2.usage.completion_tokens <= 3
    full = await client.chat.completions.create(model="m", messages=USER, temperature=0)
    text = full.choices[0].message.content or ""
    assert full.choices[0].finish_reason == "stop"
    word = text.split()[2]
    cut = await client.chat.completions.create(model="m", messages=USER, temperature=0, stop=[word])
    assert cut.choices[0].message.content == text[: text.index(word)]
    assert cut.choices[0].finish_reason == "stop"


async def test_multiple_choice_letters_with_distribution(emu: Emulator) -> None:
    emu.configure(polite=True)  # checks the ideal shape: every list as long as asked
    client = oai(emu.base_url)
    r = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": MCQ}], max_tokens=1, logprobs=True,
        top_logprobs=5, temperature=0)
    choice = r.choices[0]
    assert choice.message.content in {"A", "B", "C"}
    assert choice.logprobs is not None and choice.logprobs.content is not None
    top = choice.logprobs.content[0].top_logprobs
    assert {t.token for t in top} == {"A", "B", "C"}
    assert top[0].token == choice.message.content
    mass = sum(math.exp(t.logprob) for t in top)
    assert 0.5 < mass <= 1.0
    yes_no = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Is 2+2=4? Answer yes or no."}], max_tokens=1,
        logprobs=True, top_logprobs=2, temperature=0)
    assert yes_no.choices[0].message.content in {"Yes", "No"}
    lines = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Which is better?\nA) first\nB) second"}],
        max_tokens=1, temperature=0)
    assert lines.choices[0].message.content in {"A", "B"}
    long = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": MCQ}],
                                                max_tokens=200)
    assert len((long.choices[0].message.content or "").split()) > 1, "free text when max_tokens is large"


async def test_fixed_answers(emulator_factory: Factory) -> None:
    emu = emulator_factory(answers={"capital of France": "Paris is the capital.", "sky green": "B"})
    client = oai(emu.base_url)
    r = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert r.choices[0].message.content == "Paris is the capital."
    assert r.usage is not None and r.usage.completion_tokens == 5
    mc = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": MCQ}],
                                              max_tokens=1, logprobs=True, top_logprobs=3, n=2,
                                              temperature=1.0)
    assert [c.message.content for c in mc.choices] == ["B", "B"]
    lp = mc.choices[0].logprobs
    assert lp is not None and lp.content is not None and lp.content[0].top_logprobs[0].token == "B"


async def test_anthropic_shapes(emu: Emulator) -> None:
    client = anth(emu.base_url)
    m = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=200, system="Be brief.",
                                     messages=[{"role": "user", "content": "Hello there"}])
    assert isinstance(m, anthropic.types.Message)
    assert m.role == "assistant" and m.type == "message" and m.id.startswith("msg_")
    assert m.stop_reason == "end_turn"
    block = m.content[0]
    assert isinstance(block, anthropic.types.TextBlock) and block.text
    assert m.usage.output_tokens == len(block.text.split()) + block.text.count(".") + block.text.count(",")
    assert m.usage.input_tokens > 0
    counted = await client.messages.count_tokens(model="c", system="Be brief.",
                                                 messages=[{"role": "user", "content": "Hello there"}])
    assert counted.input_tokens == m.usage.input_tokens
    short = await client.messages.create(model="c", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2
    word = block.text.split()[1]
    stopped = await client.messages.create(model="claude-3-5-haiku-latest", max_tokens=200, system="Be brief.",
                                           messages=[{"role": "user", "content": "Hello there"}],
                                           stop_sequences=[word])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    text = stopped.content[0].text  # type: ignore[union-attr]
    assert text == block.text[: block.text.index(word)]


async def test_invalid_requests_are_400_in_each_shape(emu: Emulator) -> None:
    client = oai(emu.base_url)
    with pytest.raises(openai.BadRequestError, match="stream") as e1:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert e1.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        await client.chat.completions.create(model="m", messages=USER, top_logprobs=3)
    with pytest.raises(openai.BadRequestError) as e2:
        await client.chat.completions.create(model="m", messages=[])
    assert e2.value.param == "messages"  # type: ignore[attr-defined]
    a = anth(emu.base_url)
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        # anthropic 2.x has no `temperature` argument; what clients send goes through extra_body
        await a.messages.create(model="c", max_tokens=5, extra_body={"temperature": 1.5},
                                messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="system"):
        await a.messages.create(model="c", max_tokens=5,
                                messages=[{"role": "system", "content": "x"}])  # type: ignore[list-item,misc]
    with pytest.raises(openai.NotFoundError):
        await client.post("/nowhere", cast_to=object)
    assert emu.stats().status(400) == 5


async def test_a_prompt_beyond_the_context_window_is_the_services_400(emu: Emulator) -> None:
    emu.configure(context_window=60)
    long = [{"role": "user", "content": "word " * 80}]
    with pytest.raises(openai.BadRequestError, match="maximum context length is 60 tokens") as e1:
        await oai(emu.base_url).chat.completions.create(model="m", messages=long, max_tokens=5)  # type: ignore[arg-type]
    assert e1.value.code == "context_length_exceeded" and e1.value.param == "messages"
    with pytest.raises(anthropic.BadRequestError, match=r"prompt is too long: \d+ tokens > 60 maximum"):
        await anth(emu.base_url).messages.create(model="c", max_tokens=5, messages=long)  # type: ignore[arg-type]
    # a prompt that fits, with its completion budget, is answered
    ok = await oai(emu.base_url).chat.completions.create(model="m", messages=USER, max_tokens=5)
    assert ok.choices[0].message.content
    assert emu.stats().status(400) == 2


async def test_models_endpoint(emu: Emulator) -> None:
    models = await oai(emu.base_url).models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    page = await anth(emu.base_url).models.list()
    assert "claude-3-5-haiku-latest" in [m.id for m in page.data]


# -- auth ----------------------------------------------------------------------------------------


async def test_api_key_required_and_never_echoed(emulator_factory: Factory) -> None:
    secret = "sk-emulator-secret-0123456789abcdef"
    emu = emulator_factory(api_key=secret)
    ok = await oai(emu.base_url, api_key=secret).chat.completions.create(model="m", messages=USER)
    assert ok.choices
    with pytest.raises(openai.AuthenticationError) as e1:
        await oai(emu.base_url, api_key="sk-wrong-0123456789").chat.completions.create(model="m", messages=USER)
    assert "sk-wrong" not in str(e1.value.body) and secret not in str(e1.value.body)
    assert (await anth(emu.base_url, api_key=secret).messages.create(
        model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])).content
    with pytest.raises(anthropic.AuthenticationError) as e2:
        await anth(emu.base_url, api_key="nope").messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e2.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "invalid x-api-key"}}
    async with httpx2.AsyncClient() as raw:
        cfg = (await raw.get(emu.base_url + "/admin/config")).json()
    assert cfg["api_key"] == "***"


# -- faults --------------------------------------------------------------------------------------


OPENAI_FAULTS: list[tuple[str, type[BaseException]]] = [
    ("500", openai.InternalServerError),
    ("503", openai.InternalServerError),
    ("429", openai.RateLimitError),
    ("insufficient_quota", openai.RateLimitError),
    ("401", openai.AuthenticationError),
    ("reset", openai.APIConnectionError),
    ("hang", openai.APITimeoutError),
    ("truncated", ValueError),  # the SDK's json.JSONDecodeError
]


@pytest.mark.parametrize(("kind", "exc"), OPENAI_FAULTS, ids=[k for k, _ in OPENAI_FAULTS])
async def test_openai_fault_surfaces_as_sdk_error(emu: Emulator, kind: str, exc: type[BaseException]) -> None:
    emu.configure(fault_script=[(kind, 1)])
    client = oai(emu.base_url)
    with pytest.raises(exc) as info:
        await client.with_options(timeout=1.0).chat.completions.create(model="m", messages=USER)
    if kind == "hang":
        assert isinstance(info.value, openai.APITimeoutError)
    elif kind == "reset":
        assert not isinstance(info.value, openai.APITimeoutError)
    if kind in ("500", "503"):
        assert isinstance(info.value, openai.APIStatusError) and info.value.status_code == int(kind)
    if kind == "429":
        assert isinstance(info.value, openai.RateLimitError)
        assert info.value.response.headers["retry-after-ms"] == "200"
        assert info.value.code == "rate_limit_exceeded"
    if kind == "insufficient_quota":
        assert isinstance(info.value, openai.RateLimitError)
        assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
        assert "retry-after" not in info.value.response.headers
    after = await client.chat.completions.create(model="m", messages=USER)
    assert after.choices, "the fault hit one request only"
    stats = emu.stats()
    assert stats.faults == {kind: 1}
    assert stats.requests == 2 and stats.in_flight == 0


ANTHROPIC_FAULTS: list[tuple[str, type[BaseException], int | None]] = [
    ("529", anthropic.OverloadedError, 529),
    ("500", anthropic.InternalServerError, 500),
    ("429", anthropic.RateLimitError, 429),
    ("401", anthropic.AuthenticationError, 401),
    ("insufficient_quota", anthropic.BadRequestError, 400),
    ("reset", anthropic.APIConnectionError, None),
    ("hang", anthropic.APITimeoutError, None),
    ("truncated", ValueError, None),
]


@pytest.mark.parametrize(("kind", "exc", "status"), ANTHROPIC_FAULTS, ids=[k for k, _, _ in ANTHROPIC_FAULTS])
async def test_anthropic_fault_surfaces_as_sdk_error(emu: Emulator, kind: str, exc: type[BaseException],
                                                     status: int | None) -> None:
    emu.configure(fault_at={1: kind})
    client = anth(emu.base_url)
    with pytest.raises(exc) as info:
        await client.with_options(timeout=1.0).messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    if status is not None:
        assert isinstance(info.value, anthropic.APIStatusError)
        assert info.value.status_code == status
        body = info.value.body
        assert isinstance(body, dict) and body["type"] == "error"
    assert emu.stats().faults == {kind: 1}


async def test_fault_rate_is_seeded_and_counted(emulator_factory: Factory) -> None:
    async def run(emu: EmulatorThread) -> list[int]:
        statuses = []
        async with httpx2.AsyncClient(base_url=emu.base_url) as raw:
            for _ in range(40):
                r = await raw.post("/v1/chat/completions", json={"model": "m", "messages": USER})
                statuses.append(r.status_code)
        return statuses

    cfg = {"fault_rate": 0.5, "fault_kinds": ["500", "503", "429"], "seed": 3}
    a = await run(emulator_factory(**cfg))
    b_emu = emulator_factory(**cfg)
    b = await run(b_emu)
    assert a == b, "same seed, same faults"
    assert 5 < sum(s != 200 for s in a) < 35
    stats = b_emu.stats()
    assert sum(stats.faults.values()) == sum(s != 200 for s in b)
    b_emu.reset()
    assert await run(b_emu) == a, "/reset restarts the seeded sequence"


async def test_admin_config_switches_faults_at_run_time(emu: Emulator) -> None:
    async with httpx2.AsyncClient(base_url=emu.base_url) as raw:
        r = await raw.post("/admin/config", json={"fault_rate": 1.0, "fault_kinds": ["503"]})
        assert r.status_code == 200 and r.json()["fault_rate"] == 1.0
        bad = await raw.post("/admin/config", json={"fault_rate": 7})
        assert bad.status_code == 400
        assert (await raw.post("/v1/chat/completions", json={"model": "m", "messages": USER})).status_code == 503
        await raw.post("/admin/config", json={"fault_rate": 0})
        assert (await raw.post("/v1/chat/completions", json={"model": "m", "messages": USER})).status_code == 200


async def test_hang_does_not_block_shutdown() -> None:
    emu = await Emulator(fault_rates={"hang": 1.0}).start()
    client = oai(emu.base_url, timeout=60)
    call = asyncio.ensure_future(client.chat.completions.create(model="m", messages=USER))
    await asyncio.wait_for(emu.wait_requests(1), timeout=30)
    assert emu.stats().in_flight == 1
    await asyncio.wait_for(emu.stop(), timeout=10)
    with pytest.raises(openai.APIConnectionError):
        await call


# -- rate limits ---------------------------------------------------------------------------------


async def test_rate_limited_server_without_ratelimit_headers_still_answers_429_with_retry_after(
        emulator_factory: Factory) -> None:
    emu = emulator_factory(rpm=6, tpm=60_000, ratelimit_headers=False)
    client = oai(emu.base_url)
    ok = await client.chat.completions.with_raw_response.create(model="m", messages=USER, max_tokens=10)
    assert not [h for h in ok.headers if h.lower().startswith("x-ratelimit-")]
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    resp = info.value.response
    assert int(resp.headers["retry-after"]) >= 9
    assert not [h for h in resp.headers if h.lower().startswith("x-ratelimit-")]
    a = anth(emu.base_url)
    with pytest.raises(anthropic.RateLimitError) as ainfo:
        await a.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert not [h for h in ainfo.value.response.headers if h.lower().startswith("anthropic-ratelimit-")]


async def test_rpm_limit_429_with_headers(emulator_factory: Factory) -> None:
    emu = emulator_factory(rpm=6, tpm=60_000, ratelimit_headers=True)
    client = oai(emu.base_url)
    ok = await client.chat.completions.with_raw_response.create(model="m", messages=USER, max_tokens=10)
    h = ok.headers
    assert h["x-ratelimit-limit-requests"] == "6" and h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "60000"
    assert int(h["x-ratelimit-remaining-tokens"]) < 1000
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    resp = info.value.response
    assert int(resp.headers["retry-after"]) >= 9 and int(resp.headers["retry-after-ms"]) > 9000
    assert "x-ratelimit-remaining-requests" in resp.headers
    assert info.value.code == "rate_limit_exceeded"
    a = anth(emu.base_url)
    with pytest.raises(anthropic.RateLimitError) as ainfo:
        await a.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    ah = ainfo.value.response.headers
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert f"anthropic-ratelimit-{name}-limit" in ah
        assert ah[f"anthropic-ratelimit-{name}-reset"].endswith("Z")
    assert "retry-after" in ah
    stats = emu.stats()
    assert stats.rate_limited == 2 and stats.status(429) == 2 and stats.status(200) == 1


async def test_buckets_refill_continuously_on_a_fake_clock() -> None:
    now = [1000.0]
    async with Emulator(rpm=60, tpm=6000, ratelimit_headers=True, clock=lambda: now[0]) as emu:
        client = oai(emu.base_url)

        async def call(max_tokens: int = 10) -> int | str:
            try:
                await client.chat.completions.create(model="m", messages=USER, max_tokens=max_tokens)
                return 200
            except openai.RateLimitError as exc:
                return f"{exc.type}:{exc.response.headers['retry-after-ms']}"

        assert await call() == 200
        assert await call() == "requests:1000", "capacity is one second of quota: one request at 60 RPM"
        now[0] += 0.5
        assert await call() == "requests:500"
        now[0] += 0.5
        assert await call() == 200
        emu.configure(rpm=600)  # 10 requests a second: now the 100-token bucket binds
        assert await call(max_tokens=80) == 200  # costs 16 prompt + 80 completion tokens
        assert await call(max_tokens=80) == "tokens:920"
        now[0] += 0.92
        assert await call(max_tokens=80) == 200
        now[0] += 60
        assert str(await call(max_tokens=8000)).startswith("tokens:"), "over a minute of TPM never passes"
        assert emu.stats().rate_limited == 4


def test_token_bucket_and_durations() -> None:
    now = [0.0]
    limits = RateLimits(rpm=120, tpm=None, burst_seconds=2.0, clock=lambda: now[0])
    assert limits.requests is not None and limits.requests.capacity == 4
    for _ in range(4):
        assert limits.acquire(1, 0) is None
    denied = limits.acquire(1, 0)
    assert denied is not None and denied[1] == "requests" and denied[0] == pytest.approx(0.5)
    now[0] = 0.5
    assert limits.acquire(1, 0) is None
    assert [format_duration(s) for s in (0.02, 1.0, 1.5, 360.0, 0)] == ["20ms", "1s", "1.5s", "6m0s", "0s"]


def test_latency_distributions_are_seeded() -> None:
    import random
    import statistics

    from clearapi_testing.emulator import Latency
    from clearapi_testing.emulator.app import draw_latency_ms

    def draws(lat: Latency, seed: int = 1) -> list[float]:
        rng = random.Random(seed)
        return [draw_latency_ms(lat, rng) for _ in range(2000)]

    assert set(draws(Latency(kind="fixed", ms=20))) == {20}
    uni = draws(Latency(kind="uniform", ms=10, max_ms=30))
    assert min(uni) >= 10 and max(uni) <= 30 and statistics.mean(uni) == pytest.approx(20, abs=1)
    logn = draws(Latency(kind="lognormal", ms=50, sigma=0.5))
    assert statistics.median(logn) == pytest.approx(50, rel=0.1) and max(logn) > 100
    assert logn == draws(Latency(kind="lognormal", ms=50, sigma=0.5)), "same seed, same latencies"
    with pytest.raises(ValueError, match="max_ms"):
        EmulatorConfig(latency=Latency(kind="uniform", ms=10))


# -- counters and connections --------------------------------------------------------------------


async def test_stats_in_flight_peak_and_repeated_bodies(emulator_factory: Factory) -> None:
    emu = emulator_factory(latency={"kind": "fixed", "ms": 600})
    client = oai(emu.base_url)
    await asyncio.gather(*(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"q{i}"}]) for i in range(4)))
    stats = emu.stats()
    assert stats.peak_in_flight == 4 and stats.in_flight == 0
    emu.reset()
    emu.configure(latency={"kind": "fixed", "ms": 0}, fault_script=[("500", 1)])
    body = {"model": "m", "messages": USER, "temperature": 0}
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(**body)
    for _ in range(3):
        await client.chat.completions.create(**body)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "other"}])
    async with httpx2.AsyncClient(base_url=emu.base_url) as raw:
        over_http = (await raw.get("/stats")).json()
        stats = emu.stats()
        assert over_http == stats.model_dump()
        assert stats.requests == 5 and stats.by_path == {"/v1/chat/completions": 5}
        assert stats.by_status == {"200": 4, "500": 1}
        assert stats.unique_bodies == 2
        assert stats.repeated_bodies == 3 and stats.max_repeats == 3
        assert stats.repeated_ok_bodies == 2 and stats.max_ok_repeats == 2
        assert stats.tokens.completion > 0 and stats.tokens.total == stats.tokens.prompt + stats.tokens.completion
        assert (await raw.post("/reset")).status_code == 200
    zero = emu.stats()
    assert zero.requests == 0 and zero.repeated_bodies == 0 and zero.tokens.total == 0


async def test_keep_alive_reuses_one_connection(emu: Emulator) -> None:
    client = oai(emu.base_url)
    for i in range(5):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
    a = anth(emu.base_url)
    for _ in range(3):
        await a.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert emu.stats().connections == 2
    assert emu.stats().requests == 8


async def test_chunked_request_body(emu: Emulator) -> None:
    payload = orjson.dumps({"model": "m", "messages": USER})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 7):
            yield payload[i:i + 7]

    async with httpx2.AsyncClient() as raw:
        r = await raw.post(emu.base_url + "/v1/chat/completions", content=chunks(),
                           headers={"content-type": "application/json"})
    assert r.status_code == 200
    ChatCompletion.model_validate(r.json())


def test_sync_fixture_and_thread(emulator: EmulatorThread) -> None:
    with openai.OpenAI(base_url=emulator.base_url + "/v1", api_key="k", max_retries=0) as client:
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        assert emulator.stats().requests == 1
        emulator.configure(fault_at={2: "500"})
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    emulator.wait_requests(2, timeout=5)
    emulator.configure(track_bodies=False, fault_at={})
    emulator.reset()
    with openai.OpenAI(base_url=emulator.base_url + "/v1", api_key="k", max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    stats = emulator.stats()
    assert stats.requests == 2 and stats.unique_bodies == 0 and stats.repeated_bodies == 0


# -- extensions ----------------------------------------------------------------------------------


def install_notes(router: Router, state: State) -> None:
    notes: dict[str, dict[str, Any]] = state.store.setdefault("notes", {})

    async def create(ctx: State, req: Request) -> Response:
        nid = ctx.new_id("note")
        notes[nid] = {"id": nid, "text": req.json_object()["text"]}
        return json_response(notes[nid])

    async def get(ctx: State, req: Request) -> Response:
        if req.params["note_id"] not in notes:
            raise ApiError(404, "No such note", param="note_id")
        return json_response(notes[req.params["note_id"]])

    router.add("POST", "/v1/notes", create, provider="openai")
    router.add("GET", "/v1/notes/{note_id}", get, provider="openai")


async def test_extension_routes_get_the_shared_pipeline(emulator_factory: Factory) -> None:
    emu = emulator_factory(extensions=[install_notes], fault_at={3: "429"})
    client = oai(emu.base_url)
    made = await client.post("/notes", body={"text": "hello"}, cast_to=object)
    assert isinstance(made, dict) and made["id"].startswith("note-")
    got = await client.get(f"/notes/{made['id']}", cast_to=object)
    assert got == made
    with pytest.raises(openai.RateLimitError):
        await client.get(f"/notes/{made['id']}", cast_to=object)
    with pytest.raises(openai.NotFoundError) as info:
        await client.get("/notes/missing", cast_to=object)
    assert info.value.body == {"message": "No such note", "type": "invalid_request_error",
                               "param": "note_id", "code": None}
    assert emu.stats().by_path["/v1/notes"] == 1


async def test_multipart_upload_parsing_and_method_errors(emulator_factory: Factory) -> None:
    seen: dict[str, Any] = {}

    def install(router: Router, state: State) -> None:
        async def upload(ctx: State, req: Request) -> Response:
            parts = req.multipart()
            seen.update({name: (p.filename, p.content_type, p.data) for name, p in parts.items()})
            return json_response({"ok": True})

        router.add("POST", "/v1/uploads", upload, provider="openai")

    emu = emulator_factory(extensions=[install])
    data = b'{"messages": []}\r\n--not-a-boundary\r\n\x00\xff'
    async with httpx2.AsyncClient(base_url=emu.base_url) as raw:
        r = await raw.post("/v1/uploads", data={"purpose": "fine-tune"},
                           files={"file": ("train.jsonl", data, "application/jsonl")})
        assert r.status_code == 200
        assert seen["file"] == ("train.jsonl", "application/jsonl", data)
        assert seen["purpose"] == (None, None, b"fine-tune")
        wrong = await raw.get("/v1/uploads")
        assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
        not_multipart = await raw.post("/v1/uploads", json={})
        assert not_multipart.status_code == 400


async def test_malformed_http_gets_400_and_close(emu: Emulator) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", emu.port)
    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400")


# -- cassettes -----------------------------------------------------------------------------------


async def test_cassette_playback_and_miss(tmp_path: Path) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5,
            "temperature": 0}
    recorded = {"id": "chatcmpl-rec", "object": "chat.completion", "created": 1, "model": "smollm2",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": "Hi!"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    cassette = Cassette(recorded_with=RecordedWith(server="llama_cpp.server", model="smollm2"),
                        how="hand-written for the test", rerecord_command="none",
                        interactions=[Interaction(
                            request=RecordedRequest(path="/v1/chat/completions", body=body),
                            response=RecordedResponse(headers={"content-type": "application/json",
                                                               "x-request-id": "rec-1"},
                                                      body=recorded))])
    path = save_cassette(tmp_path / "hi.json", cassette)
    async with Emulator(EmulatorConfig(cassette=path)) as emu:
        client = oai(emu.base_url)
        raw = await client.chat.completions.with_raw_response.create(**body, user="someone")
        assert raw.parse().choices[0].message.content == "Hi!"
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(**{**body, "max_tokens": 6})
        assert info.value.code == "cassette_miss"
        stats = emu.stats()
        assert stats.cassette_hits == 1 and stats.cassette_misses == 1


# -- the command line ----------------------------------------------------------------------------


def test_command_line_server_prints_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "clearapi_testing.emulator", "--port", "0", "--rpm", "600",
                             "--ratelimit-headers",
                             "--latency-ms", "1", "--seed", "5"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("clearapi emulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            r = client.chat.completions.with_raw_response.create(model="m", messages=USER)  # type: ignore[arg-type]
        assert r.headers["x-ratelimit-limit-requests"] == "600"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_rude_server_sends_no_ratelimit_headers_by_default(emulator_factory: Factory) -> None:
    emu = emulator_factory(rpm=600, tpm=600_000)
    ok = await oai(emu.base_url).chat.completions.with_raw_response.create(model="m", messages=USER, max_tokens=10)
    assert not any(name.startswith("x-ratelimit-") for name in ok.headers)


def _top_lengths(responder: DefaultResponder, prompt: str) -> list[int]:
    req = ResponderRequest(provider="openai", model="m", messages=(("user", prompt),), max_tokens=40,
                           temperature=0.0, logprobs=True, top_logprobs=5)
    return [len(t.top) for c in responder(req) for t in c.tokens]


def test_short_top_logprobs_and_empty_completions_are_seeded_and_switchable() -> None:
    prompts = [f"Tell me fact number {i}." for i in range(60)]
    exact = DefaultResponder(seed=3)
    rude = DefaultResponder(seed=3, exact_top_logprobs=False, empty_rate=0.1)
    assert all(n == 5 for p in prompts for n in _top_lengths(exact, p))
    lengths = [_top_lengths(rude, p) for p in prompts]
    flat = [n for ls in lengths for n in ls]
    assert any(n < 5 for n in flat) and any(n == 5 for n in flat) and min(flat) >= 1
    assert any(ls == [] for ls in lengths) and sum(ls == [] for ls in lengths) < 20  # some empty, not most
    assert lengths == [_top_lengths(DefaultResponder(seed=3, exact_top_logprobs=False, empty_rate=0.1), p)
                       for p in prompts]  # a pure function of seed and request: retries see the same
    assert lengths != [_top_lengths(DefaultResponder(seed=4, exact_top_logprobs=False, empty_rate=0.1), p)
                       for p in prompts]


def test_defaults_are_rude_and_polite_is_the_ideal_server() -> None:
    from clearapi_testing.emulator.__main__ import _parser, config_from_args
    from clearapi_testing.emulator.faults import FaultPlan

    rude = EmulatorConfig()
    assert not rude.exact_top_logprobs and rude.empty_rate > 0 and rude.stray_500_rate > 0
    plan, again = FaultPlan(rude), FaultPlan(rude)
    bodies = [b'{"messages": "question %d"}' % n for n in range(1, 2001)]
    kinds = [plan.pick(n, "openai", body) for n, body in enumerate(bodies, 1)]
    assert 10 < kinds.count("500") < 80 and set(kinds) == {None, "500"}  # about 2%, retryable
    # drawn from the seed and the body, not the arrival order: the same requests in reverse order
    # (as with other faults shifting them) meet the same stray 500s
    assert kinds[::-1] == [again.pick(n, "openai", body) for n, body in enumerate(reversed(bodies), 1)]
    assert kinds != [FaultPlan(EmulatorConfig(seed=1)).pick(n, "openai", b) for n, b in enumerate(bodies, 1)]
    # a retry of a body that got one draws again: it gets through (here, on its next attempt)
    hit = bodies[kinds.index("500")]
    assert [plan.pick(1, "openai", hit) for _ in range(3)] == [None, None, None]
    polite = EmulatorConfig(polite=True)
    assert polite.exact_top_logprobs and polite.empty_rate == 0 and polite.stray_500_rate == 0
    plan = FaultPlan(polite)
    assert {plan.pick(n, "openai") for n in range(1, 2001)} == {None}
    # polite wins when merged into a full dump, as `configure` does
    assert EmulatorConfig.model_validate({**rude.model_dump(), "polite": True}).stray_500_rate == 0
    assert config_from_args(_parser().parse_args(["--polite"])).exact_top_logprobs
    assert config_from_args(_parser().parse_args([])).empty_rate == rude.empty_rate
