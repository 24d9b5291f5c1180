"""The calibrated default cut: where a row is more likely corrupted than clean, read off the dataset."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearapi.clear.calibrate import CEILING, MIN_ROWS, Calibration, calibrate, drop_warning
from clearapi.cli import main
from clearapi_testing.emulator import EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _sample(rng: random.Random, n: int, mean: float, sd: float) -> list[float]:
    return [_sigmoid(rng.gauss(mean, sd)) for _ in range(n)]


def test_clean_only_datasets_lose_few_rows_and_a_large_loss_is_warned_about() -> None:
    """One mode, wherever it sits (a long-context set's clean rows sit low): about 2 % of rows on
    average. A 100-row sample can show a spurious low mode (AIC accepts it); the warning covers that."""
    rng = random.Random(0)
    drops = []
    for _ in range(60):
        n, mean, sd = rng.choice([100, 200, 500]), rng.uniform(-1.5, 3.0), rng.uniform(0.3, 1.2)
        conf = _sample(rng, n, mean, sd)
        cal = calibrate(conf)
        dropped = sum(c < cal.threshold for c in conf)
        drops.append(dropped / n)
        if dropped / n > 0.25:
            assert drop_warning(dropped, n, cal, cal.threshold) is not None
    assert sum(drops) / len(drops) <= 0.05
    assert sum(d <= 0.08 for d in drops) >= 0.9 * len(drops)


def test_a_one_mode_note_names_the_criterion_it_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    from clearapi.clear import calibrate as module

    conf = _sample(random.Random(3), 200, 1.0, 0.5)
    cal = calibrate(conf)
    assert cal.rule == "one-component" and "AIC gain" in cal.note and "BIC" not in cal.note
    monkeypatch.setattr(module, "PENALTY", None)
    assert "BIC gain" in calibrate(conf).note


@settings(max_examples=25, deadline=None)
@given(clean_mean=st.floats(-1.0, 2.0), gap=st.floats(3.0, 5.0), share=st.floats(0.1, 0.4),
       sd=st.floats(0.3, 0.6), seed=st.integers(0, 10**6))
def test_a_two_mode_dataset_is_cut_between_the_modes(clean_mean: float, gap: float, share: float, sd: float,
                                                      seed: int) -> None:
    rng = random.Random(seed)
    n_bad = round(400 * share)
    clean, bad = _sample(rng, 400 - n_bad, clean_mean, sd), _sample(rng, n_bad, clean_mean - gap, sd)
    cal = calibrate(clean + bad)
    assert cal.rule == "mixture"
    assert _sigmoid(clean_mean - gap) < cal.threshold < _sigmoid(clean_mean)
    flagged_bad = sum(c < cal.threshold for c in bad)
    flagged_clean = sum(c < cal.threshold for c in clean)
    assert flagged_bad / n_bad >= 0.95 and flagged_bad / (flagged_bad + flagged_clean) >= 0.95
    assert cal.corrupted_share is not None and abs(cal.corrupted_share - n_bad / 400) < 0.05
    # the estimate of clean rows dropped is close to what happened
    estimate = cal.clean_dropped()
    assert estimate is not None and abs(estimate - flagged_clean / len(clean)) < 0.03


@settings(max_examples=15, deadline=None)
@given(shift=st.floats(-2.0, 0.0), seed=st.integers(0, 10**6))
def test_the_cut_follows_the_dataset_when_every_row_scores_lower(shift: float, seed: int) -> None:
    """The point of calibrating: an open-ended task that lowers every row's score drops the same rows."""
    rng = random.Random(seed)
    z = [rng.gauss(1.5, 0.5) for _ in range(300)] + [rng.gauss(-2.0, 0.5) for _ in range(80)]
    base = calibrate(_sigmoid(x) for x in z)
    moved = calibrate(_sigmoid(x + shift) for x in z)
    dropped = [x < math.log(base.threshold / (1 - base.threshold)) for x in z]
    dropped_moved = [x + shift < math.log(moved.threshold / (1 - moved.threshold)) for x in z]
    assert sum(a != b for a, b in zip(dropped, dropped_moved, strict=True)) <= 3


def test_an_absolute_cut_of_one_half_would_have_dropped_a_low_scoring_clean_file() -> None:
    """The issue's case in miniature: clean rows around 0.45, a fifth corrupted around 0.15."""
    rng = random.Random(7)
    clean, bad = _sample(rng, 97, -0.2, 0.35), _sample(rng, 25, -1.8, 0.35)
    assert sum(c < 0.5 for c in clean) > 50  # what the absolute cut did
    cal = calibrate(clean + bad)
    assert sum(c < cal.threshold for c in clean) <= 5
    assert sum(c < cal.threshold for c in bad) >= 20


def test_a_capped_cut_says_its_clean_drop_estimate_is_too_low() -> None:
    """Easy rows pile near the top with a long low tail (a skewed clean mode); the mixture splits it, the
    crossing lands above the ceiling, and the fit's clean component misses the tail: the note must say so."""
    rng = random.Random(1)
    delta = -4.0 / math.sqrt(17.0)  # skew-normal, shape -4, in log-odds

    def skewed() -> float:
        return 3.0 + 1.2 * (delta * abs(rng.gauss(0, 1)) + math.sqrt(1 - delta * delta) * rng.gauss(0, 1))

    clean = [_sigmoid(skewed()) for _ in range(210)]
    bad = _sample(rng, 90, -0.5, 0.8)
    cal = calibrate(clean + bad)
    assert cal.rule == "mixture" and cal.threshold == CEILING
    estimate = cal.clean_dropped()
    assert estimate is not None and sum(c < cal.threshold for c in clean) / len(clean) > estimate
    assert "above the ceiling" in cal.note and "too low" in cal.note
    # a cut found below the ceiling does not carry the caveat
    low = calibrate(_sample(rng, 300, 1.5, 0.5) + _sample(rng, 100, -2.0, 0.5))
    assert low.rule == "mixture" and low.threshold < CEILING and "too low" not in low.note


def test_too_few_rows_keep_the_absolute_cut() -> None:
    cal = calibrate([0.9, 0.1] * ((MIN_ROWS - 1) // 2))
    assert cal.rule == "absolute" and cal.threshold == 0.5
    assert cal.clean_dropped() is None and "too few" in cal.note
    assert cal.report()["estimated_clean_dropped"] is None


def test_calibrate_reads_its_input_once_and_skips_missing_values() -> None:
    seen = 0

    def stream() -> Iterator[float]:
        nonlocal seen
        rng = random.Random(1)
        for _ in range(20_000):
            seen += 1
            yield _sigmoid(rng.gauss(1.0, 0.7))
        yield math.nan

    cal = calibrate(stream())
    assert seen == 20_000 and cal.rows == 20_000
    assert 0.0 < cal.threshold < 0.5


def test_report_gives_the_estimates_at_the_cut_applied() -> None:
    rng = random.Random(3)
    cal = calibrate(_sample(rng, 300, 1.5, 0.5) + _sample(rng, 100, -2.0, 0.5))
    at_cut, at_half = cal.report(), cal.report(0.9)
    assert at_cut["rule"] == "mixture" and at_cut["calibrated_threshold"] == round(cal.threshold, 6)
    assert isinstance(at_half["estimated_clean_dropped"], float)
    assert isinstance(at_cut["estimated_clean_dropped"], float)
    assert at_half["estimated_clean_dropped"] > 0.5 > at_cut["estimated_clean_dropped"]
    assert json.dumps(at_cut)


def test_drop_warning_names_the_share_and_the_reason() -> None:
    rng = random.Random(5)
    conf = _sample(rng, 300, 1.5, 0.5) + _sample(rng, 100, -2.0, 0.5)
    cal = calibrate(conf)
    assert cal.threshold <= CEILING
    assert drop_warning(100, 400, cal, cal.threshold) is None  # 25 %: at the limit, not above it
    text = drop_warning(300, 400, cal, 0.9)
    assert text is not None and "300 of 400 rows (75%)" in text and f"{cal.threshold:.3f}" in text
    assert "clean rows are lost" in text
    few = Calibration("absolute", 0.5, 10)
    text = drop_warning(8, 10, few, 0.5)
    assert text is not None and "too few rows" in text


def _rows(tmp_path: Path, n: int) -> Path:
    lines = (ROOT / "examples" / "factual" / "qa.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_curate_states_the_cost_of_its_cut_and_warns_on_stderr(tmp_path: Path, emulator: EmulatorThread,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    src = _rows(tmp_path, 24)
    args = ["curate", str(src), "--provider", "openai", "--model", "gpt-4o-mini",
            "--base-url", emulator.base_url + "/v1", "--no-cache", "--action", "filter"]
    assert main([*args, "-o", str(tmp_path / "default")]) == 0
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    cal = summary["calibration"]
    assert summary["settings"]["threshold_rule"] == "calibrated"
    assert summary["threshold"] == pytest.approx(cal["calibrated_threshold"], abs=1e-6)
    assert cal["rows"] == 24 and cal["rule"] in ("mixture", "one-component")
    assert 0.0 <= cal["estimated_clean_dropped"] <= 1.0
    html = (tmp_path / "default" / "report.html").read_text()
    assert 'id="calibration"' in html and "of clean rows are dropped" in html
    capsys.readouterr()
    # an absolute cut above every row: the run says what it costs, in summary.json and on stderr
    assert main([*args, "-o", str(tmp_path / "all"), "--threshold", "1"]) == 0
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["counts"]["dropped"] == 24
    assert summary["warnings"] and "24 of 24 rows (100%)" in summary["warnings"][0]
    assert summary["calibration"]["estimated_clean_dropped"] > 0.9
    err = capsys.readouterr().err
    assert "clearapi: warning: 24 of 24 rows (100%)" in err
    assert "drop-warning" in (tmp_path / "all" / "report.html").read_text()
