"""The OpenAI chat adapter: request building, response mapping and quirk detection.

These run the real openai SDK over an `httpx2.MockTransport` (a transport-level fake: the
SDK builds and parses real HTTP messages; only the socket is missing) so each quirk of a
compatible server can be served exactly. Error mapping through real HTTP to the emulator
goes through the real SDK over real HTTP to the emulator (end of this file).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from _adapter_errors import SHARED_FAULTS, SHARED_STATUSES, raises_exactly
from _status_routes import install_status_routes
from hypothesis import given
from hypothesis import strategies as st

from clearapi.adapters import create_adapter, resolve_api_key
from clearapi.adapters.openai_chat import OpenAIChatAdapter, convert_logprob
from clearapi.errors import (
    AuthError,
    BadRequest,
    CapabilityError,
    ConfigError,
    FatalError,
    QuotaExhausted,
    RateLimited,
    TransientError,
)
from clearapi.profiles import Profile, load_profile
from clearapi.records import ChatRequest, Message
from clearapi_testing.emulator import Emulator

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz012345"
Handler = Callable[[httpx2.Request], httpx2.Response]


def completion(choices: list[dict[str, Any]], model: str = "m") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": choices, "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


def choice(text: str, index: int = 0, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"index": index, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}
    c["logprobs"] = {"content": logprobs} if logprobs is not None else None
    return c


def tok(token: str, logprob: float, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": None,
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in (top or [])]}


class Server:
    """Records every request body and answers with `handler`."""

    def __init__(self, handler: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.handler = handler
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        return self.handler(body)


def adapter_for(server: Server, profile: Profile | str = "openai", **kw: Any) -> OpenAIChatAdapter:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    client = openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(server))
    return OpenAIChatAdapter(prof, api_key=KEY, http_client=client, **kw)


def req(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="Is 2+2=4? Answer yes or no.")], **kw)


def ok(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx2.Response:
    # json.dumps, not json=: servers really do send -Infinity / NaN literals
    return httpx2.Response(200, content=json.dumps(body).encode(),
                           headers={"content-type": "application/json", **(headers or {})})


# --- request building ------------------------------------------------------------------


async def test_sends_sampling_parameters_and_maps_logprobs() -> None:
    server = Server(lambda b: ok(completion([choice("yes", logprobs=[
        tok("yes", -0.01, [("yes", -0.01), ("no", -4.6)])])])))
    adapter = adapter_for(server)
    resp = await adapter.chat(req(logprobs=True, top_logprobs=2, seed=7, stop=["\n"], temperature=0.5,
                                  top_p=0.9, max_tokens=5))
    body = server.bodies[0]
    assert body["model"] == "gpt-4o-mini"
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["max_tokens"] == 5 and "max_completion_tokens" not in body
    assert "n" not in body
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert resp.text == "yes" and resp.provider == "openai" and resp.calls == 1
    lp = resp.choices[0].logprobs
    assert lp is not None and lp[0].token == "yes" and lp[0].logprob == pytest.approx(-0.01)
    assert [(t.token, t.logprob) for t in lp[0].top] == [("yes", -0.01), ("no", -4.6)]
    assert resp.usage.prompt_tokens == 7 and resp.usage.completion_tokens == 3
    assert resp.notes == []
    await adapter.aclose()


async def test_reasoning_model_gets_max_completion_tokens_and_no_temperature() -> None:
    server = Server(lambda b: ok(completion([choice("yes")])))
    adapter = adapter_for(server, model="o3-mini")
    resp = await adapter.chat(req(max_tokens=9, temperature=0.7))
    body = server.bodies[0]
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body
    assert "temperature" not in body and "top_p" not in body
    assert any("temperature" in n for n in resp.notes)
    await adapter.aclose()


async def test_reasoning_model_refuses_logprobs_up_front() -> None:
    server = Server(lambda b: ok(completion([choice("yes")])))
    adapter = adapter_for(server, model="o3-mini")
    assert adapter.capabilities.logprobs is False
    with pytest.raises(CapabilityError, match="o3-mini"):
        await adapter.chat(req(logprobs=True))
    assert server.bodies == []  # refused before any call
    await adapter.aclose()


async def test_top_logprobs_clamped_to_profile_maximum() -> None:
    profile = load_profile("openai").model_copy(deep=True)
    profile.capabilities.max_top_logprobs = 5
    server = Server(lambda b: ok(completion([choice("a", logprobs=[
        tok("a", -0.1, [(str(i), -0.1 - i) for i in range(5)])])])))
    adapter = adapter_for(server, profile)
    resp = await adapter.chat(req(logprobs=True, top_logprobs=20))
    assert server.bodies[0]["top_logprobs"] == 5
    assert any("clamped from 20 to 5" in n for n in resp.notes)
    await adapter.aclose()


async def test_developer_role_sent_as_system() -> None:
    server = Server(lambda b: ok(completion([choice("x")])))
    adapter = adapter_for(server)
    await adapter.chat(ChatRequest(messages=[Message(role="developer", content="be brief"),
                                             Message(role="user", content="hi")]))
    assert [m["role"] for m in server.bodies[0]["messages"]] == ["system", "user"]
    await adapter.aclose()


# --- quirks learned from responses -----------------------------------------------------


async def test_n_ignored_is_detected_and_filled_with_separate_seeded_calls() -> None:
    counter = iter(range(100))
    server = Server(lambda b: ok(completion([choice(f"s{next(counter)}")])))  # always one choice
    adapter = adapter_for(server)
    resp = await adapter.chat(req(n=4, seed=10, temperature=1.0))
    assert len(resp.choices) == 4 and resp.calls == 4
    assert server.bodies[0]["n"] == 4
    assert all("n" not in b for b in server.bodies[1:])
    assert sorted(b["seed"] for b in server.bodies) == [10, 11, 12, 13]
    assert len({c.text for c in resp.choices}) == 4
    assert any("n ignored" in n for n in resp.notes)
    assert resp.usage.prompt_tokens == 4 * 7
    assert adapter.capabilities.n is False
    # remembered: the next call goes straight to separate calls, never asks for n again
    server.bodies.clear()
    resp2 = await adapter.chat(req(n=3, seed=1, temperature=1.0))
    assert len(resp2.choices) == 3 and len(server.bodies) == 3
    assert all("n" not in b for b in server.bodies)
    await adapter.aclose()


async def test_n_honoured_is_one_call() -> None:
    server = Server(lambda b: ok(completion([choice(f"s{i}", index=i) for i in range(b.get("n", 1))])))
    adapter = adapter_for(server)
    resp = await adapter.chat(req(n=3, temperature=1.0))
    assert resp.calls == 1 and [c.text for c in resp.choices] == ["s0", "s1", "s2"]
    assert adapter.capabilities.n is True and resp.notes == []
    await adapter.aclose()


async def test_short_top_logprobs_list_is_noted_and_never_lowers_later_requests() -> None:
    def handler(body: dict[str, Any]) -> httpx2.Response:
        top = [(f"t{i}", -1.0 - i) for i in range(min(5, body.get("top_logprobs", 0)))]
        return ok(completion([choice("ab", logprobs=[tok("a", -0.5, top), tok("b", -0.2, top[:1])])]))

    server = Server(handler)
    adapter = adapter_for(server)
    resp = await adapter.chat(req(logprobs=True, top_logprobs=10))
    assert any("shorter than asked (5 of 10)" in n for n in resp.notes)
    lp = resp.choices[0].logprobs
    assert lp is not None and [len(t.top) for t in lp] == [5, 1]  # as they came
    assert adapter.capabilities.max_top_logprobs == 20
    await adapter.chat(req(logprobs=True, top_logprobs=10))
    assert server.bodies[1]["top_logprobs"] == 10  # the next request asks for the full list again
    await adapter.aclose()


async def test_logprobs_missing_from_one_answer_after_others_had_them_is_not_fatal() -> None:
    calls = [0]

    def handler(body: dict[str, Any]) -> httpx2.Response:
        calls[0] += 1
        if calls[0] == 2:
            return ok(completion([choice("yes")]))
        return ok(completion([choice("a", logprobs=[tok("a", -0.5, [("a", -0.5)])])]))

    server = Server(handler)
    adapter = adapter_for(server, "vllm")
    await adapter.chat(req(logprobs=True, top_logprobs=1))
    resp = await adapter.chat(req(logprobs=True, top_logprobs=1))
    assert resp.choices[0].logprobs is None and any("not returned in this answer" in n for n in resp.notes)
    assert adapter.capabilities.logprobs is True
    third = await adapter.chat(req(logprobs=True, top_logprobs=1))
    assert third.choices[0].logprobs is not None
    await adapter.aclose()


async def test_sentinels_become_none_and_never_a_probability() -> None:
    server = Server(lambda b: ok(completion([choice("ab", logprobs=[
        tok("a", -9999.0, [("a", -9999.0), ("b", -0.3)]),
        tok("b", float("-inf")),
        tok("c", -1.5)])])))
    adapter = adapter_for(server)
    resp = await adapter.chat(req(logprobs=True, top_logprobs=2))
    lp = resp.choices[0].logprobs
    assert lp is not None
    assert [t.logprob for t in lp] == [None, None, -1.5]
    assert [(t.token, t.logprob) for t in lp[0].top] == [("b", -0.3)]  # sentinel alternative dropped
    assert any("sentinel" in n for n in resp.notes)
    await adapter.aclose()

def test_a_batch_output_line_with_non_finite_literals_is_read_like_the_online_answer() -> None:
    """A Python-written batch runner writes -Infinity / NaN as the online server does; the line is read,
    not taken for missing (which would send the request again, and again get the same line)."""
    body = completion([choice("ab", logprobs=[tok("a", float("-inf")), tok("b", float("nan")),
                                               tok("c", -1.5)])])
    adapter = adapter_for(Server(lambda b: ok(body)))
    submitter = adapter.batch_submitter()
    request = req(logprobs=True, top_logprobs=1)
    line = json.dumps({"custom_id": "r1", "error": None,
                       "response": {"status_code": 200, "body": body}}).encode()
    assert b"-Infinity" in line and b"NaN" in line
    result = submitter._line(line, {"r1": request})  # type: ignore[attr-defined]
    assert result is not None and result.response is not None and result.error is None
    lp = result.response.choices[0].logprobs
    assert lp is not None and [t.logprob for t in lp] == [None, None, -1.5]
    assert submitter._line(b'{"custom_id": "r1", "response": ', {"r1": request}) is None  # type: ignore[attr-defined]



@pytest.mark.parametrize(("raw", "expected"), [
    (-0.5, (-0.5, False)), (0.0, (0.0, False)), (1e-7, (0.0, False)), (-999.0, (-999.0, False)),
    (-9999.0, (None, True)), (float("-inf"), (None, True)), (float("nan"), (None, True)),
    (3.0, (None, True)), ("bad", (None, True)), (None, (None, True)),
])
def test_convert_logprob(raw: object, expected: tuple[float | None, bool]) -> None:
    assert convert_logprob(raw) == expected


async def test_missing_logprobs_are_noted_and_never_refuse_a_later_request() -> None:
    # learning "no logprobs" from whichever answer came first would make later requests depend on
    # arrival order; the method settles the question on the run's first rows (test_curate_e2e)
    server = Server(lambda b: ok(completion([choice("yes")])))  # never returns logprobs
    adapter = adapter_for(server, "vllm")
    resp = await adapter.chat(req(logprobs=True, top_logprobs=1))
    assert resp.choices[0].logprobs is None
    assert any("not returned" in n for n in resp.notes)
    assert adapter.capabilities.logprobs is True
    again = await adapter.chat(req(logprobs=True))
    assert again.choices[0].logprobs is None and len(server.bodies) == 2
    await adapter.aclose()


# --- malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize("response", [
    httpx2.Response(200, content=b'{"id": "x", "choices": [', headers={"content-type": "application/json"}),
    httpx2.Response(200, content=b"<html>gateway</html>", headers={"content-type": "text/html"}),
    httpx2.Response(200, json={"id": "x", "object": "chat.completion", "choices": []}),
    httpx2.Response(200, json={"id": "x", "choices": [{"index": 0}]}),
    httpx2.Response(200, json={"id": "x", "choices": ["text"]}),
    httpx2.Response(200, json=["not", "an", "object"]),
    httpx2.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": ["a"]}}]}),
    httpx2.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"},
                                            "logprobs": {"content": [{"logprob": -0.1}]}}]}),
])
async def test_malformed_bodies_are_transient(response: httpx2.Response) -> None:
    adapter = adapter_for(Server(lambda b: response))
    with pytest.raises(TransientError) as info:
        await adapter.chat(req(logprobs=True))
    assert info.value.reason == "malformed"
    await adapter.aclose()


# --- score mode ------------------------------------------------------------------------


async def test_score_mode_refused_without_prompt_logprobs() -> None:
    adapter = adapter_for(Server(lambda b: ok(completion([choice("x")]))))
    score = ChatRequest(mode="score", messages=[Message(role="user", content="q"),
                                                Message(role="assistant", content="a")])
    with pytest.raises(CapabilityError, match="cannot score"):
        await adapter.chat(score)
    await adapter.aclose()


async def test_score_mode_reads_vllm_prompt_logprobs() -> None:
    # vLLM's shape: one entry per prompt token, None for the first, {token_id: {...}} after.
    prompt_lp: list[Any] = [None,
                            {"1": {"logprob": -2.0, "rank": 1, "decoded_token": "<|user|>"}},
                            {"2": {"logprob": -1.0, "rank": 2, "decoded_token": "q"}},
                            {"3": {"logprob": -0.1, "rank": 1, "decoded_token": "<|assistant|>"}},
                            {"4": {"logprob": -0.7, "rank": 1, "decoded_token": "Par"}},
                            {"5": {"logprob": -0.2, "rank": 1, "decoded_token": "is"}}]
    body = completion([choice("")]) | {"prompt_logprobs": prompt_lp}
    server = Server(lambda b: ok(body))
    adapter = adapter_for(server, "vllm")
    score = ChatRequest(mode="score", messages=[Message(role="user", content="q"),
                                                Message(role="assistant", content="Paris")])
    resp = await adapter.chat(score)
    sent = server.bodies[0]
    assert sent["prompt_logprobs"] == 0 and sent["continue_final_message"] is True
    assert sent["messages"][-1] == {"role": "assistant", "content": "Paris"}
    lp = resp.choices[0].logprobs
    assert lp is not None and [(t.token, t.logprob) for t in lp] == [("Par", -0.7), ("is", -0.2)]
    assert resp.choices[0].text == "Paris" and resp.notes == []
    await adapter.aclose()


# --- keys and the factory --------------------------------------------------------------


def test_missing_key_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthError) as info:
        create_adapter(load_profile("openai"), model=None, base_url=None, api_key=None, timeout=5)
    assert str(info.value) == "missing API key for provider 'openai': set OPENAI_API_KEY"


def test_key_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789")
    profile = load_profile("openai")
    assert resolve_api_key(profile, "sk-explicit-0123456789") == "sk-explicit-0123456789"
    assert resolve_api_key(profile, None) == "sk-from-env-0123456789"
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert resolve_api_key(load_profile("vllm"), None) is None  # local servers: optional
    assert resolve_api_key(load_profile("local"), None) is None


async def test_local_server_never_receives_the_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    server = Server(lambda b: ok(completion([choice("x")])))
    client = openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(server))
    adapter = OpenAIChatAdapter(load_profile("vllm"), api_key=resolve_api_key(load_profile("vllm"), None),
                                http_client=client)
    await adapter.chat(req())
    assert KEY not in server.headers[0].get("authorization", "")
    await adapter.aclose()


async def test_factory_applies_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    adapter = create_adapter(load_profile("openai"), model="gpt-4.1-mini", base_url="http://127.0.0.1:9/v1",
                             api_key=None, timeout=5, max_concurrency=3)
    assert isinstance(adapter, OpenAIChatAdapter)
    assert adapter.model == "gpt-4.1-mini"
    await adapter.aclose()
    await adapter.aclose()  # idempotent


def test_profile_without_base_url_is_a_config_error() -> None:
    profile = load_profile("vllm").model_copy(update={"base_url": None})
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIChatAdapter(profile)


# --- error mapping over the mock transport (full matrix over real HTTP: end of this file) ---


def error(status: int, message: str, type_: str | None = None, code: str | None = None,
          headers: dict[str, str] | None = None) -> Callable[[dict[str, Any]], httpx2.Response]:
    body = {"error": {"message": message, "type": type_, "code": code, "param": None}}
    return lambda b: httpx2.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(("handler", "expected", "reason"), [
    (error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
     QuotaExhausted, None),
    (error(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after-ms": "1500"}),
     RateLimited, None),
    (error(401, f"Incorrect API key provided: {KEY}"), AuthError, None),
    (error(403, "not allowed"), AuthError, None),
    (error(400, "bad param"), BadRequest, None),
    (error(404, "no such model"), BadRequest, None),
    (error(422, "unprocessable"), BadRequest, None),
    (error(400, "This model does not support logprobs"), CapabilityError, None),
    (error(408, "timeout"), TransientError, "408"),
    (error(409, "conflict"), TransientError, "409"),
    (error(500, "boom"), TransientError, "500"),
    (error(503, "unavailable"), TransientError, "503"),
    (error(500, "broken", headers={"x-should-retry": "false"}), FatalError, None),
])
async def test_error_mapping(handler: Callable[[dict[str, Any]], httpx2.Response],
                             expected: type[Exception], reason: str | None) -> None:
    adapter = adapter_for(Server(handler))
    exc = await raises_exactly(adapter.chat(req(logprobs=expected is CapabilityError)), expected, reason)
    assert KEY not in str(exc) and "openai" in str(exc)
    if isinstance(exc, RateLimited):
        assert exc.retry_after == pytest.approx(1.5)
    await adapter.aclose()


async def test_timeout_and_connection_errors() -> None:
    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    for fn, reason in ((slow, "timeout"), (refused, "connection")):
        client = openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(fn))
        adapter = OpenAIChatAdapter(load_profile("openai"), api_key=KEY, http_client=client)
        await raises_exactly(adapter.chat(req()), TransientError, reason)
        await adapter.aclose()


async def test_completions_style_logprobs_layout_is_read() -> None:
    legacy = {"tokens": ["Ye", "s"], "token_logprobs": [-0.2, -9999.0],
              "top_logprobs": [{"Ye": -0.2, "No": -1.9}, {"s": -0.01}]}
    body = completion([{"index": 0, "finish_reason": "stop", "logprobs": legacy,
                        "message": {"role": "assistant", "content": "Yes"}}])
    adapter = adapter_for(Server(lambda b: ok(body)), "together")
    resp = await adapter.chat(req(logprobs=True, top_logprobs=2))
    lp = resp.choices[0].logprobs
    assert lp is not None
    assert [(t.token, t.logprob) for t in lp] == [("Ye", -0.2), ("s", None)]
    assert [(a.token, a.logprob) for a in lp[0].top] == [("Ye", -0.2), ("No", -1.9)]
    await adapter.aclose()


# --- every error class through the real SDK over real HTTP (the emulator on 127.0.0.1) ---

EMU_KEY = "sk-emulator-key-0123456789abcdef"


def emu_adapter(emu: Emulator, path: str = "/v1", *, key: str = EMU_KEY, timeout: float = 10.0,
                model: str = "gpt-4o-mini") -> OpenAIChatAdapter:
    return OpenAIChatAdapter(load_profile("openai"), model=model, base_url=emu.base_url + path,
                             api_key=key, timeout=timeout)


async def test_real_http_success_with_logprobs_n_and_ratelimit_headers() -> None:
    async with Emulator(api_key=EMU_KEY, rpm=6000, tpm=10_000_000, ratelimit_headers=True) as emu:
        adapter = emu_adapter(emu)
        resp = await adapter.chat(req(logprobs=True, top_logprobs=3, n=2, seed=1, temperature=1.0))
        assert len(resp.choices) == 2 and resp.calls == 1
        for c in resp.choices:
            assert c.logprobs and all(t.logprob is None or t.logprob <= 0 for t in c.logprobs)
            assert all(len(t.top) <= 3 for t in c.logprobs)
        assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
        assert resp.ratelimit is not None and resp.ratelimit.limit_requests == 6000
        assert resp.ratelimit.reset_requests_s is not None
        await adapter.aclose()


@pytest.mark.parametrize(("fault", "expected", "reason"), SHARED_FAULTS)
async def test_emulator_faults_map_to_clearapi_errors(fault: str, expected: type[Exception],
                                                      reason: str | None) -> None:
    async with Emulator(api_key=EMU_KEY, fault_at={1: fault}) as emu:
        adapter = emu_adapter(emu)
        exc = await raises_exactly(adapter.chat(req()), expected, reason)
        assert EMU_KEY not in str(exc)
        if isinstance(exc, RateLimited):
            assert exc.retry_after is not None and exc.retry_after > 0
        resp = await adapter.chat(req())  # the next request is fine: nothing sticky
        assert resp.text
        await adapter.aclose()


async def test_emulator_hang_is_a_timeout() -> None:
    async with Emulator(api_key=EMU_KEY, fault_at={1: "hang"}) as emu:
        adapter = emu_adapter(emu, timeout=0.5)
        await raises_exactly(adapter.chat(req()), TransientError, "timeout")
        await adapter.aclose()


async def test_wrong_key_is_auth_error_without_the_key() -> None:
    wrong = "sk-wrong-key-abcdefghijklmnop"
    async with Emulator(api_key=EMU_KEY) as emu:
        adapter = emu_adapter(emu, key=wrong)
        with pytest.raises(AuthError) as info:
            await adapter.chat(req())
        assert wrong not in str(info.value) and "401" in str(info.value)
        await adapter.aclose()


async def test_connection_refused_is_transient() -> None:
    async with Emulator() as emu:
        url = emu.base_url
    adapter = OpenAIChatAdapter(load_profile("openai"), base_url=url + "/v1", api_key=EMU_KEY, timeout=5)
    await raises_exactly(adapter.chat(req()), TransientError, "connection")
    await adapter.aclose()


@pytest.mark.parametrize(("code", "expected", "reason"), [
    *SHARED_STATUSES,
    ("400-logprobs", CapabilityError, None),
    ("502", TransientError, "502"),
])
async def test_status_codes_map_over_real_http(code: str, expected: type[Exception],
                                               reason: str | None) -> None:
    async with Emulator(api_key=EMU_KEY, extensions=[install_status_routes]) as emu:
        adapter = emu_adapter(emu, f"/status/{code}/v1")
        exc = await raises_exactly(adapter.chat(req(logprobs=True)), expected, reason)
        assert "openai" in str(exc) and code.split("-")[0] in str(exc)
        if expected is CapabilityError:
            assert "gpt-4o-mini" in str(exc)
            assert adapter.capabilities.logprobs is False  # remembered
        await adapter.aclose()


async def test_failed_extra_call_raises_one_mapped_error() -> None:
    calls = iter(range(100))

    def handler(body: dict[str, Any]) -> httpx2.Response:
        if next(calls) == 2:
            return httpx2.Response(503, json={"error": {"message": "busy", "type": "server_error"}})
        return ok(completion([choice("x")]))

    adapter = adapter_for(Server(handler))
    await raises_exactly(adapter.chat(req(n=4, seed=1)), TransientError, "503")
    await adapter.aclose()


async def test_score_mode_without_prompt_logprobs_in_answer_is_learned() -> None:
    server = Server(lambda b: ok(completion([choice("")])))  # a server that ignores prompt_logprobs
    adapter = adapter_for(server, "vllm")
    score = ChatRequest(mode="score", messages=[Message(role="user", content="q"),
                                                Message(role="assistant", content="a")])
    with pytest.raises(CapabilityError, match="prompt_logprobs"):
        await adapter.chat(score)
    assert adapter.capabilities.score_given_text is False
    assert adapter.capabilities.logprobs is True  # generation logprobs are a separate matter
    with pytest.raises(CapabilityError, match="cannot score"):
        await adapter.chat(score)
    assert len(server.bodies) == 1
    await adapter.aclose()


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_convert_logprob_property(value: float) -> None:
    got, sentinel = convert_logprob(value)
    if got is None:
        assert sentinel
    else:
        assert not sentinel and -1000.0 <= got <= 0.0
        assert math.isclose(got, min(value, 0.0), abs_tol=1e-3)
