"""The engine end to end: the real openai and anthropic SDK adapters over real HTTP to the
loopback emulator. The emulator's own counters (``/stats``) are the witness of what was sent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clearapi import AuthError, ChatRequest, Engine, FatalError, Message, QuotaExhausted
from clearapi_testing.emulator import EmulatorThread

KEY = "sk-emu-test-7f3a9c1e5b2d4f6a8c0e1f2a3b4c5d6e"

# (provider, model, path appended to the emulator's URL)
PROVIDERS = [("openai", "gpt-4o-mini", "/v1"), ("anthropic", "claude-3-5-haiku-latest", "")]

#: generous limits so the emulator sends rate-limit headers and the engine learns them
FAST = {"rpm": 30_000, "tpm": 30_000_000}


def question(i: int) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=f"Question {i}: what is {i} plus {i}?")],
                       max_tokens=16)


def engine_for(emu: EmulatorThread, provider: str, model: str, suffix: str, cache: Path | bool,
               **kw: Any) -> Engine:
    kw.setdefault("api_key", KEY)
    kw.setdefault("max_concurrency", 8)
    return Engine(provider, model=model, base_url=emu.base_url + suffix, cache=cache, progress=False, **kw)


async def run_all(engine: Engine, n: int) -> list[str]:
    async with engine:
        return [r.text async for r in engine.map(range(n), lambda i: engine.chat(question(i)), window=32)]


@pytest.mark.slow
@pytest.mark.parametrize(("provider", "model", "suffix"), PROVIDERS)
def test_every_request_answered_under_faults_same_as_clean_and_zero_calls_on_rerun(
        emulator_factory: Callable[..., EmulatorThread], tmp_path: Path, provider: str, model: str,
        suffix: str) -> None:
    n = 80
    clean_emu = emulator_factory(api_key=KEY, polite=True, **FAST)  # counts faults exactly
    clean = asyncio.run(run_all(engine_for(clean_emu, provider, model, suffix, tmp_path / "clean.sqlite"), n))

    faulty = emulator_factory(api_key=KEY, fault_rate=0.10, seed=7, ratelimit_headers=True, polite=True, **FAST)
    engine = engine_for(faulty, provider, model, suffix, tmp_path / "faulty.sqlite")
    answers = asyncio.run(run_all(engine, n))
    stats, emu_stats = engine.stats, faulty.stats()

    assert answers == clean  # nothing lost, nothing out of order, the same answers
    assert len(answers) == n and all(answers)
    assert sum(emu_stats.faults.values()) >= 5  # the faults really happened...
    assert sum(stats.retries.values()) == emu_stats.requests - n  # ...and each was retried once more
    assert stats.requests == emu_stats.requests
    assert stats.failures == 0 and stats.logical_calls == n
    assert emu_stats.repeated_ok_bodies == 0  # no answered request was paid for twice
    assert stats.learned_rpm == FAST["rpm"]  # learned from the rate-limit headers

    faulty.reset()
    again = engine_for(faulty, provider, model, suffix, tmp_path / "faulty.sqlite")
    assert asyncio.run(run_all(again, n)) == clean
    assert faulty.stats().requests == 0
    assert again.stats.cache_hits == n and again.stats.requests == 0


@pytest.mark.parametrize(("provider", "model", "suffix"), PROVIDERS)
def test_a_wrong_key_stops_the_run_fast_with_a_clear_message(
        emulator_factory: Callable[..., EmulatorThread], tmp_path: Path, provider: str, model: str,
        suffix: str) -> None:
    emu = emulator_factory(api_key=KEY, **FAST)
    wrong = "sk-wrong-key-0000111122223333444455556666"
    engine = engine_for(emu, provider, model, suffix, tmp_path / "c.sqlite", api_key=wrong)
    with pytest.raises(AuthError) as caught:
        asyncio.run(run_all(engine, 500))
    message = str(caught.value)
    kind, env = {"openai": ("invalid_api_key", "OPENAI_API_KEY"),
                 "anthropic": ("authentication_error", "ANTHROPIC_API_KEY")}[provider]
    assert message.startswith(f"{provider}: HTTP 401 {kind} for model {model!r}: ")
    assert message.endswith(f"(the key comes from {env})")
    assert wrong not in message and KEY not in message
    # stopped at once: at most the calls already in flight when the first 401 came back
    assert emu.stats().requests <= 8
    assert engine.stats.failures >= 1


@pytest.mark.parametrize(("provider", "model", "suffix"), PROVIDERS)
def test_insufficient_quota_stops_the_run_and_keeps_finished_work(
        emulator_factory: Callable[..., EmulatorThread], tmp_path: Path, provider: str, model: str,
        suffix: str) -> None:
    emu = emulator_factory(api_key=KEY, fault_at={40: "insufficient_quota"}, polite=True, **FAST)  # counts requests
    cache = tmp_path / "c.sqlite"
    engine = engine_for(emu, provider, model, suffix, cache, max_concurrency=4)
    got: list[str] = []

    async def run() -> None:
        async with engine:
            async for r in engine.map(range(300), lambda i: engine.chat(question(i)), window=16):
                got.append(r.text)

    with pytest.raises(QuotaExhausted) as caught:
        asyncio.run(run())
    status, kind, text = {
        "openai": (429, "insufficient_quota", "You exceeded your current quota"),
        "anthropic": (400, "invalid_request_error", "Your credit balance is too low"),
    }[provider]
    assert str(caught.value).startswith(f"{provider}: HTTP {status} {kind} for model {model!r}: {text}")
    sent = emu.stats().requests
    assert 40 <= sent <= 40 + 4  # nothing sent after the stop beyond what was in flight
    assert 30 <= len(got) < 40

    # everything yielded was committed; calls cut off in flight by the stop (at most the
    # concurrency) may be answered by the server but are not
    committed = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert len(got) <= committed and sent - 1 - 4 <= committed <= sent - 1

    # the credit is topped up: the re-run pays only for what is missing
    emu.configure(fault_at={})
    emu.reset()
    rerun = engine_for(emu, provider, model, suffix, cache)
    answers = asyncio.run(run_all(rerun, 300))
    assert answers[: len(got)] == got
    assert emu.stats().requests == 300 - committed
    assert rerun.stats.cache_hits == committed


def test_a_hung_request_times_out_and_is_retried(emulator_factory: Callable[..., EmulatorThread],
                                                 tmp_path: Path) -> None:
    emu = emulator_factory(api_key=KEY, fault_at={3: "hang"}, hang_seconds=30, **FAST)
    engine = engine_for(emu, "openai", "gpt-4o-mini", "/v1", False, timeout=0.5, max_concurrency=2)
    answers = asyncio.run(run_all(engine, 6))
    assert len(answers) == 6 and all(answers)
    assert engine.stats.retries.get("timeout") == 1


@pytest.mark.parametrize(("provider", "model", "suffix"), PROVIDERS)
def test_the_cache_file_never_holds_the_api_key(emulator_factory: Callable[..., EmulatorThread],
                                                tmp_path: Path, provider: str, model: str, suffix: str) -> None:
    emu = emulator_factory(api_key=KEY, **FAST)
    cache = tmp_path / "c.sqlite"
    asyncio.run(run_all(engine_for(emu, provider, model, suffix, cache), 20))
    files = list(tmp_path.iterdir())
    assert cache in files
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and KEY[8:30].encode() not in data, path
    rows = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert rows == 20


def test_engine_paces_at_the_servers_rpm_without_429s(emulator_factory: Callable[..., EmulatorThread],
                                                      tmp_path: Path) -> None:
    emu = emulator_factory(api_key=KEY, rpm=1200, tpm=10_000_000, ratelimit_headers=True)
    engine = engine_for(emu, "openai", "gpt-4o-mini", "/v1", False, max_concurrency=32)
    asyncio.run(run_all(engine, 60))
    # the first answer's headers told the engine the limit: it never ran into it
    assert emu.stats().rate_limited == 0
    assert engine.stats.learned_rpm == 1200


_KILLED_RUN = textwrap.dedent("""
    import asyncio, sys
    from clearapi import ChatRequest, Engine, Message

    base_url, cache, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    async def main():
        async with Engine("openai", model="gpt-4o-mini", base_url=base_url, api_key=key, cache=cache,
                          max_concurrency=4, rpm=30000, progress=False) as engine:
            q = lambda i: ChatRequest(messages=[Message(role="user", content=f"Question {i}: what is {i} plus {i}?")],
                                      max_tokens=16)
            async for _ in engine.map(range(n), lambda i: engine.chat(q(i))):
                pass

    asyncio.run(main())
""")


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_without_repeating_completed_requests(
        emulator_factory: Callable[..., EmulatorThread], tmp_path: Path) -> None:
    n = 200
    emu = emulator_factory(api_key=KEY, latency={"kind": "fixed", "ms": 20}, polite=True, **FAST)  # counts requests
    cache = tmp_path / "c.sqlite"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, emu.base_url + "/v1", str(cache), KEY, str(n)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while emu.stats().status(200) < 60:  # wait until a good part is done, then kill mid-run
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    answered_before = emu.stats().status(200)
    assert answered_before < n  # killed mid-run
    committed = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert answered_before - 4 <= committed <= answered_before  # only calls in flight were lost

    emu.reset()
    engine = engine_for(emu, "openai", "gpt-4o-mini", "/v1", cache, max_concurrency=4)
    answers = asyncio.run(run_all(engine, n))
    assert len(answers) == n
    assert emu.stats().requests == n - committed  # only the missing calls were made
    assert engine.stats.cache_hits == committed


def test_fatal_error_class_is_what_map_raises(emulator_factory: Callable[..., EmulatorThread],
                                             tmp_path: Path) -> None:
    """The CLI's exit code depends on this: run-stopping errors are FatalErrors."""
    emu = emulator_factory(api_key=KEY, fault_at={1: "401"}, **FAST)
    engine = engine_for(emu, "openai", "gpt-4o-mini", "/v1", False, max_concurrency=1)
    with pytest.raises(FatalError):
        asyncio.run(run_all(engine, 5))
    assert emu.stats().requests == 1


@pytest.mark.parametrize(("provider", "model", "suffix"), PROVIDERS)
def test_engine_paces_at_the_servers_tpm_without_429s(emulator_factory: Callable[..., EmulatorThread],
                                                      tmp_path: Path, provider: str, model: str,
                                                      suffix: str) -> None:
    # ~40 tokens a request (prompt + max_tokens 16, as the service counts) against 1,000 tokens/s
    emu = emulator_factory(api_key=KEY, rpm=100_000, tpm=60_000, ratelimit_headers=True)
    engine = engine_for(emu, provider, model, suffix, False, max_concurrency=32)
    answers = asyncio.run(run_all(engine, 80))
    assert len(answers) == 80
    assert emu.stats().rate_limited == 0
    assert engine.stats.learned_tpm == 60_000
