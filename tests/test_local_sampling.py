"""The local model's draw from the nucleus picks exactly the token a stable argsort would.

The reference below is the plain algorithm (every id ranked by probability, ties by id); the
adapter sorts only the values. Logits with many ties (rounded) and every temperature/top_p
combination are tried, so a tie broken the other way or a rank off by one fails.
"""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy")

from clearapi.adapters.local_llama import _pick  # noqa: E402


def reference(logits: Any, temperature: float, top_p: float, u: float) -> int:
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(p[order])
    if top_p < 1.0:
        keep = int(np.searchsorted(cumulative, top_p)) + 1
        order, cumulative = order[:keep], cumulative[:keep]
    at = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    return int(order[min(at, len(order) - 1)])


class Fixed:
    """A generator whose next draw is known, so both sides see the same u."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self) -> float:
        return self.u


@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.7])
@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.3])
def test_pick_matches_the_stable_argsort_draw(temperature: float, top_p: float) -> None:
    rng = np.random.default_rng(7)
    differing = 0
    for trial in range(150):
        logits = (rng.standard_normal(4096) * rng.choice([0.5, 3.0, 12.0])).astype(np.float32)
        if trial % 2:
            logits = np.round(logits)  # many tied probabilities
        u = float(rng.random()) if trial % 5 else float(rng.choice([0.0, 0.999999999]))
        got, want = _pick(logits, temperature, top_p, Fixed(u)), reference(logits, temperature, top_p, u)
        differing += got != want
    assert differing == 0


def test_pick_is_greedy_at_temperature_zero() -> None:
    logits = np.array([0.1, 3.0, 3.0, -1.0], dtype=np.float32)
    assert _pick(logits, 0.0, 1.0, Fixed(0.5)) == 1


def test_pick_draws_in_proportion() -> None:
    logits = np.log(np.array([0.5, 0.25, 0.25]))
    assert [_pick(logits, 1.0, 1.0, Fixed(u)) for u in (0.1, 0.49, 0.6, 0.74, 0.8, 0.99)] == [0, 0, 1, 1, 2, 2]
    assert [_pick(logits, 1.0, 0.5, Fixed(u)) for u in (0.1, 0.9)] == [0, 0]  # the nucleus is the first token
