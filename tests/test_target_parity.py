"""One renderer per target: `curate --target X` writes the same bytes as `convert --target X`.

Both commands run through the CLI (`clearapi.cli.main`) over the real OpenAI SDK talking
HTTP to the loopback emulator; the curate runs share one cache, so only the first pays.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearapi.cli import main
from clearapi.finetune.targets import TARGETS
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
SUPERVISED = [name for name, t in TARGETS.items() if not t.preference]


def test_every_supervised_target_is_covered() -> None:
    assert SUPERVISED == ["openai", "bedrock", "bedrock-nova", "together", "fireworks", "trl-sft"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (ROOT / "examples" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    assert all("id" in json.loads(x) for x in lines)  # a key OpenAI's format does not accept
    path = tmp_path_factory.mktemp("parity") / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("target", SUPERVISED)
def test_curate_and_convert_write_identical_files(target: str, dataset: Path, tmp_path: Path,
                                                  emulator: EmulatorThread,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    out = tmp_path / "out"
    assert main(["curate", str(dataset), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
                 "--base-url", emulator.base_url + "/v1", "--cache", str(tmp_path / "cache.sqlite"),
                 "--filter-fraction", "0.5", "--correct-threshold", "0", "--eta", "0",
                 "--target", target]) == 0
    converted = tmp_path / f"{target}.jsonl"
    assert main(["convert", str(out), "--target", target, "-o", str(converted)]) == 0

    curated = (out / "curated.jsonl").read_bytes()
    assert curated == converted.read_bytes()
    rows = [json.loads(x) for x in curated.splitlines()]
    assert 0 < len(rows) < 12  # some rows dropped, some written
    assert all("id" not in row for row in rows)  # only the target's own keys
    actions = [json.loads(x)["action"] for x in (out / "scores.jsonl").read_bytes().splitlines()]
    assert len(rows) == sum(a != "drop" for a in actions)
    assert {"keep", "correct", "drop"} <= set(actions)  # corrected rows render through the same code
