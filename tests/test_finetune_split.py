"""`split_rows`: seeded, stratified, order-preserving, nothing lost."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearapi.finetune import split_rows


def test_stratified_by_action() -> None:
    rows = [(i, "keep") for i in range(80)] + [(i, "correct") for i in range(80, 100)]
    train, val = split_rows(rows, 0.25, seed=3, key=lambda r: r[1])
    assert len(val) == 25 and len(train) == 75
    assert Counter(a for _, a in val) == {"keep": 20, "correct": 5}
    assert train == sorted(train) and val == sorted(val)  # input order kept


def test_seeded_and_seed_sensitive() -> None:
    rows = list(range(200))
    assert split_rows(rows, 0.1, seed=1) == split_rows(rows, 0.1, seed=1)
    assert split_rows(rows, 0.1, seed=1)[1] != split_rows(rows, 0.1, seed=2)[1]


def test_small_inputs_and_bad_fractions() -> None:
    assert split_rows([1], 0.5, seed=0) == ([1], [])
    assert split_rows([1, 2], 0.01, seed=0)[1] != []  # at least one validation row
    assert split_rows([1, 2], 0.99, seed=0)[0] != []  # at least one training row
    for bad in (0.0, 1.0, -0.1, 2):
        with pytest.raises(ValueError):
            split_rows([1, 2, 3], bad, seed=0)


@given(rows=st.lists(st.tuples(st.integers(), st.sampled_from(["keep", "correct", "drop"])), min_size=2,
                     max_size=300, unique_by=lambda r: r[0]),
       fraction=st.floats(0.01, 0.99), seed=st.integers(0, 10))
def test_partition_properties(rows: list[tuple[int, str]], fraction: float, seed: int) -> None:
    train, val = split_rows(rows, fraction, seed, key=lambda r: r[1])
    assert sorted(train + val) == sorted(rows)
    assert len(val) == min(max(round(fraction * len(rows)), 1), len(rows) - 1)
    per = Counter(a for _, a in rows)
    got = Counter(a for _, a in val)
    for action, n in per.items():  # each stratum within one row of its proportional share
        assert abs(got[action] - len(val) * n / len(rows)) < 1 + 1e-9
