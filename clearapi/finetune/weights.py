"""CLEAR confidence as a training weight, where the target's format carries a float one.

Fireworks multiplies each sample's loss by a root-level ``weight`` (any float; if one sample has it,
all must). OpenAI's and Together's weights are 0/1 per message, which can only say "train or not":
that is already the keep/drop decision, so they get none from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import orjson

from clearapi.errors import ConfigError, InputError

__all__ = ["FLOAT_WEIGHT_TARGETS", "confidence_weights"]

FLOAT_WEIGHT_TARGETS: Final = frozenset({"fireworks"})


def confidence_weights(out_dir: Path, target: str) -> dict[int, float]:
    """Input line -> weight, from a curate OUTDIR's scores.jsonl."""
    if target not in FLOAT_WEIGHT_TARGETS:
        raise ConfigError(f"--weight-by-confidence needs a target with float sample weights "
                          f"({', '.join(sorted(FLOAT_WEIGHT_TARGETS))}), not {target!r}")
    path = out_dir / "scores.jsonl"
    if not path.is_file():
        raise InputError("--weight-by-confidence needs a curate output folder (with scores.jsonl)",
                         file=str(out_dir))
    weights: dict[int, float] = {}
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
                conf = row.get("correction_confidence") if row.get("action") == "correct" else None
                conf = conf if conf is not None else row.get("confidence")
                weights[int(row["line"])] = round(float(conf), 4) if conf is not None else 1.0
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InputError(f"unreadable score ({exc})", file=str(path), line=n) from exc
    return weights
