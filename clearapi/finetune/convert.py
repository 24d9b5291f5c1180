"""Turn a dataset, or a finished `curate` folder, into a target's upload-ready file(s).

Two sources:

* a dataset file (any input `clearapi.sources.open_input` reads): every example is
  rendered as is (supervised targets only);
* a curate OUTDIR (``scores.jsonl`` + ``summary.json``): the original input is re-read and
  joined to the scores by line. Supervised targets get kept rows as they were and corrected
  rows with the correction; dropped rows are left out. Preference targets get one pair per
  accepted correction: preferred = the correction, non-preferred = the original response.

Memory stays flat: the first pass keeps one small tuple per row (for the stratified split),
the second renders and writes row by row. Rows a target cannot express (`RenderError`) and
unreadable input rows are written to ``OUT.rejects.jsonl``; the counts add up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from clearapi.errors import ConfigError, InputError
from clearapi.finetune.split import split_rows
from clearapi.finetune.targets import TARGETS, RenderError, record_for
from clearapi.records import Example, Reject
from clearapi.writers import AtomicJsonlWriter

__all__ = ["ConvertResult", "convert", "validation_path_for"]


class ConvertResult(BaseModel):
    """Where every input row went: ``rows == written + validation + skipped + rejected``."""

    model_config = ConfigDict(extra="forbid")

    target: str
    rows: int = 0
    written: int = 0
    validation: int = 0
    skipped: dict[str, int] = Field(default_factory=dict, description="left out on purpose, by reason")
    rejected: int = 0
    output: str
    validation_output: str | None = None
    rejects_output: str | None = None

    @property
    def adds_up(self) -> bool:
        return self.rows == self.written + self.validation + sum(self.skipped.values()) + self.rejected


def validation_path_for(output: Path) -> Path:
    """``train.jsonl`` -> ``train.validation.jsonl``."""
    return output.with_name(f"{output.stem}.validation{output.suffix or '.jsonl'}")


_Decision = tuple[str, str | None]  # (action, correction)


def _scores(out_dir: Path) -> dict[int, _Decision]:
    path = out_dir / "scores.jsonl"
    decisions: dict[int, _Decision] = {}
    try:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw)
                    decisions[int(obj["line"])] = (str(obj.get("action") or "keep"), obj.get("correction"))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise InputError(f"unreadable score ({exc})", file=str(path), line=n) from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return decisions


def _source_of(out_dir: Path, source: Path | None) -> Path:
    if source is not None:
        return source
    summary = out_dir / "summary.json"
    try:
        data = orjson.loads(summary.read_bytes())
        found = Path(str(data["input"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{summary}: cannot find the curated input file ({exc}); pass --source FILE") from exc
    if not found.is_absolute() and not found.exists():
        found = out_dir / found
    if not found.exists():
        raise InputError(f"the input named in {summary} ({found}) is gone; pass --source FILE")
    return found


def _plan(items: Iterator[Example | Reject], decisions: dict[int, _Decision] | None,
          preference: bool) -> list[tuple[int, str]]:
    """(row number, stratum) for rows that will be written; stratum = the row's action."""
    plan: list[tuple[int, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, Reject):
            continue
        action, correction = decisions.get(item.line, ("", None)) if decisions is not None else ("keep", None)
        if _skip_reason(action, correction, preference) is None:
            plan.append((i, action))
    return plan


def _skip_reason(action: str, correction: str | None, preference: bool) -> str | None:
    if action == "":
        return "no score"
    if action == "drop":
        return "dropped"
    if preference and not (action == "correct" and correction):
        return "no correction to pair"
    return None


def convert(input: str | Path, output: str | Path, target: str, *, validation_split: float | None = None,
            seed: int = 0, validation_output: str | Path | None = None, source: str | Path | None = None,
            prompt_column: str | None = None, response_column: str | None = None,
            weight_by_confidence: bool = False) -> ConvertResult:
    """Write `target` records for `input` (a dataset file or a curate OUTDIR) to `output`.

    ``weight_by_confidence`` (Fireworks, from an OUTDIR): each record's root ``weight`` is the
    row's CLEAR confidence (the correction's for a corrected row), so trusted rows teach more.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    weights: dict[int, float] | None = None
    if weight_by_confidence:
        from clearapi.finetune.weights import confidence_weights

        weights = confidence_weights(Path(input), target)
    inp, out = Path(input), Path(output)
    preference = TARGETS[target].preference
    decisions: dict[int, _Decision] | None = None
    if inp.is_dir():
        decisions = _scores(inp)
        data_path = _source_of(inp, Path(source) if source else None)
    else:
        if preference:
            raise ConfigError(f"target {target!r} builds pairs from auto-corrections: give a curate OUTDIR "
                              "(with scores.jsonl), not a dataset file")
        data_path = inp

    def items() -> Iterator[Example | Reject]:
        from clearapi.sources import open_input  # Parquet and datasets folders as well as JSONL/CSV

        return iter(open_input(data_path, prompt_column=prompt_column, response_column=response_column))

    chosen: set[int] = set()
    if validation_split:
        plan = _plan(items(), decisions, preference)
        _, val = split_rows(plan, validation_split, seed, key=lambda r: r[1])
        chosen = {i for i, _ in val}
    val_path = Path(validation_output) if validation_output else validation_path_for(out)
    rejects_path = out.with_name(f"{out.stem}.rejects.jsonl")
    result = ConvertResult(target=target, output=str(out),
                           validation_output=str(val_path) if validation_split else None)
    rejects: list[Reject] = []
    with AtomicJsonlWriter(out) as train_w, \
            (AtomicJsonlWriter(val_path) if validation_split else _NoWriter()) as val_w:
        for i, item in enumerate(items()):
            result.rows += 1
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            action, correction = decisions.get(item.line, ("", None)) if decisions is not None else ("keep", None)
            reason = _skip_reason(action, correction, preference)
            if reason is not None:
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                continue
            try:
                record = record_for(item, action, correction, target)
            except RenderError as exc:
                rejects.append(Reject(file=str(data_path), line=item.line, field=exc.field, error=str(exc)))
                continue
            if record is None:  # pragma: no cover - _skip_reason already left these out
                continue
            if weights is not None:
                record["weight"] = weights.get(item.line, 1.0)
            if i in chosen:
                val_w.write(record)
                result.validation += 1
            else:
                train_w.write(record)
                result.written += 1
    result.rejected = len(rejects)
    if rejects:
        with AtomicJsonlWriter(rejects_path) as w:
            for r in rejects:
                w.write(r)
        result.rejects_output = str(rejects_path)
    return result


class _NoWriter:
    def __enter__(self) -> _NoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, obj: Any) -> None:  # pragma: no cover - never chosen without a split
        raise AssertionError("no validation split requested")
