"""The Anthropic Messages adapter: request shaping, and every error class over real HTTP.

Request shaping is checked on the wire through an `httpx2.MockTransport` under the real
anthropic SDK; error mapping and n-as-separate-calls run against the emulator on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import anthropic
import httpx2
import pytest
from _adapter_errors import SHARED_FAULTS, SHARED_STATUSES, raises_exactly
from _status_routes import install_status_routes
from hypothesis import given
from hypothesis import strategies as st

from clearapi.adapters import create_adapter
from clearapi.adapters.anthropic_messages import AnthropicMessagesAdapter, to_anthropic_messages
from clearapi.errors import (
    AuthError,
    BadRequest,
    CapabilityError,
    RateLimited,
    TransientError,
)
from clearapi.profiles import load_profile
from clearapi.records import ChatRequest, Message
from clearapi_testing.emulator import Emulator

KEY = "sk-ant-test-0123456789abcdefghij"


def message_body(text: str = "Paris", stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 2}}


class Wire:
    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.body, self.headers = body, headers or {}
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(json.loads(request.content))
        return httpx2.Response(200, json=self.body, headers=self.headers)


def mock_adapter(wire: Wire, **kw: Any) -> AnthropicMessagesAdapter:
    client = anthropic.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(wire))
    return AnthropicMessagesAdapter(load_profile("anthropic"), api_key=KEY, http_client=client, **kw)


def test_system_turns_lifted_and_same_role_turns_merged() -> None:
    system, turns = to_anthropic_messages([
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi"),
        Message(role="user", content="What is 2+2?"),
        Message(role="developer", content="Answer with a number."),
        Message(role="assistant", content="4"),
        Message(role="tool", content="checked"),
        Message(role="user", content="Sure?"),
    ])
    assert system == "Be brief.\n\nAnswer with a number."
    assert turns == [{"role": "user", "content": "Hi\n\nWhat is 2+2?"},
                     {"role": "assistant", "content": "4"},
                     {"role": "user", "content": "checked\n\nSure?"}]


async def test_request_on_the_wire_and_response_mapping() -> None:
    reset = "2030-01-01T00:00:30Z"
    wire = Wire(message_body(), {"anthropic-ratelimit-requests-limit": "50",
                                 "anthropic-ratelimit-requests-remaining": "49",
                                 "anthropic-ratelimit-requests-reset": reset,
                                 "anthropic-ratelimit-tokens-limit": "30000"})
    adapter = mock_adapter(wire)
    resp = await adapter.chat(ChatRequest(
        messages=[Message(role="system", content="Be brief."), Message(role="user", content="Capital of France?")],
        temperature=1.7, top_p=0.9, stop=["\n\n"], seed=3, max_tokens=20))
    sent = wire.sent[0]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert sent["temperature"] == 1.0 and sent["top_p"] == 0.9
    assert sent["stop_sequences"] == ["\n\n"] and sent["max_tokens"] == 20
    assert "seed" not in sent and "n" not in sent
    assert any("clamped to 1.0" in n for n in resp.notes) and any("seed" in n for n in resp.notes)
    assert resp.text == "Paris" and resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 11 and resp.usage.completion_tokens == 2
    assert resp.ratelimit is not None and resp.ratelimit.limit_requests == 50
    assert resp.ratelimit.limit_tokens == 30000 and resp.ratelimit.reset_requests_s is not None
    await adapter.aclose()


async def test_logprobs_and_score_are_capability_errors_before_any_call() -> None:
    wire = Wire(message_body())
    adapter = mock_adapter(wire)
    assert adapter.capabilities.logprobs is False
    with pytest.raises(CapabilityError, match="logprobs"):
        await adapter.chat(ChatRequest(messages=[Message(role="user", content="q")], logprobs=True))
    with pytest.raises(CapabilityError, match="score"):
        await adapter.chat(ChatRequest(mode="score", messages=[Message(role="user", content="q"),
                                                               Message(role="assistant", content="a")]))
    assert wire.sent == []
    await adapter.aclose()


async def test_only_system_turns_is_bad_request() -> None:
    adapter = mock_adapter(Wire(message_body()))
    with pytest.raises(BadRequest, match="user turn"):
        await adapter.chat(ChatRequest(messages=[Message(role="system", content="x")]))
    await adapter.aclose()


# --- real HTTP against the emulator --------------------------------------------------------


def emu_adapter(emu: Emulator, path: str = "", *, key: str = KEY, timeout: float = 10.0) -> AnthropicMessagesAdapter:
    return AnthropicMessagesAdapter(load_profile("anthropic"), model="claude-3-5-haiku-latest",
                                    base_url=emu.base_url + path, api_key=key, timeout=timeout)


def q() -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="What is the capital of France?")],
                       temperature=1.0)


async def test_n_is_separate_concurrent_calls_over_http() -> None:
    async with Emulator(api_key=KEY, rpm=6000, tpm=10_000_000, ratelimit_headers=True) as emu:
        adapter = emu_adapter(emu)
        resp = await adapter.chat(q().model_copy(update={"n": 3}))
        assert len(resp.choices) == 3 and resp.calls == 3
        assert emu.stats().requests == 3
        assert any("3 separate calls" in n for n in resp.notes)
        assert resp.ratelimit is not None and resp.ratelimit.limit_requests == 6000
        await adapter.aclose()


@pytest.mark.parametrize(("fault", "expected", "reason"), [
    ("529", TransientError, "529"),  # Anthropic's "overloaded": busy, try again
    *SHARED_FAULTS,
])
async def test_emulator_faults_map_to_clearapi_errors(fault: str, expected: type[Exception],
                                                      reason: str | None) -> None:
    async with Emulator(api_key=KEY, fault_at={1: fault}) as emu:
        adapter = emu_adapter(emu)
        exc = await raises_exactly(adapter.chat(q()), expected, reason)
        assert KEY not in str(exc) and "anthropic" in str(exc)
        if isinstance(exc, RateLimited):
            assert exc.retry_after is not None and exc.retry_after > 0
        assert (await adapter.chat(q())).text
        await adapter.aclose()


async def test_hang_is_a_timeout() -> None:
    async with Emulator(api_key=KEY, fault_at={1: "hang"}) as emu:
        adapter = emu_adapter(emu, timeout=0.5)
        await raises_exactly(adapter.chat(q()), TransientError, "timeout")
        await adapter.aclose()


@pytest.mark.parametrize(("code", "expected", "reason"), [
    *SHARED_STATUSES,
    ("413", BadRequest, None),
    ("529", TransientError, "529"),
])
async def test_status_codes_map_over_real_http(code: str, expected: type[Exception],
                                               reason: str | None) -> None:
    async with Emulator(api_key=KEY, extensions=[install_status_routes]) as emu:
        adapter = emu_adapter(emu, f"/status/{code}")
        exc = await raises_exactly(adapter.chat(q()), expected, reason)
        assert code.split("-")[0] in str(exc)
        await adapter.aclose()


def test_factory_builds_anthropic_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AuthError, match=r"set ANTHROPIC_API_KEY$"):
        create_adapter(load_profile("anthropic"), timeout=5)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    adapter = create_adapter(load_profile("anthropic"), model="claude-sonnet-4", timeout=5)
    assert isinstance(adapter, AnthropicMessagesAdapter) and adapter.model == "claude-sonnet-4"


async def test_one_failed_sample_fails_the_call_with_a_plain_error() -> None:
    async with Emulator(api_key=KEY, fault_at={2: "529"}) as emu:
        adapter = emu_adapter(emu)
        # exactly a TransientError: not an ExceptionGroup the engine cannot classify
        await raises_exactly(adapter.chat(q().model_copy(update={"n": 3})), TransientError, "529")
        await adapter.aclose()



roles = st.sampled_from(["system", "developer", "user", "assistant", "tool"])


@given(st.lists(st.tuples(roles, st.text(alphabet="abc xyz", min_size=1, max_size=8).filter(str.strip)),
                min_size=1, max_size=12))
def test_anthropic_turns_always_alternate_and_lose_no_text(turns: list[tuple[str, str]]) -> None:
    messages = [Message(role=r, content=c) for r, c in turns]  # type: ignore[arg-type]
    system, out = to_anthropic_messages(messages)
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(out))
    assert {t["role"] for t in out} <= {"user", "assistant"}
    joined = "\n\n".join(t["content"] for t in out) + "\n\n" + (system or "")
    for _, content in turns:
        assert content in joined
