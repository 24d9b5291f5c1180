"""Read a curate output folder into the compact tables the report embeds.

A report must open in a browser at any number of rows, so what it embeds is bounded:

* the charts, the counts and the reason summary are aggregates over **every** row (histogram
  bins per action, counts per reason pattern), built in one streaming pass;
* the row table holds every row of a small run, and of a large one a `Sample`: the
  lowest-confidence rows, every corrected row up to a cap, and a seeded random sample of all
  rows, chosen in the same pass with a bounded heap and reservoir; the page says so;
* the embedded rows travel as columns (one JSON array per field, reasons interned) with short
  text previews, and full texts are embedded only for the rows a reader is most likely to
  open: corrections first, then drops, then the least confident, until a character budget
  is spent.

`scores.jsonl` is read twice (aggregates and the choice of rows, then the chosen rows by byte
offset), so memory is bounded by the sample, not by the run or the length of its texts.
"""

from __future__ import annotations

import heapq
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from clearapi.errors import InputError
from clearapi.records import FailedRow, Reject, RowCounts, Score, Summary
from clearapi.report.diff import word_diff
from clearapi.report.histogram import Histogram

__all__ = ["ACTIONS", "DEFAULT_SAMPLE", "ReportData", "Sample", "load_output_dir"]

# Index = code used in the embedded columns; -1 means "no action recorded".
ACTIONS: tuple[str, ...] = ("keep", "correct", "drop")
_ACTION_CODE = {name: i for i, name in enumerate(ACTIONS)}
# Lower rank = more worth reading in full.
_ACTION_RANK = {1: 0, 2: 1, -1: 2, 0: 3}

# Table previews share a budget so 100,000 rows stay a few tens of MB: 240 chars a text
# for small runs, down to 60 for huge ones.
PREVIEW_BUDGET = 12_000_000
PREVIEW_MIN, PREVIEW_MAX = 60, 240
FULL_TEXT_CAP = 20_000
DEFAULT_TEXT_BUDGET = 2_000_000
MAX_REJECTS_SHOWN = 2_000
REJECT_RAW_CHARS = 300
REASON_CHARS = 400
MAX_BAD_LINES_LISTED = 20
MAX_DETAIL_FACTS = 12
#: distinct reason patterns counted; rows with a reason beyond them are counted as "other reasons"
MAX_REASON_PATTERNS = 10_000
OTHER_REASONS = "(other reasons)"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Sample:
    """Which rows the table embeds when a run has more than `limit` of them (else: all).

    The defaults keep report.html of a large run near 3-4 MB of rows (about 650 bytes each with
    previews) plus the detail texts' budget, whatever the number of rows.
    """

    #: the rows with the lowest confidence (those a reader checks first)
    lowest: int = 1_500
    #: a seeded random sample of all rows, for what the rest looks like
    random: int = 2_000
    #: every corrected row, up to this many
    corrected: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.lowest, self.random, self.corrected) < 0:
            raise ValueError(f"sample sizes must be >= 0, got {self}")

    @property
    def limit(self) -> int:
        return self.lowest + self.random + self.corrected


DEFAULT_SAMPLE = Sample()


@dataclass
class ReportData:
    """Everything the page shows, already trimmed to what is worth embedding."""

    out_dir: Path
    summary: Summary | None
    counts: RowCounts
    signals: list[str]
    line: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    confidence: list[float | None] = field(default_factory=list)
    signal_values: dict[str, list[float | None]] = field(default_factory=dict)
    action: list[int] = field(default_factory=list)
    reason: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    prompt_preview: list[str] = field(default_factory=list)
    response_preview: list[str] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    has_correction: list[bool] = field(default_factory=list)
    details: dict[int, dict[str, Any]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    rejects_total: int = 0
    #: rows the API did not answer (failed.jsonl), the first `MAX_REJECTS_SHOWN` of them
    failures: list[FailedRow] = field(default_factory=list)
    failures_total: int = 0
    bad_lines: list[tuple[str, int, str]] = field(default_factory=list)
    bad_lines_total: int = 0
    detail_candidates: int = 0
    preview_chars: int = PREVIEW_MAX
    notes: list[str] = field(default_factory=list)
    #: aggregates over every row of scores.jsonl (the table may hold a sample)
    total_rows: int = 0
    hist_confidence: Histogram = field(default_factory=Histogram.empty)
    hist_signals: dict[str, Histogram] = field(default_factory=dict)
    signal_sums: dict[str, float] = field(default_factory=dict)
    #: rows per (action code, reason with numbers as #)
    reason_counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    action_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    #: the table holds a sample (`total_rows` > the rows embedded)
    sampled: bool = False
    sample: Sample = DEFAULT_SAMPLE

    @property
    def n_rows(self) -> int:
        """Rows embedded in the table (all of them, or the sample)."""
        return len(self.line)

    def aggregate(self, score: Score) -> None:
        """Count one row of scores.jsonl into the charts' aggregates."""
        action = _ACTION_CODE.get(score.action, -1) if score.action else -1
        self.total_rows += 1
        self.action_counts[action if action >= 0 else 3] += 1
        self.hist_confidence.add(score.confidence, action)
        for name, value in score.signals.items():
            if name not in self.hist_signals:
                self.hist_signals[name] = Histogram.empty()
                self.hist_signals[name].missing = self.total_rows - 1  # rows before it had none
                self.signal_sums[name] = 0.0
                if name not in self.signal_values:
                    self.signals.append(name)
                    self.signal_values[name] = []
            self.hist_signals[name].add(value, action)
            if value is not None:
                self.signal_sums[name] += value
        for name, hist in self.hist_signals.items():
            if name not in score.signals:
                hist.missing += 1
        if score.reason is not None:
            key = (action, _NUMBER.sub("#", score.reason[:REASON_CHARS]))
            if key not in self.reason_counts and len(self.reason_counts) >= MAX_REASON_PATTERNS:
                key = (action, OTHER_REASONS)
            self.reason_counts[key] += 1

    def signal_histogram(self, name: str) -> Histogram:
        """Every row's value of signal `name` (a signal no row carries: all missing)."""
        if name in self.hist_signals:
            return self.hist_signals[name]
        hist = Histogram.empty()
        hist.missing = self.total_rows
        return hist


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def preview_chars(n_rows: int) -> int:
    return max(PREVIEW_MIN, min(PREVIEW_MAX, PREVIEW_BUDGET // max(1, 2 * n_rows)))


def _preview(text: str | None, limit: int) -> tuple[str, bool]:
    if text is None:
        return "", False
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def _capped(text: str | None) -> tuple[str | None, bool]:
    if text is None or len(text) <= FULL_TEXT_CAP:
        return text, False
    return text[:FULL_TEXT_CAP], True


def _read_summary(path: Path) -> Summary | None:
    if not path.exists():
        return None
    try:
        return Summary.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise InputError(f"not a clearapi summary: {err.get('msg')}", file=str(path), field=where or None) from exc


class _Columns:
    """Pass one over scores.jsonl: everything but full texts."""

    def __init__(self, data: ReportData, preview: int) -> None:
        self.data = data
        self.preview = preview
        self.reason_index: dict[str, int] = {}
        self.offsets: list[int] = []
        self.sizes: list[int] = []

    def add(self, score: Score, offset: int) -> None:
        d = self.data
        n = len(d.line)
        d.line.append(score.line)
        d.ids.append(score.id)
        d.confidence.append(_round(score.confidence, 4))
        for name, value in score.signals.items():
            if name not in d.signal_values:
                d.signals.append(name)
                d.signal_values[name] = [None] * n
            d.signal_values[name].append(_round(value, 4))
        for name in d.signals:
            column = d.signal_values[name]
            if len(column) == n:
                column.append(None)
        d.action.append(_ACTION_CODE.get(score.action, -1) if score.action else -1)
        if score.reason is None:
            d.reason.append(-1)
        else:
            reason = score.reason[:REASON_CHARS]
            idx = self.reason_index.get(reason)
            if idx is None:
                idx = self.reason_index[reason] = len(d.reasons)
                d.reasons.append(reason)
            d.reason.append(idx)
        prompt, p_cut = _preview(score.prompt, self.preview)
        response, r_cut = _preview(score.response, self.preview)
        d.prompt_preview.append(prompt)
        d.response_preview.append(response)
        d.truncated.append(int(p_cut) | (int(r_cut) << 1))
        alternative, _ = _alternative(score)
        d.has_correction.append(alternative is not None)
        self.offsets.append(offset)
        self.sizes.append(sum(min(len(t or ""), FULL_TEXT_CAP)
                              for t in (score.prompt, score.response, alternative)))


_M = TypeVar("_M", bound=BaseModel)


def _bad_line(data: ReportData, path: Path, number: int, exc: ValidationError) -> None:
    """Count a line that does not parse; list the first few."""
    data.bad_lines_total += 1
    if len(data.bad_lines) < MAX_BAD_LINES_LISTED:
        data.bad_lines.append((path.name, number, str(exc.errors()[0].get("msg", "invalid"))[:200]))


def _records(path: Path, model: type[_M], data: ReportData) -> Iterator[tuple[int, _M]]:
    """(byte offset, record) for each line of `path` that parses as `model`; blank lines
    skipped, unparsable ones counted through `_bad_line`."""
    with path.open("rb") as fh:
        offset = 0
        for number, raw in enumerate(fh, start=1):
            here, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            try:
                record = model.model_validate_json(raw)
            except ValidationError as exc:
                _bad_line(data, path, number, exc)
                continue
            yield here, record


class _Chooser:
    """The rows the table embeds, chosen in one streaming pass in bounded memory: byte offsets
    of the first `Sample.limit` rows (all of a small run), a heap of the lowest confidences,
    the first corrected rows, and a seeded reservoir sample (algorithm R) of all rows."""

    def __init__(self, sample: Sample) -> None:
        self.sample = sample
        self.first: list[int] = []
        self.lowest: list[tuple[float, int, int]] = []  # heap of (-confidence, -index, offset)
        self.corrected: list[int] = []
        self.reservoir: list[int] = []
        self.rng = random.Random(sample.seed)
        self.seen = 0

    def add(self, score: Score, offset: int) -> None:
        i, s = self.seen, self.sample
        self.seen += 1
        if i < s.limit:
            self.first.append(offset)
        if score.action == "correct" and len(self.corrected) < s.corrected:
            self.corrected.append(offset)
        if score.confidence is not None and s.lowest:
            item = (-score.confidence, -i, offset)  # the root is the most confident kept; ties keep earlier rows
            if len(self.lowest) < s.lowest:
                heapq.heappush(self.lowest, item)
            elif item > self.lowest[0]:
                heapq.heapreplace(self.lowest, item)
        if s.random:
            if len(self.reservoir) < s.random:
                self.reservoir.append(offset)
            elif (j := self.rng.randrange(i + 1)) < s.random:
                self.reservoir[j] = offset

    def chosen(self) -> tuple[list[int], bool]:
        """Offsets of the rows to embed, in file order, and whether they are a sample."""
        if self.seen <= self.sample.limit:
            return self.first, False
        offsets = set(self.corrected) | set(self.reservoir) | {offset for _, _, offset in self.lowest}
        return sorted(offsets), True


def _read_scores(path: Path, data: ReportData, sample: Sample) -> _Columns:
    if not path.exists():
        data.notes.append(f"{path.name} not found: no rows to show.")
        return _Columns(data, PREVIEW_MAX)
    chooser = _Chooser(sample)
    for here, score in _records(path, Score, data):
        data.aggregate(score)
        chooser.add(score, here)
    offsets, data.sampled = chooser.chosen()
    data.preview_chars = preview_chars(len(offsets))
    columns = _Columns(data, data.preview_chars)
    with path.open("rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            columns.add(Score.model_validate_json(fh.readline()), offset)
    return columns


def _choose_details(columns: _Columns, budget: int) -> list[int]:
    """Rows whose full texts are embedded: corrections, then drops, then the least confident."""
    d = columns.data
    candidates = [i for i in range(d.n_rows) if d.truncated[i] or d.has_correction[i]]
    d.detail_candidates = len(candidates)

    def priority(i: int) -> tuple[int, float, int]:
        conf = d.confidence[i]
        return (_ACTION_RANK[d.action[i]], 2.0 if conf is None else conf, i)

    chosen: list[int] = []
    spent = 0
    for i in sorted(candidates, key=priority):
        size = columns.sizes[i]
        if spent + size > budget:
            continue
        spent += size
        chosen.append(i)
    return chosen


def _alternative(score: Score) -> tuple[str | None, bool]:
    """The text to set beside the response: the correction, else the model's own answer
    (the pipeline's ``details["candidate"]``), which shows a reader why a row was not corrected.
    The flag says it is a candidate that was not applied."""
    if score.correction is not None:
        return score.correction, False
    candidate = score.details.get("candidate")
    if isinstance(candidate, str) and candidate.strip():
        return candidate, True
    return None, False


def _scalar_details(details: dict[str, Any]) -> dict[str, Any]:
    """Small numbers and words from `Score.details` (e.g. candidate confidence, mean logprob),
    and line numbers (the demonstrations a row was shown: "3, 7 | 12, 15" for two sets)."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if len(out) >= MAX_DETAIL_FACTS:
            break
        if key == "candidate":
            continue
        if isinstance(value, bool) or (isinstance(value, str) and len(value) <= 120):
            out[key] = value
        elif isinstance(value, int | float):
            out[key] = round(float(value), 4) if isinstance(value, float) else value
        elif (lines := _lines(value)) is not None:
            out[key] = lines
    return out


def _lines(value: Any) -> str | None:
    """A short list of line numbers (or of such lists) as text; None for anything else."""
    if not isinstance(value, list) or not value or len(value) > 12:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v) for v in value)
    groups = [_lines(v) for v in value]
    return None if any(g is None for g in groups) else " | ".join(str(g) for g in groups)


def _verdicts(judgement: Any) -> list[list[str]]:
    """Each judge's verdict as (judge, text): both orders (or demonstration sets), the bias it
    removed, and the debiased preference the decision used."""
    if not isinstance(judgement, dict) or not isinstance(judgement.get("verdicts"), list):
        return []
    out = []
    for v in judgement["verdicts"]:
        if not isinstance(v, dict):
            continue
        orders = ", ".join(f"{float(x):.2f}" for x in v.get("orders", []))
        label = "y′ second, y′ first" if v.get("method") == "text" else "per demonstration set"
        out.append([f"{v.get('judge', '?')} ({v.get('method', '?')})",
                    f"P(prefers y′) {orders} ({label}); bias removed {float(v.get('bias', 0.0)):+.2f}; "
                    f"debiased preference {float(v.get('preference', 0.0)):.2f}"])
    return out


def _detail(score: Score) -> dict[str, Any]:
    prompt, p_cut = _capped(score.prompt)
    response, r_cut = _capped(score.response)
    alternative, is_candidate = _alternative(score)
    correction, c_cut = _capped(alternative)
    out: dict[str, Any] = {"p": prompt}
    if is_candidate:
        out["k"] = 1
    facts = _scalar_details(score.details)
    if facts:
        out["f"] = facts
    if response is not None and correction is not None:
        out["d"] = word_diff(response, correction)
    else:
        out["r"] = response
        out["c"] = correction
    if score.methods:
        out["m"] = score.methods
    if score.correction_confidence is not None:
        out["cc"] = round(score.correction_confidence, 4)
    verdicts = _verdicts(score.details.get("judgement"))
    if verdicts:
        out["j"] = verdicts
    cut = int(p_cut) | (int(r_cut) << 1) | (int(c_cut) << 2)
    if cut:
        out["t"] = cut
    return out


def _read_details(path: Path, columns: _Columns, chosen: list[int]) -> None:
    if not chosen:
        return
    with path.open("rb") as fh:
        for i in sorted(chosen, key=lambda k: columns.offsets[k]):
            fh.seek(columns.offsets[i])
            columns.data.details[i] = _detail(Score.model_validate_json(fh.readline()))


def _read_rejects(path: Path, data: ReportData) -> None:
    if not path.exists():
        return
    for _, reject in _records(path, Reject, data):
        data.rejects_total += 1
        if len(data.rejects) < MAX_REJECTS_SHOWN:
            if reject.raw is not None and len(reject.raw) > REJECT_RAW_CHARS:
                reject.raw = reject.raw[:REJECT_RAW_CHARS] + "…"
            data.rejects.append(reject)


def _read_failures(path: Path, data: ReportData) -> None:
    if not path.exists():
        return
    for _, failure in _records(path, FailedRow, data):
        data.failures_total += 1
        if len(data.failures) < MAX_REJECTS_SHOWN:
            data.failures.append(failure)


def _derived_counts(data: ReportData) -> RowCounts:
    kept, corrected, dropped, _ = data.action_counts
    rejected, failed = data.rejects_total, data.failures_total
    return RowCounts(rows=data.total_rows + rejected + failed, kept=kept, corrected=corrected,
                     dropped=dropped, rejected=rejected, failed=failed)


def load_output_dir(out_dir: Path, *, text_budget: int = DEFAULT_TEXT_BUDGET,
                    sample: Sample = DEFAULT_SAMPLE) -> ReportData:
    """Read summary.json, scores.jsonl, rejects.jsonl and failed.jsonl from `out_dir`.

    The charts' aggregates count every row; the table holds every row when there are at most
    ``sample.limit`` of them, else the `Sample` (`ReportData.sampled`).

    Missing files are tolerated (a run stopped early still deserves a report); a
    summary.json that is not a clearapi summary is an `InputError`. Lines of scores.jsonl
    that do not parse (e.g. the last line of a killed run) are skipped and listed.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError("not a directory", file=str(out_dir))
    summary = _read_summary(out_dir / "summary.json")
    outputs = summary.outputs if summary else {}
    scores_path = out_dir / outputs.get("scores", "scores.jsonl")
    rejects_path = out_dir / outputs.get("rejects", "rejects.jsonl")
    failed_path = out_dir / outputs.get("failed", "failed.jsonl")
    if summary is None and not scores_path.exists():
        raise InputError("no summary.json or scores.jsonl here: not a clearapi output folder",
                         file=str(out_dir))
    data = ReportData(out_dir=out_dir, summary=summary, counts=RowCounts(), signals=[], sample=sample)
    if summary is not None:
        for name in summary.signals:
            data.signals.append(name)
            data.signal_values[name] = []
    else:
        data.notes.append("summary.json not found: counts are derived from scores.jsonl, rejects.jsonl "
                          "and failed.jsonl.")
    columns = _read_scores(scores_path, data, sample)
    _read_details(scores_path, columns, _choose_details(columns, text_budget))
    _read_rejects(rejects_path, data)
    _read_failures(failed_path, data)
    # Signals the summary names but no row carries are still shown (as all n/a).
    for name in data.signals:
        column = data.signal_values[name]
        column.extend([None] * (data.n_rows - len(column)))
    data.counts = summary.counts if summary is not None else _derived_counts(data)
    return data
