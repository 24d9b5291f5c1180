"""`CurateOptions` is the one definition of a run's options: the flags of `curate` and `score`, the
names `clearapi.curate(**options)` takes and summary.json's settings all come from its fields."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import clearapi
from clearapi.clear.options import SECRETS, CurateOptions
from clearapi.clear.policy import DEFAULT_CORRECT_THRESHOLD
from clearapi.cli import build_parser, main
from clearapi.cli.curate import common_options
from clearapi.errors import ConfigError
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-proj-options0test0key0ABCDEFGHIJKLMNOP"
OPTIONS = [f.name for f in fields(CurateOptions)]

#: the flags as users know them: (default, type, choices, metavar, the flag it excludes, on `score` too).
#: New options add flags; none of these may change or go.
KNOWN_FLAGS: dict[str, tuple[Any, Any, Any, str | None, str | None, bool]] = {
    "--provider": ("local", None, None, None, None, True),
    "--model": (None, None, None, None, None, True),
    "--model-path": (None, None, None, "GGUF", None, True),
    "--base-url": (None, None, None, "URL", None, True),
    "--rpm": (None, float, None, "N", None, True),
    "--tpm": (None, float, None, "N", None, True),
    "--max-concurrency": (None, int, None, "N", None, True),
    "--timeout": (120.0, float, None, "SECONDS", None, True),
    "--breaker": (20, int, None, "N", None, True),
    "--cache": (None, str, None, "PATH", "--no-cache", True),
    "--no-cache": (False, None, None, None, "--cache", True),
    "--samples": (4, int, None, "K", None, True),
    "--best-answer": (None, None, None, None, None, True),
    "--demonstrations": (None, int, None, "K", None, True),
    "--demo-sets": (None, int, None, "N", None, True),
    "--seed": (0, int, None, "S", None, True),
    "--max-cost": (None, float, None, "USD", None, True),
    "--prompt-column": (None, None, None, "NAME", None, True),
    "--response-column": (None, None, None, "NAME", None, True),
    "--limit": (None, int, None, "N", None, True),
    "--progress": (None, None, None, None, None, True),
    "--threads": (None, int, None, "N", None, True),
    "--dry-run": (False, None, None, None, None, True),
    "--action": ("both", None, ["filter", "correct", "both"], None, None, False),
    "--threshold": (None, float, None, "T", "--filter-fraction", False),
    "--filter-fraction": (None, float, None, "F", "--threshold", False),
    "--correct-threshold": (None, float, None, "G", None, False),
    "--eta": (0.8, float, None, "E", None, False),
    "--judge-provider": (None, None, None, "NAME", None, False),
    "--judge-model": (None, None, None, "MODEL", None, False),
    "--judge-base-url": (None, None, None, "URL", None, False),
    "--judge-majority": (None, int, None, "M", None, False),
    "--target": ("openai", None, None, None, None, False),
    "--batch": (False, None, None, None, None, False),
    "--batch-retry": ("online", None, ["online", "batch"], None, None, False),
    "--batch-poll": (10.0, float, None, "SECONDS", None, False),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[command]
    return parser


def _actions(command: str) -> dict[str, argparse.Action]:
    return {s: a for a in _subparser(command)._actions for s in a.option_strings}


def _options(*argv: str, command: str = "curate") -> dict[str, Any]:
    args = _subparser(command).parse_args(["in.jsonl", "-o", "out", *argv])
    return common_options(args, command)


def test_every_option_is_a_flag_and_the_secrets_are_not() -> None:
    dests = {cmd: {a.dest for a in _subparser(cmd)._actions} for cmd in ("curate", "score")}
    for f in fields(CurateOptions):
        spec = f.metadata.get("flag")
        if f.name in SECRETS:
            assert spec is None and f.name not in dests["curate"], f"{f.name} is a secret: no flag"
            continue
        assert spec is not None, f"option {f.name} has no flag: give it metadata=flag(...) or list it in SECRETS"
        assert f.name in dests["curate"], f.name
        assert (f.name in dests["score"]) == ("score" in spec.commands), f.name


def test_the_flags_users_know_keep_their_spelling_defaults_and_choices() -> None:
    for command in ("curate", "score"):
        parser = _subparser(command)
        actions = {s: a for a in parser._actions for s in a.option_strings}
        for flag, (default, kind, choices, metavar, excludes, on_score) in KNOWN_FLAGS.items():
            if command == "score" and not on_score:
                assert flag not in actions, flag
                continue
            action = actions[flag]
            assert (action.default, action.type, action.choices, action.metavar) == \
                (default, kind, choices, metavar), flag
            groups = [g for g in parser._mutually_exclusive_groups if action in g._group_actions]
            partners = {s for g in groups for a in g._group_actions if a is not action for s in a.option_strings}
            assert partners == ({excludes} if excludes else set()), flag
    assert _actions("curate")["--judge-provider"].nargs is None  # repeated, not a list after one flag
    assert isinstance(_actions("curate")["--judge-provider"], argparse._AppendAction)


def test_no_flag_given_is_the_options_defaults() -> None:
    assert CurateOptions(**_options()) == CurateOptions()
    assert CurateOptions(**_options(command="score")) == CurateOptions()
    assert _options("-q")["progress"] is False  # quiet draws no bar unless asked


def test_each_flag_becomes_the_option_it_names() -> None:
    opts = CurateOptions(**_options(
        "--provider", "openai", "--model", "m", "--model-path", "x.gguf", "--base-url", "http://h/v1",
        "--rpm", "5", "--tpm", "6", "--max-concurrency", "7", "--timeout", "8", "--breaker", "0",
        "--cache", "c.sqlite", "--samples", "2", "--no-best-answer", "--demonstrations", "1", "--demo-sets", "3",
        "--seed", "4", "--max-cost", "1.5", "--prompt-column", "p", "--response-column", "r", "--limit", "10",
        "--progress", "--action", "filter", "--threshold", "0.4", "--correct-threshold", "0.5", "--eta", "0.9",
        "--judge-provider", "openai", "--judge-provider", "anthropic", "--judge-model", "j",
        "--judge-base-url", "http://j/v1", "--judge-majority", "1", "--target", "together", "--batch",
        "--batch-retry", "batch", "--batch-poll", "3"))
    assert opts == CurateOptions(
        provider="openai", model="m", model_path="x.gguf", base_url="http://h/v1", rpm=5.0, tpm=6.0,
        max_concurrency=7, timeout=8.0, breaker=0, cache="c.sqlite", samples=2, best_answer=False,
        demonstrations=1, demo_sets=3, seed=4, max_cost=1.5, prompt_column="p", response_column="r", limit=10,
        progress=True, action="filter", threshold=0.4, correct_threshold=0.5, eta=0.9,
        judge_provider=["openai", "anthropic"], judge_model=["j"], judge_base_url=["http://j/v1"],
        judge_majority=1, target="together", batch=True, batch_retry="batch", batch_poll_interval=3.0)
    assert _options("--no-cache")["cache"] is False
    assert _options("--filter-fraction", "0.5")["filter_fraction"] == 0.5
    assert _options("--target", "hf")["target"] == "hf"  # curate's run writes trl-sft rows, then the folder


@pytest.mark.parametrize(("argv", "message"), [
    (["--rpm", "x"], "argument --rpm: invalid float value: 'x'"),
    (["--samples", "2.5"], "argument --samples: invalid int value: '2.5'"),
    (["--threshold", "0.5", "--filter-fraction", "0.5"], "argument --filter-fraction: not allowed with argument "
                                                         "--threshold"),
    (["--cache", "c", "--no-cache"], "argument --no-cache: not allowed with argument --cache"),
    (["--action", "keep"], "argument --action: invalid choice: 'keep'"),
    (["--batch-retry", "never"], "argument --batch-retry: invalid choice: 'never'"),
])
def test_bad_flag_values_are_usage_errors_naming_the_flag(argv: list[str], message: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["curate", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), *argv])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_option_name_is_a_type_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\): sample \(did you mean samples\?\), zzz$"):
        clearapi.estimate(ROOT / "examples" / "qa.jsonl", sample=2, zzz=1)
    with pytest.raises(TypeError, match="threads"):
        CurateOptions.from_kwargs({"thread": 2})


def test_threads_is_an_option_checked_and_refused_for_a_hosted_provider(tmp_path: Path) -> None:
    assert CurateOptions.from_kwargs({"threads": "2"}).threads == 2
    with pytest.raises(ConfigError, match="threads must be >= 1, got 0"):
        CurateOptions.from_kwargs({"threads": 0})
    with pytest.raises(ConfigError, match="--threads is for the local provider"):
        clearapi.curate_sync(ROOT / "examples" / "qa.jsonl", tmp_path / "out", provider="openai", api_key="sk-x",
                             threads=2, cache=False)
    assert not (tmp_path / "out" / "curated.jsonl").exists()


def test_settings_hold_every_option_but_the_keys_and_urls_lose_their_credentials() -> None:
    settings = CurateOptions(api_key=KEY, judge_api_key=KEY, base_url="https://user:pw@h/v1",
                             judge_provider=["openai"], judge_base_url=["https://u:pw@j/v1"],
                             cache=Path("c.sqlite")).settings()
    assert set(settings) >= set(OPTIONS) - SECRETS
    assert not set(settings) & SECRETS
    text = json.dumps(settings)
    assert KEY not in text and "pw@" not in text
    assert settings["base_url"] == "https://***@h/v1" and settings["judge_base_url"] == ["https://***@j/v1"]
    assert settings["cache"] == "c.sqlite"


def test_a_runs_summary_records_every_option_and_no_key(tmp_path: Path, emulator: EmulatorThread) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join((ROOT / "examples" / "qa.jsonl").read_text().splitlines()[:3]) + "\n")
    summary = clearapi.curate_sync(src, tmp_path / "out", provider="openai", model="gpt-4o-mini", api_key=KEY,
                                   base_url=emulator.base_url + "/v1", cache=False, samples=1, progress=False)
    text = (tmp_path / "out" / "summary.json").read_text()
    assert KEY not in text
    settings = json.loads(text)["settings"]
    assert set(settings) >= set(OPTIONS) - SECRETS
    assert settings["samples"] == 1 and settings["provider"] == "openai" and summary.counts.rows == 3
    # an option left to the provider (None) is recorded as the value the run used
    assert (settings["correct_threshold"], settings["best_answer"], settings["demonstrations"],
            settings["demo_sets"]) == (DEFAULT_CORRECT_THRESHOLD, False, 0, 1)
    dry = clearapi.curate_sync(src, tmp_path / "dry", dry_run=True, provider="openai", api_key=KEY, samples=1)
    assert set(dry.settings) >= set(OPTIONS) - SECRETS and KEY not in json.dumps(dry.settings)


def test_option_values_from_the_api_are_read_as_their_flags_would_be_or_refused_by_name() -> None:
    opts = CurateOptions.from_kwargs({"samples": "4", "threshold": "0.3", "rpm": 100, "model_path": Path("m.gguf"),
                                      "cache": Path("c.sqlite")})
    assert (opts.samples, opts.threshold, opts.rpm, opts.model_path, opts.cache) == (
        4, 0.3, 100.0, "m.gguf", Path("c.sqlite"))
    assert isinstance(opts.samples, int) and isinstance(opts.rpm, float)
    with pytest.raises(ConfigError, match=r"^option samples='four': .*valid integer"):
        CurateOptions.from_kwargs({"samples": "four"})
    with pytest.raises(ConfigError, match=r"^option seed=1.5: "):
        CurateOptions.from_kwargs({"seed": 1.5})
    with pytest.raises(ConfigError, match=r"^option action='keep': .*'filter', 'correct' or 'both'"):
        CurateOptions.from_kwargs({"action": "keep"})
    with pytest.raises(ConfigError, match=r"^option api_key=\*\*\*: ") as err:
        CurateOptions.from_kwargs({"api_key": 987654321})
    assert "987654321" not in str(err.value)
