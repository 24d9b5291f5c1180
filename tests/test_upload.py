"""`upload` end to end: the real openai SDK over HTTP to the emulator's Files/Jobs endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from clearapi.adapters.openai_chat import OpenAIChatAdapter
from clearapi.cli import main
from clearapi.errors import BadRequest, FatalError
from clearapi.finetune.upload import ValidationFailed, submit_job, watch_job
from clearapi.profiles import load_profile
from clearapi_testing.emulator import EmulatorThread
from clearapi_testing.emulator_files import FAIL_MARKER, install_files

KEY = "sk-test-upload-0123456789abcdef"


def _rows(n: int, extra: str = "") -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"Q{i}{extra}"}, {"role": "assistant", "content": f"A{i}"}]}
            for i in range(n)]


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def emu(emulator_factory: Callable[..., EmulatorThread], monkeypatch: pytest.MonkeyPatch) -> EmulatorThread:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    # the files endpoints are driven through the SDK with max_retries=0: a stray 500 would be the test's failure
    return emulator_factory(api_key=KEY, extensions=[install_files], polite=True)


def _cli(emu: EmulatorThread, *args: str) -> int:
    return main(["upload", *args, "--provider", "openai", "--base-url", emu.base_url + "/v1",
                 "--poll-interval", "0"])


def _sdk(emu: EmulatorThread) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=emu.base_url + "/v1", max_retries=0)


def test_upload_creates_job_and_prints_its_id(emu: EmulatorThread, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path / "train.jsonl", _rows(12))
    val = _write(tmp_path / "val.jsonl", _rows(3))
    assert _cli(emu, str(train), "--validation-file", str(val), "--suffix", "demo", "--epochs", "2",
                "--model", "gpt-4o-mini-2024-07-18") == 0
    captured = capsys.readouterr()
    job_line = next(ln for ln in captured.out.splitlines() if ln.startswith("created fine-tuning job "))
    job_id = job_line.split()[3]
    assert f"upload --watch {job_id}" in captured.out and KEY not in captured.out + captured.err
    stats = emu.stats()
    assert stats.by_path["/v1/files"] == 2 and stats.by_path["/v1/fine_tuning/jobs"] == 1
    sdk = _sdk(emu)
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    assert job.model == "gpt-4o-mini-2024-07-18" and job.method is not None and job.method.type == "supervised"
    assert job.hyperparameters.n_epochs == 2 and job.validation_file is not None
    assert sdk.files.content(job.training_file).read() == train.read_bytes()
    assert sdk.files.retrieve(job.training_file).purpose == "fine-tune"


def test_non_openai_fine_tuning_provider_is_refused(emu: EmulatorThread, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path / "train.jsonl", _rows(10))
    assert main(["upload", str(train), "--provider", "together"]) == 2
    assert "convert --target" in capsys.readouterr().err and emu.stats().requests == 0


def test_invalid_file_is_refused_before_any_request(emu: EmulatorThread, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.jsonl", [*_rows(5), {"messages": [{"role": "user", "content": "q"}]}])
    assert _cli(emu, str(bad)) == 1
    captured = capsys.readouterr()
    assert f"{bad}:6: messages: error: no assistant message to train on [no-assistant]" in captured.out
    assert "refusing to upload" in captured.err
    assert emu.stats().requests == 0


def test_force_uploads_and_the_service_then_fails_the_job(emu: EmulatorThread, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    few = _write(tmp_path / "few.jsonl", _rows(4))
    assert _cli(emu, str(few), "--force", "--wait") == 1
    captured = capsys.readouterr()
    assert "--force" in captured.err and "must have at least 10 examples" in captured.err
    assert "failed" in captured.err and emu.stats().by_path["/v1/files"] == 1


def test_failed_job_is_reported_with_exit_code_1(emu: EmulatorThread, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path / "train.jsonl", _rows(11, extra=" " + FAIL_MARKER.decode()))
    assert _cli(emu, str(train), "--wait") == 1
    captured = capsys.readouterr()
    assert ": running" in captured.out and "[error] Fine-tuning failed during training" in captured.out
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("clearapi: fine-tuning job ftjob-") and "failed: Fine-tuning failed" in err
    assert "invalid_training_file" in err


def test_wait_follows_a_job_to_success(emu: EmulatorThread, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    train = _write(tmp_path / "train.jsonl", _rows(10))
    assert _cli(emu, str(train), "--wait", "--suffix", "mine") == 0
    out = capsys.readouterr().out
    statuses = [ln.rsplit(": ", 1)[1] for ln in out.splitlines() if ln.startswith("job ftjob-") and ": " in ln
                and "succeeded:" not in ln]
    assert statuses == ["queued", "running", "succeeded"]
    assert "fine-tuned model ft:gpt-4.1-mini-2025-04-14:emulator:mine:" in out
    events = [ln.strip() for ln in out.splitlines() if ln.startswith("  [")]
    assert events[0].startswith("[info] Created fine-tuning job") and events[-1].endswith("successfully completed")


def test_rate_limited_upload_is_retried(emu: EmulatorThread, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    emu.configure(fault_at={1: "429"})
    train = _write(tmp_path / "train.jsonl", _rows(10))
    assert _cli(emu, str(train)) == 0
    stats = emu.stats()
    assert stats.status(429) == 1 and stats.by_path["/v1/files"] == 2
    assert stats.by_path["/v1/fine_tuning/jobs"] == 1
    assert "created fine-tuning job" in capsys.readouterr().out


@pytest.fixture
async def client(emu: EmulatorThread) -> AsyncIterator[tuple[openai.AsyncOpenAI, OpenAIChatAdapter]]:
    url = emu.base_url + "/v1"
    c = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0)
    adapter = OpenAIChatAdapter(load_profile("openai"), base_url=url, api_key=KEY)
    yield c, adapter
    await c.close()
    await adapter.aclose()


async def test_library_retries_with_the_engine_policy_on_a_fake_clock(
        emu: EmulatorThread, client: tuple[openai.AsyncOpenAI, OpenAIChatAdapter], tmp_path: Path) -> None:
    c, adapter = client
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    emu.configure(fault_at={1: "429", 2: "503"})
    retries: list[str] = []
    sub = await submit_job(c, _write(tmp_path / "t.jsonl", _rows(10)), map_error=adapter.map_error,
                           sleep=fake_sleep, on_retry=lambda exc, wait: retries.append(type(exc).__name__))
    assert retries == ["RateLimited", "TransientError"]
    assert slept[0] == pytest.approx(0.2)  # the emulator's Retry-After, honoured exactly
    events: list[str] = []
    job = await watch_job(c, sub.job_id, map_error=adapter.map_error, poll_interval=30.0, sleep=fake_sleep,
                          on_event=lambda ev: events.append(ev.message))
    assert job.status == "succeeded" and slept[2:] == [30.0, 30.0]
    assert len(events) == len(set(events)) and events[0].startswith("Created fine-tuning job")


async def test_job_creation_is_not_retried_after_a_server_error(
        emu: EmulatorThread, client: tuple[openai.AsyncOpenAI, OpenAIChatAdapter], tmp_path: Path) -> None:
    c, adapter = client
    emu.configure(fault_at={2: "500"})  # request 1 = upload, 2 = job creation

    async def no_sleep(seconds: float) -> None:
        return None

    with pytest.raises(FatalError, match="not retried"):
        await submit_job(c, _write(tmp_path / "t.jsonl", _rows(10)), map_error=adapter.map_error, sleep=no_sleep)
    assert emu.stats().by_path["/v1/fine_tuning/jobs"] == 1


async def test_dpo_upload_and_validation_failure(
        emu: EmulatorThread, client: tuple[openai.AsyncOpenAI, OpenAIChatAdapter], tmp_path: Path) -> None:
    c, adapter = client
    pairs = [{"input": {"messages": [{"role": "user", "content": f"q{i}"}]},
              "preferred_output": [{"role": "assistant", "content": "good"}],
              "non_preferred_output": [{"role": "assistant", "content": "bad"}]} for i in range(10)]
    sub = await submit_job(c, _write(tmp_path / "p.jsonl", pairs), map_error=adapter.map_error, target="openai-dpo")
    assert sub.method == "dpo"
    assert (await c.fine_tuning.jobs.retrieve(sub.job_id)).method.type == "dpo"  # type: ignore[union-attr]
    with pytest.raises(ValidationFailed) as info:
        await submit_job(c, _write(tmp_path / "sft.jsonl", _rows(10)), map_error=adapter.map_error,
                         target="openai-dpo")
    report = info.value.reports[0]
    assert report.errors == 30 and {f.rule for f in report.findings if f.severity == "error"} == {"missing-key"}


def test_emulator_files_endpoints_through_the_sdk(emu: EmulatorThread) -> None:
    sdk = _sdk(emu)
    f = sdk.files.create(file=("x.jsonl", b'{"a": 1}\n'), purpose="fine-tune")
    assert sdk.files.retrieve(f.id).bytes == 9
    assert [x.id for x in sdk.files.list(purpose="fine-tune")] == [f.id]
    assert sdk.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(f.id)
    with pytest.raises(openai.BadRequestError):
        sdk.files.create(file=("x.txt", b"{}"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-missing")
    g = sdk.files.create(file=("t.jsonl", b"".join(json.dumps(r).encode() + b"\n" for r in _rows(10))),
                         purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=g.id)
    assert sdk.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    page = sdk.fine_tuning.jobs.list_events(job.id, limit=2)
    assert page.data[0].message == "Fine-tuning job cancelled" and page.has_more
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.cancel(job.id)
    assert isinstance(OpenAIChatAdapter(load_profile("openai"), base_url=emu.base_url + "/v1", api_key=KEY)
                      .map_error(openai.NotFoundError("x", response=_fake_404(), body=None)), BadRequest)


def _fake_404() -> Any:
    import httpx2

    return httpx2.Response(404, request=httpx2.Request("GET", "http://127.0.0.1/v1/files/x"))


def test_watch_an_existing_job(emu: EmulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(emu, str(_write(tmp_path / "t.jsonl", _rows(10)))) == 0
    out = capsys.readouterr().out
    job_id = next(ln for ln in out.splitlines() if ln.startswith("created fine-tuning job ")).split()[3]
    assert _cli(emu, "--watch", job_id) == 0
    assert f"job {job_id} succeeded" in capsys.readouterr().out
    assert emu.stats().by_path["/v1/files"] == 1  # watching uploads nothing
