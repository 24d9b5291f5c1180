"""Seeded train/validation split, stratified by a key (clearapi uses the row's action).

Why stratify: after curation a file mixes kept rows and corrected rows; a random split of
a small file can put every correction in one side, and the validation loss then measures
something the training set never saw. Splitting each stratum separately keeps the mix.

Deterministic: the same rows, fraction and seed give the same split on every machine
(Python's `random.Random` with a string seed is stable across runs and platforms). Both
outputs keep the input order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = ["split_rows"]

T = TypeVar("T")


def _validation_sizes(sizes: dict[Hashable, int], total_val: int) -> dict[Hashable, int]:
    """Largest-remainder apportionment of `total_val` over strata, proportional to size."""
    n = sum(sizes.values())
    exact = {k: total_val * s / n for k, s in sizes.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = total_val - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), str(k)))[:left]:
        out[k] += 1
    return out


def split_rows(rows: Sequence[T], fraction: float, seed: int = 0,
               key: Callable[[T], Hashable] | None = None) -> tuple[list[T], list[T]]:
    """Split `rows` into (train, validation) with ~`fraction` of them in validation.

    The validation size is ``round(fraction * len(rows))``, at least 1 and at most
    ``len(rows) - 1`` when there are two or more rows, so neither side is empty. Each
    stratum (`key(row)`, default: all one stratum) contributes in proportion to its size.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(rows)
    if n < 2:
        return list(rows), []
    total_val = min(max(round(fraction * n), 1), n - 1)
    strata: dict[Hashable, list[int]] = {}
    for i, row in enumerate(rows):
        strata.setdefault(key(row) if key else None, []).append(i)
    sizes = _validation_sizes({k: len(v) for k, v in strata.items()}, total_val)
    chosen: set[int] = set()
    for k, indices in strata.items():
        rng = random.Random(f"clearapi-split:{seed}:{k!r}")
        chosen.update(rng.sample(indices, sizes[k]))
    train = [r for i, r in enumerate(rows) if i not in chosen]
    val = [r for i, r in enumerate(rows) if i in chosen]
    return train, val
