"""`clearapi curate` end to end: the real CLI over the real local model, and over the real OpenAI SDK
talking HTTP to the loopback emulator. Nothing of clearapi's own is faked.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clearapi.cli import main
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "qa.jsonl"
BAD_LINES = [
    "{not json",
    json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}),
]


def _subset(tmp_path: Path, n: int, bad: bool = True) -> tuple[Path, int]:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:n]
    if bad:
        lines[1:1] = BAD_LINES  # bad lines in the middle: line numbers must survive
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(lines)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _check_outputs(out: Path, total: int, rejected_lines: list[int],
                   failed_lines: tuple[int, ...] = ()) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    c = summary["counts"]
    assert c["rows"] == total
    assert c["kept"] + c["corrected"] + c["dropped"] + c["rejected"] + c["failed"] == total
    rejects = _jsonl(out / "rejects.jsonl")
    assert sorted(r["line"] for r in rejects) == rejected_lines
    assert all(r["error"] for r in rejects)
    assert [r["line"] for r in _jsonl(out / "failed.jsonl")] == list(failed_lines) and c["failed"] == len(failed_lines)
    scores = _jsonl(out / "scores.jsonl")
    assert len(scores) == total - len(rejected_lines) - len(failed_lines)
    assert [s["line"] for s in scores] == sorted(s["line"] for s in scores)
    for s in scores:
        assert 0.0 <= s["confidence"] <= 1.0
        assert s["action"] in ("keep", "drop", "correct") and s["reason"]
        assert s["prompt"] and s["response"]
        assert s["calls"] >= 2 and s["tokens"] > 0
        assert (s["correction"] is not None) == (s["action"] == "correct")
    curated = _jsonl(out / "curated.jsonl")
    assert len(curated) == c["kept"] + c["corrected"]
    assert sum(1 for s in scores if s["action"] == "drop") == c["dropped"]
    for row in curated:
        assert row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["content"].strip()
    assert summary["threshold"] is not None
    return summary


@pytest.mark.local
def test_local_model_through_the_cli(tmp_path: Path, local_model_path: Path) -> None:
    """`python -m clearapi curate` with the embedded model: scores, decisions, outputs, then a free re-run."""
    src, total = _subset(tmp_path, 3)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clearapi", "curate", str(src), "-o", str(out), "--provider", "local",
           "--samples", "2", "--demonstrations", "1", "--cache", str(tmp_path / "cache.sqlite")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = _check_outputs(out, total, rejected_lines=[2, 3])
    scores = _jsonl(out / "scores.jsonl")
    for s in scores:
        assert set(s["signals"]) >= {"self_rating", "consistency", "likelihood", "pmi"}
        assert s["methods"]["likelihood"] == "teacher-forced"
        assert len(s["details"]["samples"]) == 2
        # the other two good rows of the file are this row's demonstrations, one in each of the 2 sets
        others = sorted({1, 4, 5} - {s["line"]})
        assert s["details"]["demonstrations"] == others
        assert sorted(line for group in s["details"]["demonstration_sets"] for line in group) == others
        assert len(s["details"]["candidates"]) == 2 and len(s["details"]["pmi_by_set"]) == 2
        # rating; per set a best answer, one sample and two scoring passes
        assert s["calls"] == 1 + 2 * 4
    assert summary["settings"]["demonstrations"] == 1 and summary["settings"]["demo_sets"] == 2
    assert summary["settings"]["best_answer"] is True
    assert summary["engine"]["requests"] > 0
    assert (out / "report.html").is_file()
    c = summary["counts"]
    assert done.stdout.startswith(f"{total} rows: {c['kept']} kept, {c['corrected']} corrected, "
                                  f"{c['dropped']} dropped, 2 rejected (threshold {summary['threshold']:.3f})\n")

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["engine"]["requests"] == 0  # everything from the cache
    assert [s["confidence"] for s in _jsonl(out / "scores.jsonl")] == [s["confidence"] for s in scores]


def _openai_args(emu: EmulatorThread, src: Path, out: Path, *extra: str) -> list[str]:
    return ["curate", str(src), "-o", str(out), "--provider", "openai", "--model", "gpt-4o-mini",
            "--base-url", emu.base_url + "/v1", "--no-cache", *extra]


def test_openai_sdk_against_the_emulator(tmp_path: Path, emulator: EmulatorThread,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.configure(polite=True)  # asserts the plain 'logprobs' method of full lists
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 14)
    out = tmp_path / "out"
    assert main(_openai_args(emulator, src, out, "--filter-fraction", "0.5")) == 0
    summary = _check_outputs(out, total, rejected_lines=[2, 3])
    scores = _jsonl(out / "scores.jsonl")
    for s in scores:
        assert s["methods"]["self_rating"] == "logprobs"
        assert "likelihood" not in s["signals"]  # a chat API cannot score given text
    assert summary["engine"]["requests"] == emulator.stats().requests
    # 2 scoring calls per row (rating + n samples) plus judgements only where they can matter
    assert summary["settings"]["per_row"]["calls"] <= 3.0
    judged = [s for s in scores if "judgement" in s["details"]]
    assert all(s["confidence"] < summary["threshold"] for s in judged)
    assert sum(s["calls"] for s in scores) == summary["engine"]["logical_calls"]
    # the lowest half is below the cut (ties kept)
    assert sum(1 for s in scores if s["confidence"] < summary["threshold"]) <= len(scores) // 2


def test_best_answer_adds_one_temperature_zero_call_per_row(tmp_path: Path, emulator: EmulatorThread,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 6, bad=False)
    out = tmp_path / "out"
    assert main(_openai_args(emulator, src, out, "--best-answer", "--action", "filter")) == 0
    summary = _check_outputs(out, total, rejected_lines=[])
    assert summary["settings"]["per_row"]["scoring_calls_planned"] == {"rating": 1, "best_answer": 1, "answers": 1}
    assert summary["settings"]["best_answer"] is True and summary["settings"]["demonstrations"] == 0
    assert emulator.stats().requests == 3 * total
    for s in _jsonl(out / "scores.jsonl"):
        assert s["calls"] == 3
        assert "T=0" in s["methods"]["consistency"]
        assert s["details"]["candidate"]


def test_demonstrations_on_a_billed_api_cost_tokens_not_calls(tmp_path: Path, emulator: EmulatorThread,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.configure(polite=True)  # counts requests exactly: needs the ideal server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 8)
    runs = {}
    for k in ("0", "2"):
        out = tmp_path / f"out{k}"
        assert main(_openai_args(emulator, src, out, "--demonstrations", k, "--action", "filter")) == 0
        runs[k] = (_check_outputs(out, total, rejected_lines=[2, 3]), _jsonl(out / "scores.jsonl"))
    (plain, plain_rows), (shown, shown_rows) = runs["0"], runs["2"]
    assert shown["settings"]["demonstrations"] == 2
    assert shown["engine"]["requests"] == plain["engine"]["requests"] == 2 * (total - 2)
    # the samples' prompt carries two short question/answer rows of the file
    assert shown["engine"]["prompt_tokens"] > plain["engine"]["prompt_tokens"] + (total - 2) * 2 * 8
    for row in shown_rows:
        lines = row["details"]["demonstrations"]
        assert len(lines) == 2 and row["line"] not in lines and not {2, 3} & set(lines)
        assert "demonstrations" in row["methods"]
    assert all("demonstrations" not in row["details"] for row in plain_rows)


def test_dry_run_makes_no_call(tmp_path: Path, emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, _ = _subset(tmp_path, 10)
    out = tmp_path / "out"
    assert main(_openai_args(emulator, src, out, "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "scoring calls: 20" in printed and "cost: $" in printed
    tokens = int(re.search(r"~(\d+) completion", printed).group(1))  # type: ignore[union-attr]
    assert main(_openai_args(emulator, src, out, "--dry-run", "--best-answer")) == 0
    printed = capsys.readouterr().out
    assert "scoring calls: 30 (rating 10, best_answer 10, answers 10)" in printed
    # and one more answer's token budget per row
    assert int(re.search(r"~(\d+) completion", printed).group(1)) > tokens  # type: ignore[union-attr]
    assert emulator.stats().requests == 0
    assert not out.exists()


def test_auth_failure_stops_cleanly(tmp_path: Path, emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = emulator_factory(api_key="sk-right-key-123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-987654321")
    src, total = _subset(tmp_path, 5, bad=False)
    out = tmp_path / "out"
    assert main(_openai_args(emu, src, out)) == 1
    assert not (out / "summary.json").exists()  # a stopped run writes only under .partial names
    summary = json.loads((out / "summary.partial.json").read_text())
    assert summary["completed"] is False
    assert "AuthError" in summary["stopped_reason"]
    assert "sk-wrong-key" not in (out / "summary.partial.json").read_text()
    c = summary["counts"]
    assert c["rows"] < total and c["rows"] == c["kept"] + c["corrected"] + c["dropped"] + c["rejected"]


def test_fatal_error_mid_run_keeps_finished_rows(tmp_path: Path, emulator_factory: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # requests 1-10 are the first 10 rows' ratings (the logprobs check), then each row's samples
    emu = emulator_factory(fault_at={16: "insufficient_quota"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 12, bad=False)
    out = tmp_path / "out"
    args = _openai_args(emu, src, out, "--max-concurrency", "1")
    args[args.index("--no-cache")] = "--cache"
    args.insert(args.index("--cache") + 1, str(tmp_path / "cache.sqlite"))
    assert main(args) == 1
    summary = json.loads((out / "summary.partial.json").read_text())
    assert summary["completed"] is False and "QuotaExhausted" in summary["stopped_reason"]
    c = summary["counts"]
    assert 0 < c["rows"] < total
    assert c["rows"] == c["kept"] + c["corrected"] + c["dropped"] + c["rejected"]
    # a re-run resumes: finished calls come from the cache
    emu.configure(fault_at={})
    before = emu.stats().requests
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] is True and summary["counts"]["rows"] == total
    assert summary["engine"]["cache_hits"] > 0
    assert emu.stats().requests - before == summary["engine"]["requests"]
    assert not list(out.glob("*.partial.*"))  # the complete run supersedes the stopped one's files


def test_threshold_extremes_and_filter_action(tmp_path: Path, emulator: EmulatorThread,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 6)
    keep_all = tmp_path / "keep"
    assert main(_openai_args(emulator, src, keep_all, "--threshold", "0")) == 0
    summary = _check_outputs(keep_all, total, rejected_lines=[2, 3])
    assert summary["counts"]["kept"] == total - 2 and summary["threshold"] == 0.0
    drop_all = tmp_path / "drop"
    assert main(_openai_args(emulator, src, drop_all, "--threshold", "1", "--action", "filter")) == 0
    summary = _check_outputs(drop_all, total, rejected_lines=[2, 3])
    assert summary["counts"]["dropped"] == total - 2
    assert (drop_all / "curated.jsonl").read_text() == ""
    scores = _jsonl(drop_all / "scores.jsonl")
    assert all(s["reason"].startswith("confidence ") and "< threshold 1.00" in s["reason"] for s in scores)
    assert not any("judgement" in s["details"] for s in scores)  # filter never pays for a judge


def test_truncated_gzip_is_reported_in_the_summary(tmp_path: Path, emulator: EmulatorThread,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 2 reads the input again but stops at the last scored row: the summary keeps pass 1's read."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    lines = EXAMPLES.read_bytes().splitlines()[:3]
    packed = gzip.compress(b"\n".join(lines) + b"\n" + b'{"x": 1}\n' * 2000)
    src = tmp_path / "input.jsonl.gz"
    src.write_bytes(packed[:-30])  # the stream breaks after the examples
    out = tmp_path / "out"
    assert main(_openai_args(emulator, src, out)) == 3  # finished, with rows missing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["kept"] + summary["counts"]["corrected"] + summary["counts"]["dropped"] == 3
    assert "could not be read from here on" in summary["stopped_reason"]
    assert summary["settings"]["format"] == "openai_chat"


def test_score_command_writes_scores_only(tmp_path: Path, emulator: EmulatorThread,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 4)
    out = tmp_path / "out"
    args = _openai_args(emulator, src, out)
    args[0] = "score"
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["failed.jsonl", "rejects.jsonl", "scores.jsonl"]
    assert _jsonl(out / "failed.jsonl") == []
    scores = _jsonl(out / "scores.jsonl")
    assert len(scores) == total - 2 and all(s["action"] is None for s in scores)
    assert [r["line"] for r in _jsonl(out / "rejects.jsonl")] == [2, 3]


def test_provider_without_logprobs_samples_the_rating(tmp_path: Path, emulator: EmulatorThread,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Anthropic's API has neither logprobs nor n: the rating is sampled and scores.jsonl says so."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 4)
    out = tmp_path / "out"
    args = ["curate", str(src), "-o", str(out), "--provider", "anthropic", "--model", "claude-3-5-haiku-latest",
            "--base-url", emulator.base_url, "--no-cache", "--samples", "2", "--rpm", "60000", "--tpm", "100000000"]
    assert main(args) == 0
    _check_outputs(out, total, rejected_lines=[2, 3])
    scores = _jsonl(out / "scores.jsonl")
    for s in scores:
        assert s["methods"]["self_rating"] == "sampled x3"
        assert "answer_confidence" not in s["methods"]
        assert s["calls"] >= 3 + 2  # three rating samples and two answers, one call each
    assert emulator.stats().by_path.get("/v1/messages", 0) >= 5 * len(scores)


def test_a_server_that_never_returns_logprobs_switches_to_the_sampled_fallback(
        tmp_path: Path, emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OpenAI-compatible server that drops logprobs (the profile says it has them): the run is
    scored whole with the fallback a provider without logprobs gets, and says so, never a stop."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    emu = emulator_factory(returns_logprobs=False, seed=3)  # otherwise the rude defaults
    src, total = _subset(tmp_path, 12)
    out = tmp_path / "out"
    def args(to: Path) -> list[str]:
        return ["curate", str(src), "-o", str(to), "--provider", "openai", "--model", "gpt-4o-mini",
                "--base-url", emu.base_url + "/v1", "--cache", str(tmp_path / "c.sqlite"), "--filter-fraction", "0.3"]

    assert main(args(out)) == 0
    summary = _check_outputs(out, total, rejected_lines=[2, 3])
    scores = _jsonl(out / "scores.jsonl")
    assert len(scores) == total - 2
    for s in scores:  # every row under the same plan, the first ones too
        assert s["methods"]["self_rating"] == "sampled x3 (fallback: no token logprobs)"
        assert "the server returned none" in s["methods"]["logprobs"]
        assert "answer_confidence" not in s["methods"] and s["signals"].get("answer_confidence") is None
        assert s["signals"]["self_rating"] is not None and "rating_letters" in s["details"]
    assert "the server returned none in the 10 answer(s)" in summary["settings"]["logprobs_fallback"]
    assert summary["signals"]["self_rating"]["method"] == "sampled x3 (fallback: no token logprobs)"
    assert any(w.startswith("token logprobs not used") for w in summary["warnings"])
    assert summary["completed"] is True and summary["engine"]["requests"] == emu.stats().requests

    # a re-run reaches the same plan from the cache: the same scores, no call
    emu.reset()
    assert main(args(tmp_path / "again")) == 0
    assert [(s["line"], s["confidence"]) for s in _jsonl(tmp_path / "again" / "scores.jsonl")] == \
        [(s["line"], s["confidence"]) for s in scores]
    assert emu.stats().requests == 0


def test_a_server_with_logprobs_keeps_the_logprobs_plan_and_the_check_costs_no_call(
        tmp_path: Path, emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.configure(polite=True)  # counts requests exactly
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 6, bad=False)
    out = tmp_path / "out"
    assert main(_openai_args(emulator, src, out, "--action", "filter")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["logprobs_fallback"] is None
    assert all(s["methods"]["self_rating"] == "logprobs" for s in _jsonl(out / "scores.jsonl"))
    # the first row's rating answer was the check's: 2 calls per row, none repeated
    assert emulator.stats().requests == summary["engine"]["requests"] == 2 * total
    assert emulator.stats().repeated_bodies == 0 and summary["engine"]["cache_hits"] == 0


def test_csv_input_and_another_target(tmp_path: Path, emulator: EmulatorThread,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = tmp_path / "data.csv"
    src.write_text("question,answer\nWhat is the capital of Japan?,Tokyo.\n"
                   "What is 9 times 7?,63\nWhat is the capital of Italy?,\n", encoding="utf-8")
    out = tmp_path / "out"
    args = _openai_args(emulator, src, out, "--prompt-column", "question", "--response-column", "answer",
                        "--target", "together", "--threshold", "0")
    assert main(args) == 0
    summary = _check_outputs(out, 3, rejected_lines=[4])  # CSV record 3 (line 4) has an empty answer
    assert summary["counts"]["kept"] == 2
    curated = _jsonl(out / "curated.jsonl")
    assert [r["messages"][-1]["content"] for r in curated] == ["Tokyo.", "63"]


def test_preference_target_points_to_convert(tmp_path: Path) -> None:
    """curated.jsonl must hold every kept row; DPO pairs come from `convert` on the folder."""
    src = tmp_path / "d.jsonl"
    src.write_text('{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}\n')
    assert main(["curate", str(src), "-o", str(tmp_path / "o"), "--target", "openai-dpo"]) == 2
    assert not (tmp_path / "o").exists()


def test_row_too_long_for_the_model_fails_without_retries(tmp_path: Path, emulator_factory: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's 400 for an over-long prompt fails that row (failed.jsonl, not rejects: the line
    itself was read fine), asked once; the rest go on, and the exit code says a row failed."""
    emu = emulator_factory(context_window=2000)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:4]
    long_row = {"messages": [{"role": "user", "content": "Summarise: " + "words " * 3000},
                             {"role": "assistant", "content": "A summary."}]}
    lines.insert(2, json.dumps(long_row))
    src = tmp_path / "input.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(_openai_args(emu, src, out, "--max-concurrency", "1")) == 3
    _check_outputs(out, 5, rejected_lines=[], failed_lines=(3,))
    (failed,) = _jsonl(out / "failed.jsonl")
    assert failed["error"].startswith("BadRequest: ") and "maximum context length" in failed["error"]
    assert failed["error_type"] == "BadRequest" and failed["attempts"] == 1 and failed["id"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"]["retries"] == {}


def test_timeout_option_bounds_a_hanging_request(tmp_path: Path, emulator_factory: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the first request hangs until the server stops: only --timeout lets the run go on (120 s otherwise)
    emu = emulator_factory(fault_at={1: "hang"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, total = _subset(tmp_path, 3, bad=False)
    out = tmp_path / "out"
    assert main(_openai_args(emu, src, out, "--timeout", "1")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] is True and summary["counts"]["rows"] == total
    assert emu.stats().faults["hang"] == 1


def test_scores_do_not_depend_on_faults_on_a_server_with_short_top_logprobs(
        tmp_path: Path, emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rude defaults (short top_logprobs lists, empty completions, stray 500s, all drawn from the
    request's content) clean, and with 20% faults on top: every score line is the same."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src, _ = _subset(tmp_path, 30, bad=False)
    # stray 500s at 10 % rather than the default 2 %, so that about 6 of the clean run's 60 requests meet one
    clean = emulator_factory(seed=5, stray_500_rate=0.1)
    faulty = emulator_factory(seed=5, stray_500_rate=0.1, fault_rate=0.2,
                              fault_kinds=["500", "503", "429", "reset", "truncated"])
    assert main(_openai_args(clean, src, tmp_path / "clean", "--max-concurrency", "4")) == 0
    assert main(_openai_args(faulty, src, tmp_path / "faulty", "--max-concurrency", "8")) == 0
    assert clean.stats().faults.get("500", 0) > 0  # the stray 500s of the rude defaults...
    assert sum(faulty.stats().faults.values()) > 2 * clean.stats().faults["500"]  # ...and the injected faults
    a, b = _jsonl(tmp_path / "clean" / "scores.jsonl"), _jsonl(tmp_path / "faulty" / "scores.jsonl")
    assert len(a) == 30 and a == b  # confidences, signals, texts, decisions: all of it
    assert any("renormalised over the" in r["methods"]["self_rating"] for r in a)  # the short list is said
    assert any("" in r["details"].get("samples", []) for r in a)  # an empty completion was met


def test_judgements_for_early_rows_start_while_later_rows_are_still_scored(tmp_path: Path,
                                                                           emulator: EmulatorThread) -> None:
    emulator.configure(polite=True)  # counts requests exactly: needs the ideal server
    import asyncio

    from clearapi.adapters import create_adapter
    from clearapi.clear.curation import curate
    from clearapi.engine import Engine
    from clearapi.profiles import load_profile
    from clearapi.records import ChatRequest, ChatResponse

    class Recording:
        """The real OpenAI adapter, noting which calls were pairwise judgements, in order."""

        def __init__(self) -> None:
            self.inner = create_adapter(load_profile("openai"), model="gpt-4o-mini", base_url=emulator.base_url
                                        + "/v1", api_key="sk-test-not-a-real-key-000", timeout=30.0,
                                        max_concurrency=1)
            self.model = "gpt-4o-mini"
            self.kinds: list[str] = []

        @property
        def capabilities(self) -> Any:
            return self.inner.capabilities

        async def chat(self, request: ChatRequest) -> ChatResponse:
            judge = "Which answer is correct" in (request.messages[-1].content or "")
            self.kinds.append("judge" if judge else "score")
            return await self.inner.chat(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def run(src: Path, out: Path) -> tuple[Any, list[str]]:
        adapter = Recording()
        try:
            async with Engine("openai", adapter=adapter, cache=False, max_concurrency=1) as engine:  # type: ignore[arg-type]
                summary = await curate(src, out, engine=engine, threshold=1.0, correct_threshold=0.0)
        finally:
            await adapter.aclose()
        return summary, adapter.kinds

    src, total = _subset(tmp_path, 14, bad=False)
    summary, kinds = asyncio.run(run(src, tmp_path / "out"))
    assert "judge" in kinds
    # row 1's judgement went out before the last row was scored: the limit never idles between passes
    assert kinds.index("judge") < len(kinds) - 1 - kinds[::-1].index("score")
    c = summary.counts
    assert c.rows == total == c.kept + c.corrected + c.dropped + c.rejected
    scores = _jsonl(tmp_path / "out" / "scores.jsonl")
    assert [s["line"] for s in scores] == list(range(1, total + 1))  # still in input order
    assert sum(s["calls"] for s in scores) == len(kinds)
