"""Validate a fine-tuning file against a service's published rules, like a linter.

Why a linter and not an exception: a service rejects a whole upload for one bad line
after minutes of waiting; users want every problem at once, each pointing at a line and
a field, and a verdict they can script against (`ok` / exit code 1). The file is read as a
stream, so a multi-gigabyte file costs one line of memory plus one integer per example
(and at most `max_kept` findings; the rest are counted).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from clearapi.finetune.rules import Finding, ServiceRules, check_record, rules_for
from clearapi.finetune.tokens import TokenCounter, count_messages, counter_for

__all__ = ["Finding", "TokenStats", "ValidationReport", "format_report", "validate_file"]


class TokenStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counter: str = Field(description="vocabulary used, or 'heuristic'")
    exact: bool
    error_bound: float = Field(description="relative error bound of the counts; 0 when exact")
    total: int = 0
    min: int | None = None
    max: int | None = None
    mean: float | None = None


class ValidationReport(BaseModel):
    """What `validate` found, and what training on the file would cost."""

    model_config = ConfigDict(extra="forbid")

    file: str
    target: str
    service: str
    model: str
    examples: int = 0
    errors: int = 0
    warnings: int = 0
    findings: list[Finding] = Field(default_factory=list)
    findings_omitted: int = Field(default=0, description="per-line findings counted but not kept (see max_kept)")
    tokens: TokenStats
    billed_tokens_per_epoch: int = 0
    price_per_mtok: float | None = Field(default=None, description="USD per 1M training tokens")
    price_source: str | None = None
    cost_per_epoch_usd: float | None = None
    epochs: int | None = None
    cost_total_usd: float | None = None

    @property
    def ok(self) -> bool:
        """True when the service would accept the file (warnings do not count)."""
        return self.errors == 0


class _Collector:
    """Counts every finding; keeps the first `keep` per-line ones so memory stays bounded."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.items: list[Finding] = []
        self.errors = 0
        self.total = 0

    def append(self, f: Finding, *, always: bool = False) -> None:
        self.total += 1
        self.errors += f.severity == "error"
        if always or len(self.items) < self.keep:
            self.items.append(f)

    def extend(self, fs: list[Finding], *, always: bool = False) -> None:
        for f in fs:
            self.append(f, always=always)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, raw.rstrip(b"\r\n")


def _example_tokens(obj: Mapping[str, Any], rules: ServiceRules, counter: TokenCounter) -> tuple[int, int]:
    """(length that must fit the context, tokens billed per epoch) for one record."""
    def msgs(value: Any) -> list[Mapping[str, Any]]:
        return [m for m in value if isinstance(m, Mapping)] if isinstance(value, list) else []

    if rules.kind == "preference":
        inp = obj.get("input")
        prompt = count_messages(counter, msgs(inp.get("messages")) if isinstance(inp, Mapping) else [],
                                priming=False)
        outs = [count_messages(counter, msgs(obj.get(k)), priming=False)
                for k in ("preferred_output", "non_preferred_output")]
        return prompt + max(outs) + 3, prompt + sum(outs) + 3
    system = obj.get("system") if rules.kind == "bedrock" else None
    n = count_messages(counter, msgs(obj.get("messages")),
                       system=system if isinstance(system, str) else None)
    return n, n


def _limit_finding(path: str, line: int, n: int, limit: int, rules: ServiceRules,
                   counter: TokenCounter, model: str) -> Finding | None:
    if counter.exact:
        if n <= limit:
            return None
        return Finding(file=path, line=line, rule="example-tokens", severity=rules.over_limit_severity,
                       message=f"{n} tokens, over the {limit}-token training context of {model}"
                       + (" (it will be truncated)" if rules.over_limit_severity == "warning" else ""))
    low, high = n * (1 - counter.error_bound), n * (1 + counter.error_bound)
    if low > limit:
        return Finding(file=path, line=line, rule="example-tokens", severity=rules.over_limit_severity,
                       message=f"about {n} tokens (estimate ±{counter.error_bound:.0%}), over the "
                       f"{limit}-token limit of {model}")
    if high > limit:
        return Finding(file=path, line=line, rule="example-tokens", severity="warning",
                       message=f"about {n} tokens (estimate ±{counter.error_bound:.0%}), may exceed the "
                       f"{limit}-token limit of {model}")
    return None


def validate_file(path: str | os.PathLike[str], target: str = "openai", *, model: str | None = None,
                  epochs: int | None = None, price_per_mtok: float | None = None,
                  validation_set: bool = False, max_kept: int = 10_000) -> ValidationReport:
    """Check every line and the file as a whole; never raises for bad content.

    `price_per_mtok` overrides the built-in training price table (USD per 1M tokens).
    `validation_set=True` checks a validation file: the services' minimum example counts
    apply to training files only. At most `max_kept` per-line findings are kept in the
    report (all are counted; file-level findings are always kept).
    """
    p = Path(path)
    rules = rules_for(target)
    model_name, limit = rules.limit_for(model)
    counter = counter_for(target, model_name)
    shown = str(path)
    findings = _Collector(max_kept)
    counts: list[int] = []
    billed = 0
    examples = 0
    for number, raw in _lines(p):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
            findings.append(Finding(file=shown, line=1, rule="bom", severity="warning",
                                    message="the file starts with a UTF-8 byte-order mark; save it without one"))
        if not raw.strip():
            findings.append(Finding(file=shown, line=number, rule="blank-line", severity="warning",
                                    message="empty line (skipped)"))
            continue
        examples += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            findings.append(Finding(file=shown, line=number, rule="utf8",
                                    message=f"not valid UTF-8 at byte {exc.start}"))
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            findings.append(Finding(file=shown, line=number, rule="json", message=f"invalid JSON: {exc}"))
            continue
        findings.extend(check_record(obj, rules, file=shown, line=number))
        if not isinstance(obj, Mapping):
            continue
        length, cost_tokens = _example_tokens(obj, rules, counter)
        counts.append(length)
        billed += cost_tokens
        if limit is not None and limit.max_tokens is not None:
            f = _limit_finding(shown, number, length, limit.max_tokens, rules, counter, model_name)
            if f:
                findings.append(f)
    findings.extend(_file_findings(p, shown, rules, examples, validation_set), always=True)

    price = price_per_mtok if price_per_mtok is not None else (limit.price_per_mtok if limit else None)
    source = "--price" if price_per_mtok is not None else (limit.source if limit else None)
    per_epoch = billed / 1e6 * price if price is not None else None
    return ValidationReport(
        file=shown, target=target, service=rules.service, model=model_name, examples=examples,
        errors=findings.errors, warnings=findings.total - findings.errors, findings=findings.items,
        findings_omitted=findings.total - len(findings.items),
        tokens=TokenStats(counter=counter.name, exact=counter.exact, error_bound=counter.error_bound,
                          total=sum(counts), min=min(counts, default=None), max=max(counts, default=None),
                          mean=(sum(counts) / len(counts)) if counts else None),
        billed_tokens_per_epoch=billed, price_per_mtok=price, price_source=source,
        cost_per_epoch_usd=per_epoch, epochs=epochs,
        cost_total_usd=per_epoch * epochs if (per_epoch is not None and epochs) else None,
    )


def _file_findings(p: Path, shown: str, rules: ServiceRules, examples: int,
                   validation_set: bool) -> list[Finding]:
    out: list[Finding] = []
    if examples < rules.min_examples and not validation_set:
        out.append(Finding(file=shown, rule="min-examples",
                           message=f"{examples} examples; {rules.service} needs at least {rules.min_examples}"))
    if rules.max_examples is not None and examples > rules.max_examples:
        out.append(Finding(file=shown, rule="max-examples",
                           message=f"{examples} examples; {rules.service} accepts at most {rules.max_examples}"))
    size = p.stat().st_size
    if rules.max_file_bytes is not None and size > rules.max_file_bytes:
        out.append(Finding(file=shown, rule="file-size",
                           message=f"{size} bytes; {rules.service} accepts at most {rules.max_file_bytes}"))
    if rules.jsonl_only and p.suffix.lower() != ".jsonl":
        out.append(Finding(file=shown, rule="file-extension",
                           message=f"{rules.service} only accepts .jsonl files (got {p.name!r})"))
    return out


def format_report(report: ValidationReport, *, max_findings: int = 200) -> str:
    """Linter lines (`file:line: field: severity: message [rule]`) then a summary."""
    lines = [str(f) for f in report.findings[:max_findings]]
    more = len(report.findings) - len(lines) + report.findings_omitted
    if more > 0:
        lines.append(f"... {more} more findings" + (" (use --json to see them)" if not report.findings_omitted
                                                     else f" ({report.findings_omitted} only counted)"))
    t = report.tokens
    how = "exact" if t.exact else f"estimated, ±{t.error_bound:.0%}"
    lines.append("")
    lines.append(f"{report.file}: {report.examples} examples for {report.service}, model {report.model}")
    if t.min is not None:
        lines.append(f"  tokens ({t.counter}, {how}): total {t.total}, per example min {t.min} / "
                     f"mean {t.mean:.0f} / max {t.max}")
    if report.cost_per_epoch_usd is not None:
        cost = f"  estimated training cost: ${report.cost_per_epoch_usd:.4f} per epoch " \
               f"({report.billed_tokens_per_epoch} tokens at ${report.price_per_mtok}/1M, {report.price_source})"
        if report.cost_total_usd is not None:
            cost += f"; ${report.cost_total_usd:.4f} for {report.epochs} epochs"
        lines.append(cost)
    else:
        lines.append(f"  {report.billed_tokens_per_epoch} training tokens per epoch; no price known "
                     f"for {report.model} (pass --price USD_PER_1M)")
    verdict = "would be REJECTED" if not report.ok else "looks acceptable"
    lines.append(f"  {report.errors} errors, {report.warnings} warnings: the file {verdict}")
    return "\n".join(lines)
