"""`--limit N`: only the first N input rows are processed, and they score as in a longer run.

The real openai SDK over HTTP to the loopback emulator, through the public `curate` and the CLI.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clearapi.clear.curation import curate
from clearapi.cli import main as cli_main
from clearapi.engine import Engine
from clearapi.errors import ConfigError
from clearapi.records import Summary
from clearapi_testing.emulator import EmulatorThread

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "qa.jsonl"
Factory = Callable[..., EmulatorThread]


async def _curate(emu: EmulatorThread, out: Path, **options: object) -> Summary:
    async with Engine("openai", base_url=emu.base_url + "/v1", api_key="test-key", cache=False, rpm=1e6,
                      tpm=1e9, max_concurrency=8, progress=False) as engine:
        return await curate(EXAMPLES, out, engine=engine, **options)


def _scores(out: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines() if x.strip()]


def test_limit_processes_the_first_rows_only_and_scores_them_as_a_longer_run(
        tmp_path: Path, emulator_factory: Factory) -> None:
    emu = emulator_factory()
    five = asyncio.run(_curate(emu, tmp_path / "five", limit=5, seed=3))
    nine = asyncio.run(_curate(emu, tmp_path / "nine", limit=9, seed=3))
    assert five.counts.rows == 5 and nine.counts.rows == 9
    assert five.counts.kept + five.counts.corrected + five.counts.dropped + five.counts.rejected == 5
    lines = [s["line"] for s in _scores(tmp_path / "five")]
    assert lines == [1, 2, 3, 4, 5]
    assert [s["confidence"] for s in _scores(tmp_path / "five")] == \
        [s["confidence"] for s in _scores(tmp_path / "nine")][:5]


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="limit must be >= 1"):
        asyncio.run(curate(EXAMPLES, tmp_path / "out", provider="openai", limit=0))


def test_cli_limit_reaches_the_run(tmp_path: Path, emulator_factory: Factory,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    emu = emulator_factory()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    code = cli_main(["curate", str(EXAMPLES), "-o", str(tmp_path / "out"), "--provider", "openai",
                     "--base-url", emu.base_url + "/v1", "--no-cache", "--limit", "3", "--no-progress"])
    assert code == 0
    assert [s["line"] for s in _scores(tmp_path / "out")] == [1, 2, 3]
