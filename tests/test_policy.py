"""Filter / correct decisions: thresholds, the gates, the both-orders rule, fraction cuts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearapi.clear.policy import (
    Candidate,
    Judgement,
    PolicySettings,
    decide,
    fraction_threshold,
    needs_judgement,
)
from clearapi.errors import ConfigError

GOOD = Candidate(text="Ottawa.", confidence=0.9, agreement=0.0)
WIN = Judgement(candidate_second=0.95, candidate_first=0.9)
unit = st.floats(min_value=0.0, max_value=1.0)


def test_keep_above_threshold_with_reason() -> None:
    d = decide(0.7, 0.5, PolicySettings())
    assert d.action == "keep"
    assert d.reason == "confidence 0.70 >= threshold 0.50"


def test_filter_drops_below_threshold() -> None:
    d = decide(0.2, 0.5, PolicySettings(action="filter"), candidate=GOOD, judgement=WIN)
    assert d.action == "drop"
    assert d.reason == "confidence 0.20 < threshold 0.50"
    assert d.correction is None


def test_correct_when_every_gate_passes() -> None:
    d = decide(0.2, 0.5, PolicySettings(), candidate=GOOD, judgement=WIN)
    assert d.action == "correct"
    assert d.correction == "Ottawa."
    assert "preferred in both orders" in d.reason and "0.95" in d.reason and "0.90" in d.reason


@pytest.mark.parametrize(
    ("candidate", "judgement", "why"),
    [
        (None, None, "no candidate answer"),
        (Candidate("  ", 0.9, 0.0), WIN, "no candidate answer"),
        (Candidate("Toronto", 0.9, 0.95), WIN, "agrees with the response"),
        (Candidate("Ottawa", 0.3, 0.0), WIN, "candidate confidence 0.30 < correct threshold 0.60"),
        (GOOD, None, "pairwise judgement not available"),
        (GOOD, Judgement(0.99, 0.4), "did not prefer the candidate in both orders"),
        (GOOD, Judgement(0.4, 0.99), "did not prefer the candidate in both orders"),
        (GOOD, Judgement(0.95, 0.7), "pairwise judgement 0.70 < eta 0.80"),
    ],
)
def test_each_failed_gate_is_the_reason(candidate: Candidate | None, judgement: Judgement | None, why: str) -> None:
    both = decide(0.2, 0.5, PolicySettings(action="both"), candidate=candidate, judgement=judgement)
    assert both.action == "drop"
    assert why in both.reason and both.reason.endswith("dropped")
    only = decide(0.2, 0.5, PolicySettings(action="correct"), candidate=candidate, judgement=judgement)
    assert only.action == "keep"
    assert why in only.reason and only.reason.endswith("kept unchanged")


def test_judgement_error_is_reported() -> None:
    d = decide(0.2, 0.5, PolicySettings(), candidate=GOOD, judgement_error="pairwise judgement failed: 500")
    assert d.action == "drop" and "pairwise judgement failed: 500" in d.reason


def test_no_confidence_keeps() -> None:
    d = decide(None, 0.5, PolicySettings())
    assert d.action == "keep" and "no confidence" in d.reason


def test_needs_judgement_only_where_it_can_change_the_decision() -> None:
    s = PolicySettings()
    assert needs_judgement(0.2, 0.5, GOOD, s)
    assert not needs_judgement(0.7, 0.5, GOOD, s)  # kept anyway
    assert not needs_judgement(0.2, 0.5, GOOD, PolicySettings(action="filter"))
    assert not needs_judgement(0.2, 0.5, Candidate("Ottawa", 0.1, 0.0), s)  # unsure candidate
    assert not needs_judgement(0.2, 0.5, Candidate("Ottawa", 0.9, 0.9), s)  # same answer
    assert not needs_judgement(None, 0.5, GOOD, s)


@given(c=unit, t=unit, a=unit, b=unit, cc=unit, ag=unit)
def test_correction_requires_both_orders(c: float, t: float, a: float, b: float, cc: float, ag: float) -> None:
    s = PolicySettings()
    d = decide(c, t, s, candidate=Candidate("y prime", cc, ag), judgement=Judgement(a, b))
    if d.action == "correct":
        assert c < t
        assert a > 0.5 and b > 0.5 and min(a, b) >= s.eta
        assert cc >= s.correct_threshold and ag < s.same_answer
    # the rule is symmetric in the two orders
    swapped = decide(c, t, s, candidate=Candidate("y prime", cc, ag), judgement=Judgement(b, a))
    assert swapped.action == d.action


@given(c=unit, t1=unit, t2=unit)
def test_raising_the_threshold_never_keeps_more(c: float, t1: float, t2: float) -> None:
    lo, hi = sorted((t1, t2))
    s = PolicySettings(action="filter")
    if decide(c, hi, s).action == "keep":
        assert decide(c, lo, s).action == "keep"


@given(st.lists(unit, max_size=60), st.floats(min_value=0.0, max_value=1.0))
def test_fraction_threshold_drops_at_most_the_fraction(confs: list[float], f: float) -> None:
    t = fraction_threshold(confs, f)
    below = sum(1 for x in confs if x < t)
    assert below <= int(f * len(confs) + 1e-9)
    if len(set(confs)) == len(confs) and confs:
        assert below == int(f * len(confs) + 1e-9)


def test_fraction_threshold_edges() -> None:
    assert fraction_threshold([], 0.5) == 0.0
    assert fraction_threshold([0.1, 0.2, 0.3, 0.4], 0.5) == 0.3
    assert fraction_threshold([0.1, 0.2], 0.0) == 0.0
    assert all(x < fraction_threshold([0.1, 0.2], 1.0) for x in (0.1, 0.2))
    with pytest.raises(ConfigError):
        fraction_threshold([0.1], 1.5)


def test_settings_validated() -> None:
    with pytest.raises(ConfigError):
        PolicySettings(action="delete")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PolicySettings(eta=1.5)
