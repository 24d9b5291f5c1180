"""Batch mode end to end: the real openai / anthropic SDKs against the emulator's Batches routes.

Each test runs the real engine, adapters, submitters and CLEAR pipeline over HTTP to
127.0.0.1; only the poll interval and linger are shortened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from clearapi.clear.curation import curate
from clearapi.engine import Engine
from clearapi.engine.batch import BatchOptions, custom_id_for
from clearapi.engine.cache import open_db
from clearapi.errors import BadRequest
from clearapi.profiles import load_profile
from clearapi.records import ChatRequest, Message, Summary
from clearapi_testing.emulator import EmulatorThread
from clearapi_testing.emulator_batches import ERROR_MARKER, BatchBehaviour, batches_extension
from clearapi_testing.emulator_files import files_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "qa.jsonl"
FAST = BatchOptions(linger=0.05, poll_interval=0.01)

Factory = Callable[..., EmulatorThread]


def _engine(emu: EmulatorThread, cache: Path | bool, batch: bool | BatchOptions = False,
            provider: str = "openai") -> Engine:
    base = emu.base_url + "/v1" if provider == "openai" else emu.base_url
    return Engine(provider, base_url=base, api_key="test-key", cache=cache, rpm=1e6, tpm=1e9,
                  max_concurrency=32, progress=False, batch=batch)


async def _curate(emu: EmulatorThread, data: Path, out: Path, cache: Path | bool,
                  batch: bool | BatchOptions = False, **options: object) -> Summary:
    async with _engine(emu, cache, batch) as engine:
        return await curate(data, out, engine=engine, **options)


def _subset(tmp: Path, rows: int, marked: set[int]) -> Path:
    """The first `rows` example rows; rows in `marked` (0-based) carry the batch error marker."""
    lines = EXAMPLES.read_bytes().splitlines()[:rows]
    out = []
    for i, raw in enumerate(lines):
        obj = orjson.loads(raw)
        if i in marked:
            user = next(m for m in reversed(obj["messages"]) if m["role"] == "user")
            user["content"] += f" ({ERROR_MARKER})"
        out.append(orjson.dumps(obj))
    path = tmp / "data.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    return path


def _retries(summary: Summary) -> dict[str, int]:
    """Retries but those of submitting: the rude emulator's stray 500 is drawn from the body, and
    a multipart upload's body has a random boundary, so a submission meets one now and then."""
    return {k: v for k, v in summary.engine.retries.items() if k != "batch_submit"}


def _chat_calls(emu: EmulatorThread) -> int:
    return emu.stats().by_path.get("/v1/chat/completions", 0)


def test_batch_run_writes_the_same_scores_as_online_at_half_the_cost(
        tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour()
    emu = emulator_factory(extensions=[batches_extension(beh)])
    online = asyncio.run(_curate(emu, EXAMPLES, tmp_path / "online", tmp_path / "online.sqlite",
                                 filter_fraction=0.5))
    calls_online = _chat_calls(emu)
    batch = asyncio.run(_curate(emu, EXAMPLES, tmp_path / "batch", tmp_path / "batch.sqlite", FAST,
                                filter_fraction=0.5))

    for name in ("scores.jsonl", "curated.jsonl", "rejects.jsonl"):
        assert (tmp_path / "batch" / name).read_bytes() == (tmp_path / "online" / name).read_bytes(), name
    assert batch.counts == online.counts and batch.counts.adds_up
    assert _chat_calls(emu) == calls_online  # the batch run made no online call
    # logical calls: the emulator's stray 500s make the online run send a few retries
    calls_online = online.engine.logical_calls
    assert batch.engine.batch_requests == calls_online
    # stage 1 (every row's independent calls) is one batch; judgements, if any, the next
    judged = sum(1 for line in (tmp_path / "batch" / "scores.jsonl").read_bytes().splitlines()
                 if b'"judgement"' in line)
    assert beh.created and len(beh.created) == (2 if judged else 1) == batch.engine.batches
    assert sum(beh.submitted.values()) == calls_online and not beh.paid_twice
    # cost: the same tokens at the profile's price, less its batch discount
    price = load_profile("openai").price_for("gpt-4o-mini")
    assert price is not None and price.batch_discount == 0.5
    assert batch.engine.prompt_tokens == online.engine.prompt_tokens
    assert batch.engine.completion_tokens == online.engine.completion_tokens
    listed = (batch.engine.prompt_tokens * price.input + batch.engine.completion_tokens * price.output) / 1e6
    assert online.engine.cost_usd == pytest.approx(listed)
    assert batch.engine.cost_usd == pytest.approx(listed * 0.5)


def test_expired_and_errored_lines_are_retried_online_and_nothing_is_lost(
        tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(expire_every=5)
    emu = emulator_factory(extensions=[batches_extension(beh)], polite=True)  # counts requests exactly
    data = _subset(tmp_path, 12, marked={1, 6})
    online = asyncio.run(_curate(emu, data, tmp_path / "online", False))
    before = _chat_calls(emu)
    batch = asyncio.run(_curate(emu, data, tmp_path / "batch", tmp_path / "c.sqlite", FAST))

    assert (tmp_path / "batch" / "scores.jsonl").read_bytes() == (tmp_path / "online" / "scores.jsonl").read_bytes()
    assert batch.counts.rows == 12 and batch.counts.rejected == 0 and batch.counts.adds_up
    total = online.engine.requests
    marked_lines = 2 * 2  # two marked rows x (rating + answers)
    expired = sum(1 for i in range(1, total + 1) if i % 5 == 0)
    retried = batch.engine.retries
    assert retried.get("batch_expired", 0) == expired
    assert retried.get("batch_500", 0) + retried.get("batch_expired", 0) == _chat_calls(emu) - before
    assert retried.get("batch_500", 0) >= marked_lines - expired  # a marked line may expire instead
    assert batch.engine.batch_requests + (_chat_calls(emu) - before) == total
    assert batch.engine.failures == 0


def test_retry_in_a_new_batch(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour()  # a marked line errors the first time only
    emu = emulator_factory(extensions=[batches_extension(beh)])
    data = _subset(tmp_path, 6, marked={0, 3})
    opts = BatchOptions(linger=0.05, poll_interval=0.01, retry="batch")
    summary = asyncio.run(_curate(emu, data, tmp_path / "out", tmp_path / "c.sqlite", opts))
    assert _chat_calls(emu) == 0
    assert len(beh.created) == 2 and summary.engine.batches == 2
    assert len(beh.errored) == 4 and sorted(beh.submitted[c] for c in beh.errored) == [2, 2, 2, 2]
    assert _retries(summary) == {"batch_500": 4}
    assert summary.counts.rows == 6 and summary.counts.rejected == 0


def test_requests_are_split_at_the_per_batch_limits(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(max_requests=10)  # the emulator refuses larger batches, like the service
    # counts batches and online calls exactly: a stray 500 on a submission would send its requests online
    emu = emulator_factory(extensions=[batches_extension(beh)], polite=True)
    data = _subset(tmp_path, 23, marked=set())
    summary = asyncio.run(_curate(emu, data, tmp_path / "a", tmp_path / "a.sqlite",
                                  BatchOptions(linger=0.05, poll_interval=0.01, max_requests=10)))
    sizes = emu.call(lambda e: [len(b.lines) for b in e.state.store["batches"].values()])
    assert summary.counts.rejected == 0 and _chat_calls(emu) == 0
    assert sorted(sizes) == [6, 10, 10, 10, 10] and len(beh.submitted) == 46 and not beh.paid_twice
    assert summary.engine.batches == 5

    beh2 = BatchBehaviour()
    emu2 = emulator_factory(extensions=[batches_extension(beh2)], polite=True)
    limit = 4000
    summary2 = asyncio.run(_curate(emu2, data, tmp_path / "b", tmp_path / "b.sqlite",
                                   BatchOptions(linger=0.05, poll_interval=0.01, max_bytes=limit)))
    inputs = emu2.call(lambda e: [f.data for f in files_store(e.state).list("batch")])
    assert len(inputs) >= 2 and all(len(d) <= limit for d in inputs)
    assert sum(len(d.splitlines()) for d in inputs) == 46 and summary2.counts.rejected == 0
    assert (tmp_path / "a" / "scores.jsonl").read_bytes() == (tmp_path / "b" / "scores.jsonl").read_bytes()


def test_permanent_line_error_raises_like_online(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(error_status=400, error_once=False)
    emu = emulator_factory(extensions=[batches_extension(beh)])
    request = ChatRequest(messages=[Message(role="user", content=f"hello {ERROR_MARKER}")], max_tokens=5)

    async def main() -> None:
        async with _engine(emu, tmp_path / "c.sqlite", FAST) as engine:
            with pytest.raises(BadRequest, match="batch line HTTP 400"):
                await engine.chat(request)
            assert engine.stats.failures == 1

    asyncio.run(main())
    assert _chat_calls(emu) == 0


def test_batches_are_recorded_and_a_finished_run_repeats_nothing(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour()
    emu = emulator_factory(extensions=[batches_extension(beh)])
    data = _subset(tmp_path, 5, marked=set())
    cache = tmp_path / "c.sqlite"
    asyncio.run(_curate(emu, data, tmp_path / "1", cache, FAST))
    again = asyncio.run(_curate(emu, data, tmp_path / "2", cache, FAST))
    assert len(beh.created) == 1 and again.engine.batches == 0 and again.engine.requests == 0
    conn = open_db(cache)
    rows = conn.execute("SELECT id, provider, status, request_count FROM batches").fetchall()
    reqs = conn.execute("SELECT custom_id, key, status, request FROM batch_requests").fetchall()
    conn.close()
    assert rows == [(beh.created[0], "openai", "collected", 10)]
    assert {r[0] for r in reqs} == set(beh.submitted)
    assert all(custom_id_for(key) == cid and status == "done" and req is None for cid, key, status, req in reqs)


def test_anthropic_message_batches_match_online(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(expire_every=7)
    emu = emulator_factory(extensions=[batches_extension(beh)], polite=True)  # counts requests exactly
    data = _subset(tmp_path, 4, marked={2})

    async def run(out: str, cache: Path | bool, batch: bool | BatchOptions) -> Summary:
        async with _engine(emu, cache, batch, provider="anthropic") as engine:
            return await curate(data, tmp_path / out, engine=engine)

    online = asyncio.run(run("online", False, False))
    before = emu.stats().by_path.get("/v1/messages", 0)
    batch = asyncio.run(run("batch", tmp_path / "c.sqlite", FAST))
    assert (tmp_path / "batch" / "scores.jsonl").read_bytes() == (tmp_path / "online" / "scores.jsonl").read_bytes()
    judged = (tmp_path / "batch" / "scores.jsonl").read_bytes().count(b'"judgement"')
    # one batch for the independent calls; judgements (both orders, the second only when the
    # first can still change the decision) come in later stages
    assert (len(beh.created) > 1) == bool(judged) and len(beh.created) <= 3
    assert all(b.startswith("msgbatch_") for b in beh.created)
    assert not beh.paid_twice
    retried = sum(batch.engine.retries.values())
    assert retried >= 1 and emu.stats().by_path.get("/v1/messages", 0) - before == retried
    assert batch.engine.batch_requests + retried == online.engine.requests
    assert 0 < batch.engine.cost_usd < online.engine.cost_usd


def test_dry_run_estimate_uses_the_batch_price() -> None:
    from clearapi.clear.curation import estimate

    full = estimate(EXAMPLES, provider="openai")
    half = estimate(EXAMPLES, provider="openai", batch=True)
    assert full.cost_usd and half.cost_usd == pytest.approx(full.cost_usd * 0.5)
    assert half.calls == full.calls


def test_batch_mode_needs_a_provider_with_a_batch_api() -> None:
    from clearapi.errors import ConfigError

    assert load_profile("llamacpp-server").capabilities_for(None).batch is False
    with pytest.raises(ConfigError, match="no batch API"):
        Engine("llamacpp-server", base_url="http://127.0.0.1:9/v1", cache=False, batch=True)


def test_a_batch_that_fails_validation_is_served_online(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(max_requests=3)  # the service refuses the whole file; the client did not know
    emu = emulator_factory(extensions=[batches_extension(beh)])
    data = _subset(tmp_path, 4, marked=set())
    summary = asyncio.run(_curate(emu, data, tmp_path / "out", tmp_path / "c.sqlite", FAST))
    assert len(beh.created) == 1 and summary.engine.batch_requests == 0
    assert _retries(summary) == {"batch_batch_failed": 8} and _chat_calls(emu) == 8
    assert summary.counts.rows == 4 and summary.counts.rejected == 0


def test_emulator_batches_through_the_openai_sdk(emulator_factory: Factory) -> None:
    import openai

    beh = BatchBehaviour(polls_per_step=2)
    emu = emulator_factory(extensions=[batches_extension(beh)])

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        lines = [orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "gpt-4o-mini", "max_tokens": 5,
                                        "messages": [{"role": "user", "content": f"say {i}"}]}})
                 for i in range(3)]
        f = await client.files.create(file=("in.jsonl", b"\n".join(lines), "application/jsonl"), purpose="batch")
        b = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        seen = [b.status]
        while b.status not in ("completed", "failed", "expired", "cancelled"):
            b = await client.batches.retrieve(b.id)
            if b.status != seen[-1]:
                seen.append(b.status)
        assert seen == ["validating", "in_progress", "finalizing", "completed"]
        assert b.request_counts is not None and b.request_counts.completed == 3 and b.error_file_id is None
        assert b.output_file_id is not None
        out = (await client.files.content(b.output_file_id)).content.splitlines()
        online = await client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                                      messages=[{"role": "user", "content": "say 1"}])
        row = next(orjson.loads(x) for x in out if orjson.loads(x)["custom_id"] == "r1")
        assert row["response"]["status_code"] == 200
        choice = row["response"]["body"]["choices"][0]
        assert choice["message"]["content"] == online.choices[0].message.content
        assert choice["finish_reason"] == online.choices[0].finish_reason

        c = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        c = await client.batches.cancel(c.id)
        assert c.status == "cancelling"
        while c.status == "cancelling":
            c = await client.batches.retrieve(c.id)
        assert c.status == "cancelled" and c.error_file_id is not None
        errors = [orjson.loads(x) for x in (await client.files.content(c.error_file_id)).content.splitlines()]
        assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and len(errors) == 3
        await client.close()

    asyncio.run(main())


def test_a_recorded_batch_the_provider_no_longer_knows_is_sent_again(
        tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(hold=True)
    emu = emulator_factory(extensions=[batches_extension(beh)])
    data = _subset(tmp_path, 3, marked=set())
    cache = tmp_path / "c.sqlite"

    async def interrupted() -> None:
        task = asyncio.ensure_future(_curate(emu, data, tmp_path / "1", cache, FAST))
        assert await asyncio.to_thread(beh.polled.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    conn = open_db(cache)
    assert conn.execute("SELECT status FROM batches").fetchall() != [("collected",)]
    conn.close()

    emu.call(lambda e: e.state.store["batches"].clear())  # deleted, or never this account's: 404
    beh.hold = False
    summary = asyncio.run(_curate(emu, data, tmp_path / "2", cache, FAST))
    assert _retries(summary) == {"batch_lost": 6} and _chat_calls(emu) == 6
    assert summary.counts.rows == 3 and summary.counts.rejected == 0
    conn = open_db(cache)
    assert conn.execute("SELECT status FROM batches").fetchall() == [("collected",)]
    conn.close()


def test_a_refused_batch_is_served_online(tmp_path: Path, emulator_factory: Factory) -> None:
    beh = BatchBehaviour(max_requests=2)  # Anthropic answers 413 request_too_large at create
    emu = emulator_factory(extensions=[batches_extension(beh)])
    data = _subset(tmp_path, 1, marked=set())

    async def main() -> Summary:
        async with _engine(emu, tmp_path / "c.sqlite", FAST, provider="anthropic") as engine:
            return await curate(data, tmp_path / "out", engine=engine)

    summary = asyncio.run(main())
    refused = summary.engine.retries.get("batch_refused", 0)
    # the first stage (7 requests) is over the limit and goes online; a later judgement stage
    # small enough for the limit may still go as a batch
    assert refused >= 7 and summary.engine.batch_requests <= beh.max_requests * len(beh.created)
    assert emu.stats().by_path.get("/v1/messages", 0) == refused
    assert summary.engine.requests == refused + summary.engine.batch_requests
    assert summary.counts.rows == 1 and summary.counts.rejected == 0


@pytest.mark.parametrize("failures", [2, 4])
def test_a_stray_500_on_submitting_is_tried_again_before_going_online(
        tmp_path: Path, emulator_factory: Factory, failures: int) -> None:
    """Upload and create are retried like any call (a 500 there is as transient as anywhere);
    only after the last try does the group go online, at the full price."""
    beh = BatchBehaviour()
    emu = emulator_factory(extensions=[batches_extension(beh)], polite=True, fault_script=[("500", failures)])
    data = _subset(tmp_path, 2, marked=set())
    summary = asyncio.run(_curate(emu, data, tmp_path / "batch", tmp_path / "batch.sqlite", FAST))
    retries = summary.engine.retries
    assert emu.stats().by_path.get("/v1/files", 0) >= failures  # the first requests of the run fail
    assert summary.counts.rows == 2 and summary.counts.failed == 0 and summary.counts.adds_up
    if failures < 4:
        assert retries.get("batch_submit") == failures and "batch_submit_failed" not in retries
        assert _chat_calls(emu) == 0 and len(beh.created) >= 1
    else:
        assert retries.get("batch_submit") == 3 and retries.get("batch_submit_failed", 0) >= 1
        assert _chat_calls(emu) == retries["batch_submit_failed"]  # that group went online, nothing else
    online = asyncio.run(_curate(emu, data, tmp_path / "online", False))
    assert online.counts == summary.counts
    assert (tmp_path / "batch" / "scores.jsonl").read_bytes() == (tmp_path / "online" / "scores.jsonl").read_bytes()
