"""The SQLite response cache: keys, hits, file safety, concurrency across tasks and processes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from clearapi import ChatRequest, ConfigError, Engine, Message
from clearapi.cli import main as cli_main
from clearapi.engine.cache import MIGRATIONS, ResponseCache, cache_key, default_cache_path, open_db
from clearapi.profiles import Profile
from clearapi.records import ChatResponse, Choice, RateLimitInfo, Usage
from clearapi.testing import ScriptedAdapter

PROFILE = Profile(name="fake", protocol="openai_chat", default_model="m", base_url="http://127.0.0.1:1/v1")
SECRET = "sk-test-DO-NOT-STORE-0123456789abcdefABCDEF"


def req(text: str = "hello", **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def key(request: ChatRequest, **kw: str) -> str:
    args = {"profile": "fake", "protocol": "openai_chat", "base_url": "http://x/v1", "model": "m"} | kw
    return cache_key(request, **args)


# -- keys ---------------------------------------------------------------------------------------

def test_key_is_tagged_stable_and_ignores_only_the_tag() -> None:
    k = key(req())
    assert k.startswith("b2:") and len(k) == 3 + 64
    assert key(req()) == k
    assert key(req(tag="self_rating")) == k
    assert key(req(model="m")) == k  # the default model spelled out is the same request


@pytest.mark.parametrize("change", [
    {"text": "hello!"}, {"temperature": 1.0}, {"max_tokens": 9}, {"n": 3}, {"logprobs": True},
    {"seed": 1}, {"stop": ["\n"]}, {"sample_index": 1}, {"top_p": 0.5}, {"model": "other"},
])
def test_every_request_field_changes_the_key(change: dict[str, object]) -> None:
    fields = dict(change)
    text = str(fields.pop("text", "hello"))
    assert key(req(text, **fields)) != key(req())


def _key_as_of_version(request: ChatRequest, version: int) -> str:
    """The key formula written out independently, for a given format version."""
    import hashlib

    import orjson

    fields = request.model_dump(mode="json", exclude={"tag"})
    fields["model"] = request.model or "m"
    canonical = orjson.dumps({"v": version, "profile": "fake", "protocol": "openai_chat", "base_url": "http://x/v1",
                              "request": fields}, option=orjson.OPT_SORT_KEYS)
    return "b2:" + hashlib.blake2b(canonical, digest_size=32).hexdigest()


def test_generate_keys_survive_upgrades_and_score_keys_moved_on() -> None:
    # answers cached by earlier versions stay hits ...
    assert key(req()) == _key_as_of_version(req(), 1)
    # ... but a score response written before `end_logprob` existed must be a miss, not a poorer answer
    scored = ChatRequest(messages=[Message(role="user", content="q"), Message(role="assistant", content="a")],
                         mode="score", logprobs=True)
    assert key(scored) == _key_as_of_version(scored, 2) != _key_as_of_version(scored, 1)


@pytest.mark.parametrize("where", [{"profile": "other"}, {"base_url": "http://y/v1"}, {"model": "m2"},
                                   {"protocol": "anthropic_messages"}])
def test_where_the_request_goes_changes_the_key(where: dict[str, str]) -> None:
    assert key(req(), **where) != key(req())


def test_default_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLEARAPI_CACHE", str(tmp_path / "c.sqlite"))
    assert default_cache_path() == tmp_path / "c.sqlite"
    monkeypatch.delenv("CLEARAPI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "clearapi" / "cache.sqlite"


# -- the file -------------------------------------------------------------------------------

def test_file_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"

    async def main() -> None:
        cache = ResponseCache(path)
        await cache.put("b2:x", ChatResponse(choices=[Choice(text="a")]))
        # while open, the WAL side files exist; all three are private
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert p.exists(), p
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        await cache.aclose()

    asyncio.run(main())
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [1, 2, 3]
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"responses", "batches", "batch_requests", "schema_migrations"} <= tables
    conn.close()


def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    open_db(path).close()
    conn = open_db(path)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 3
    conn.close()


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database " * 100)
    with pytest.raises(ConfigError, match="not a usable clearapi cache"):
        open_db(path)


def test_stored_answer_drops_ratelimit_and_comes_back_marked_cached(tmp_path: Path) -> None:
    async def main() -> ChatResponse | None:
        cache = ResponseCache(tmp_path / "c.sqlite")
        resp = ChatResponse(choices=[Choice(text="hi")], usage=Usage(prompt_tokens=3, completion_tokens=1),
                            ratelimit=RateLimitInfo(limit_requests=5), notes=["n ignored"])
        await cache.put("b2:k", resp)
        assert await cache.get("b2:other") is None
        got = await cache.get("b2:k")
        await cache.aclose()
        return got

    got = asyncio.run(main())
    assert got is not None
    assert got.cached is True and got.ratelimit is None
    assert got.text == "hi" and got.usage.prompt_tokens == 3 and got.notes == ["n ignored"]


# -- through the engine -----------------------------------------------------------------------

def test_rerun_makes_zero_calls_and_the_file_never_holds_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"

    async def run() -> tuple[list[str], int, int, list[bool]]:
        adapter = ScriptedAdapter()
        async with Engine(PROFILE, adapter=adapter, cache=path, api_key=SECRET) as engine:
            answers = [a async for a in engine.map(range(40), lambda i: engine.chat(req(f"q {i}")))]
            return [a.text for a in answers], adapter.calls, engine.stats.cache_hits, [a.cached for a in answers]

    first, calls1, hits1, cached1 = asyncio.run(run())
    second, calls2, hits2, cached2 = asyncio.run(run())
    assert first == second == [f"echo: q {i}" for i in range(40)]
    assert (calls1, hits1) == (40, 0) and not any(cached1)
    assert (calls2, hits2) == (0, 40) and all(cached2)
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        assert SECRET.encode() not in data and b"DO-NOT-STORE" not in data, p


def test_errors_are_not_cached(tmp_path: Path) -> None:
    from clearapi import BadRequest

    async def run(script: list[object]) -> int:
        adapter = ScriptedAdapter(script)  # type: ignore[arg-type]
        async with Engine(PROFILE, adapter=adapter, cache=tmp_path / "c.sqlite") as engine:
            with contextlib.suppress(BadRequest):
                await engine.chat(req())
        return adapter.calls

    assert asyncio.run(run([BadRequest("400")])) == 1
    assert asyncio.run(run([])) == 1  # the failure was not remembered: asked again
    assert asyncio.run(run([])) == 0


def test_many_tasks_share_one_cache_file(tmp_path: Path) -> None:
    async def main() -> int:
        cache = ResponseCache(tmp_path / "c.sqlite")
        await asyncio.gather(*(cache.put(f"b2:{i}", ChatResponse(choices=[Choice(text=str(i))]))
                               for i in range(300)))
        got = await asyncio.gather(*(cache.get(f"b2:{i}") for i in range(300)))
        await cache.aclose()
        return sum(1 for i, g in enumerate(got) if g is not None and g.text == str(i))

    assert asyncio.run(main()) == 300


def _committed(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {k for (k,) in conn.execute("SELECT key FROM responses")}
    finally:
        conn.close()


def test_concurrent_answers_share_trips_and_each_put_returns_committed(tmp_path: Path) -> None:
    """Answers that arrive while the cache thread is busy go in one transaction together;
    a put returns only when another connection can already read its answer."""
    path = tmp_path / "c.sqlite"
    seen_by_other_connection: list[bool] = []

    async def main() -> tuple[int, int]:
        cache = ResponseCache(path)
        await cache.open()
        trips = 0
        run = cache._run

        async def counting(fn: Any) -> Any:
            nonlocal trips
            trips += 1
            return await run(fn)

        cache._run = counting  # type: ignore[method-assign]

        async def put(i: int) -> None:
            await cache.put(f"b2:{i}", ChatResponse(choices=[Choice(text=str(i))]))
            seen_by_other_connection.append(f"b2:{i}" in _committed(path))

        await asyncio.gather(*(put(i) for i in range(200)))
        writes = trips
        got = await asyncio.gather(*(cache.get(f"b2:{i}") for i in range(-50, 200)))
        await cache.aclose()
        assert [g.text if g else None for g in got] == [None] * 50 + [str(i) for i in range(200)]
        return writes, trips - writes

    writes, reads = asyncio.run(main())
    assert all(seen_by_other_connection) and len(seen_by_other_connection) == 200
    assert writes <= 3 and reads <= 3  # one trip each way, plus at most the stragglers of a busy thread


def test_a_failed_trip_fails_its_own_puts_only(tmp_path: Path) -> None:
    async def main() -> tuple[list[object], list[object]]:
        cache = ResponseCache(tmp_path / "c.sqlite")
        await cache.open()
        real = cache._write_many
        failures = [sqlite3.OperationalError("disk I/O error")]

        async def flaky(rows: dict[str, tuple[object, ...]]) -> dict[str, None]:
            if failures:
                raise failures.pop()
            return await real(rows)

        cache._writes._trip = flaky
        first = await asyncio.gather(*(cache.put(f"b2:a{i}", ChatResponse(choices=[Choice(text="a")]))
                                       for i in range(5)), return_exceptions=True)
        second = await asyncio.gather(*(cache.put(f"b2:b{i}", ChatResponse(choices=[Choice(text="b")]))
                                        for i in range(5)), return_exceptions=True)
        await cache.aclose()
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, sqlite3.OperationalError) for r in first)
    assert second == [None] * 5
    assert _committed(tmp_path / "c.sqlite") == {f"b2:b{i}" for i in range(5)}


def test_closing_commits_answers_already_handed_to_put(tmp_path: Path) -> None:
    async def main() -> None:
        cache = ResponseCache(tmp_path / "c.sqlite")
        await cache.open()
        puts = [asyncio.ensure_future(cache.put(f"b2:{i}", ChatResponse(choices=[Choice(text=str(i))])))
                for i in range(50)]
        await asyncio.sleep(0)  # the puts have queued their answers; none is committed yet
        await cache.aclose()
        await asyncio.gather(*puts)

    asyncio.run(main())
    assert _committed(tmp_path / "c.sqlite") == {f"b2:{i}" for i in range(50)}


def _writer(path: str, start: int, count: int) -> None:
    async def main() -> None:
        cache = ResponseCache(path)
        for i in range(start, start + count):
            await cache.put(f"b2:{i}", ChatResponse(choices=[Choice(text=str(i))]))
            if i % 10 == 0:
                await cache.get(f"b2:{i - 5}")
        await cache.aclose()

    asyncio.run(main())


def test_two_processes_write_the_same_file_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, n * 1000, 200)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 600
    conn.close()


# -- CLI ------------------------------------------------------------------------------------

def test_cli_path_stats_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.sqlite"
    _writer(str(path), 0, 7)
    assert cli_main(["cache", "path", "--cache", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert cli_main(["cache", "stats", "--cache", str(path)]) == 0
    out = capsys.readouterr().out
    assert "answers:   7" in out and f"schema v{MIGRATIONS[-1][0]}" in out
    assert cli_main(["cache", "clear", "--cache", str(path), "--older-than", "1"]) == 0
    assert "deleted 0" in capsys.readouterr().out
    assert cli_main(["cache", "clear", "--cache", str(path)]) == 0
    assert "deleted 7" in capsys.readouterr().out
    assert cli_main(["cache", "stats", "--json", "--cache", str(path)]) == 0
    assert '"entries": 0' in capsys.readouterr().out


def test_cli_on_a_missing_cache_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["cache", "stats", "--cache", str(tmp_path / "none.sqlite")]) == 0
    assert "no cache yet" in capsys.readouterr().out
    assert not (tmp_path / "none.sqlite").exists()
    assert os.listdir(tmp_path) == []


def _open_at_once(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        open_db(Path(path)).close()
    except ConfigError:
        with failures.get_lock():
            failures.value += 1


def test_processes_opening_a_new_cache_file_at_once_all_get_it(tmp_path: Path) -> None:
    # Ray workers open one cache file together; switching a new file to WAL is a lock SQLite
    # does not wait for, so without the open's own wait some of them failed ("database is locked").
    ctx = multiprocessing.get_context("fork")
    failures = ctx.Value("i", 0)
    for attempt in range(30):
        path = str(tmp_path / f"{attempt}.sqlite")
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, failures)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    assert failures.value == 0
    assert all(sqlite3.connect(tmp_path / f"{a}.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
               for a in range(30))
