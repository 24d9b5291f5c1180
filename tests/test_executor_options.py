"""`executor` / `workers` options: checked before any cluster starts, and clear without Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clearapi.clear.curation import curate
from clearapi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "examples" / "qa.jsonl"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")


async def test_workers_need_the_ray_executor(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers must be >= 1 and needs executor 'ray'"):
        await curate(SRC, tmp_path / "out", provider="openai", workers=2)
    with pytest.raises(ConfigError, match="executor='dask': Input should be 'local' or 'ray'"):
        await curate(SRC, tmp_path / "out", provider="openai", executor="dask")


@pytest.mark.parametrize(("option", "says"), [({"max_cost": 1.0}, "--max-cost"), ({"batch": True}, "--batch")])
async def test_what_a_cluster_cannot_keep_is_refused(tmp_path: Path, option: dict[str, object], says: str) -> None:
    """A per-process budget or the batch API would be silently multiplied or pointless: refused."""
    with pytest.raises(ConfigError, match=f"{says}.*without --executor ray"):
        await curate(SRC, tmp_path / "out", provider="openai", executor="ray", **option)
    assert not (tmp_path / "out" / "summary.json").exists()


async def test_without_ray_the_error_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'clearapi\[ray\]'"):
        await curate(SRC, tmp_path / "out", provider="openai", base_url="http://127.0.0.1:9/v1", executor="ray")
