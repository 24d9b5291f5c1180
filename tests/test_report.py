"""report.html, Python side: escaping, the embedded data, counts, histograms, size at 100k rows.

The browser side (sorting, search, the side-by-side view, script injection in a real
Chromium) is tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixtures import (
    HOSTILE_CORRECTION,
    HOSTILE_PROMPT,
    HOSTILE_RESPONSE,
    realistic_output_dir,
    scaled_output_dir,
)

from clearapi.cli import main as cli_main
from clearapi.errors import InputError
from clearapi.records import Score, Summary
from clearapi.report import render_report, write_report
from clearapi.report.diff import corrected_of, original_of, word_diff
from clearapi.report.histogram import bin_by_action
from clearapi.report.load import DEFAULT_SAMPLE, Sample, _scalar_details, load_output_dir
from clearapi.report.render import embed_json

# Everything the page's own markup uses; a data row must not add any other element.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "span", "section",
    "div", "svg", "line", "text", "g", "rect", "i", "figure", "figcaption", "b", "br", "input", "select",
    "option", "button", "label", "table", "thead", "tbody", "tr", "th", "td", "nav", "noscript", "dl",
    "pre", "footer", "script", "ul", "li",
}


class _Doc(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self._attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in, self._attrs = tag, dict(attrs)
            if tag == "script":
                self.scripts.append((self._attrs, ""))
            else:
                self.styles.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "style":
            self.styles[-1] += data


def _parse(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    doc.close()
    return doc


def _payload(html: str) -> dict[str, object]:
    doc = _parse(html)
    data = [text for attrs, text in doc.scripts if attrs.get("id") == "report-data"]
    assert len(data) == 1
    loaded: dict[str, object] = json.loads(data[0])
    return loaded


def _scores(out: Path) -> list[Score]:
    return [Score.model_validate_json(line) for line in (out / "scores.jsonl").read_text().splitlines() if line]


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    realistic_output_dir(out, hostile=True)
    return out


def test_embed_json_cannot_close_the_script_element() -> None:
    nasty = {"a": "</script><script>alert(1)</script>", "b": "<!-- <script>", "c": "x & y > z", "d": "\u2028"}
    text = embed_json(nasty)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == nasty


def test_hostile_rows_add_no_markup_and_survive_as_text(hostile_dir: Path) -> None:
    html = write_report(hostile_dir).read_text(encoding="utf-8")
    doc = _parse(html)
    # No element or handler the page did not create itself.
    assert {tag for tag, _ in doc.tags} <= ALLOWED_TAGS
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]
    assert [attrs.get("id") or attrs.get("type") for attrs, _ in doc.scripts] == ["report-data", None]
    assert 'id="pwn"' not in html and "<img" not in html
    # The data block round-trips the hostile strings exactly.
    payload = _payload(html)
    i = payload["id"].index('<b id="pwn">hostile</b>')  # type: ignore[attr-defined]
    detail = payload["details"][str(i)]  # type: ignore[index]
    assert detail["p"] == HOSTILE_PROMPT
    assert original_of([tuple(op) for op in detail["d"]]) == HOSTILE_RESPONSE
    assert corrected_of([tuple(op) for op in detail["d"]]) == HOSTILE_CORRECTION
    # Server-rendered text (the rejects table) is escaped, not dropped.
    assert "&lt;script&gt;window.__pwned=&quot;reject-raw&quot;&lt;/script&gt;" in html


def test_csp_allows_exactly_the_inline_script_and_style(hostile_dir: Path) -> None:
    html = render_report(hostile_dir)
    doc = _parse(html)
    csp = next(attrs["content"] for tag, attrs in doc.tags
               if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "unsafe-inline" not in csp

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    code = next(text for attrs, text in doc.scripts if "type" not in attrs)
    assert f"script-src {digest(code)};" in csp
    assert f"style-src {digest(doc.styles[0])};" in csp
    # No reference to anything outside the file.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)


def test_headline_numbers_equal_summary(hostile_dir: Path) -> None:
    summary = Summary.model_validate_json((hostile_dir / "summary.json").read_text())
    doc = _parse(render_report(hostile_dir))
    values = {attrs["id"]: attrs.get("data-value") for tag, attrs in doc.tags
              if tag == "div" and (attrs.get("id") or "").startswith("stat-")}
    c, e = summary.counts, summary.engine
    expected = {"rows": c.rows, "kept": c.kept, "corrected": c.corrected, "dropped": c.dropped,
                "rejected": c.rejected, "requests": e.requests, "cache_hits": e.cache_hits,
                "tokens": e.prompt_tokens + e.completion_tokens, "wall": e.wall_seconds}
    for key, want in expected.items():
        assert float(values[f"stat-{key}"] or "nan") == pytest.approx(want), key
    assert c.adds_up


def test_histogram_counts_every_scored_row_once(hostile_dir: Path) -> None:
    scores = _scores(hostile_dir)
    data = load_output_dir(hostile_dir)
    hist = bin_by_action(data.confidence, data.action)
    assert hist.total == sum(s.confidence is not None for s in scores)
    by_action = [sum(b[a] for b in hist.counts) for a in range(3)]
    assert by_action == [sum(s.action == name for s in scores) for name in ("keep", "correct", "drop")]
    html = render_report(hostile_dir)
    summary = Summary.model_validate_json((hostile_dir / "summary.json").read_text())
    assert f'data-threshold="{summary.threshold}"' in html
    assert html.count('class="threshold-line"') == 1  # on the confidence chart only
    assert html.count('<svg class="hist"') == 1 + len(data.signals)


def test_bin_edges() -> None:
    hist = bin_by_action([0.0, 0.049, 0.05, 0.999, 1.0, None], [0, 0, 1, 2, 2, 0], bins=20)
    assert hist.counts[0] == [2, 0, 0, 0]
    assert hist.counts[1] == [0, 1, 0, 0]
    assert hist.counts[19] == [0, 0, 2, 0]
    assert hist.missing == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_word_diff_rebuilds_both_texts(a: str, b: str) -> None:
    ops = word_diff(a, b)
    assert original_of(ops) == a
    assert corrected_of(ops) == b
    assert all(text for _, text in ops)


def test_word_diff_marks_only_the_changed_word() -> None:
    assert word_diff("A spider has six legs.", "A spider has eight legs.") == [
        (0, "A spider has "), (-1, "six"), (1, "eight"), (0, " legs.")]


def test_text_budget_prefers_corrections_then_drops(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scaled_output_dir(out, 400)
    scores = _scores(out)
    corrections = sorted((i for i, s in enumerate(scores) if s.action == "correct"),
                         key=lambda i: scores[i].confidence or 0.0)
    assert len(corrections) > 12

    def size(s: Score) -> int:
        return sum(len(t or "") for t in (s.prompt, s.response, s.correction))

    budget = sum(size(scores[i]) for i in corrections[:10]) + 50
    data = load_output_dir(out, text_budget=budget)
    chosen = set(data.details)
    assert sum(size(scores[i]) for i in chosen) <= budget
    # The ten least confident corrections come first; what is left may go to smaller rows.
    assert set(corrections[:10]) <= chosen
    assert not chosen & set(corrections[10:])
    # Rows without full text still carry a preview and say it was cut.
    left_out = next(i for i in range(data.n_rows) if i not in data.details)
    assert data.truncated[left_out] == 3
    assert scores[left_out].prompt is not None
    assert scores[left_out].prompt.startswith(data.prompt_preview[left_out])


def test_unreadable_lines_are_listed_not_fatal(hostile_dir: Path) -> None:
    with (hostile_dir / "scores.jsonl").open("a") as fh:
        fh.write('{"line": 999, "id": "cut-off", "confid')  # a run killed mid-write
    html = render_report(hostile_dir)
    assert 'id="bad-lines"' in html and "scores.jsonl:" in html
    assert "cut-off" not in html


def test_missing_summary_derives_counts(hostile_dir: Path) -> None:
    scores = _scores(hostile_dir)
    (hostile_dir / "summary.json").unlink()
    data = load_output_dir(hostile_dir)
    assert data.counts.rows == len(scores) + data.rejects_total
    assert data.counts.adds_up
    assert "summary.json not found" in render_report(hostile_dir)


def test_not_an_output_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a clearapi output folder"):
        write_report(tmp_path)
    (tmp_path / "summary.json").write_text('{"provider": 3}')
    with pytest.raises(InputError, match=r"summary\.json"):
        write_report(tmp_path)


def test_settings_are_redacted(hostile_dir: Path) -> None:
    path = hostile_dir / "summary.json"
    summary = Summary.model_validate_json(path.read_text())
    summary.settings["api_key_seen"] = "sk-proj-abcdefghijklmnop1234"
    path.write_text(summary.model_dump_json())
    html = render_report(hostile_dir)
    assert "abcdefghijklmnop1234" not in html
    assert "api_key_seen" in html


def test_cli_writes_to_the_given_file(hostile_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "elsewhere" / "page.html"
    assert cli_main(["report", str(hostile_dir), "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert str(target) in capsys.readouterr().out
    assert not list(target.parent.glob(".*.tmp"))
    assert cli_main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_100k_rows_size_and_time(tmp_path: Path) -> None:
    """Prints the figures; asserts the page is a bounded sample that says so, charts over all rows."""
    out = tmp_path / "big"
    t0 = time.perf_counter()
    scaled_output_dir(out, 100_000)
    t1 = time.perf_counter()
    path = write_report(out)
    t2 = time.perf_counter()
    size = path.stat().st_size
    html = path.read_text(encoding="utf-8")
    payload = _payload(html)
    scores_size = (out / "scores.jsonl").stat().st_size
    print(f"\n100k rows: scores.jsonl {scores_size / 1e6:.1f} MB written in {t1 - t0:.1f} s; "
          f"report.html {size / 1e6:.1f} MB rendered in {t2 - t1:.1f} s; "
          f"{len(payload['details']):,} rows with full text")  # type: ignore[arg-type]
    shown = payload["n"]
    assert isinstance(shown, int) and shown <= DEFAULT_SAMPLE.limit
    assert payload["total"] == 100_000 and len(payload["line"]) == shown  # type: ignore[arg-type]
    assert f"The table shows a sample of {shown:,} of 100,000 rows" in html
    assert size <= 5_000_000
    scores = _scores(out)
    # the lowest-confidence rows are all in the table, and so are corrections up to the cap
    lowest = sorted(scores, key=lambda s: (s.confidence, s.line))[:DEFAULT_SAMPLE.lowest]
    assert {s.line for s in lowest} <= set(payload["line"])  # type: ignore[arg-type]
    corrected = [s.line for s in scores if s.action == "correct"][:DEFAULT_SAMPLE.corrected]
    assert set(corrected) <= set(payload["line"])  # type: ignore[arg-type]
    # the charts count every row, not the sample
    data = load_output_dir(out)
    assert data.hist_confidence.total == 100_000 and data.sampled
    by_action = [sum(b[a] for b in data.hist_confidence.counts) for a in range(3)]
    assert by_action == [sum(s.action == name for s in scores) for name in ("keep", "correct", "drop")]
    assert all(data.signal_histogram(name).total == 100_000 for name in data.signals)
    assert sum(data.reason_counts.values()) == 100_000


def test_small_run_embeds_every_row(hostile_dir: Path) -> None:
    small = Sample(lowest=1, random=1, corrected=1)
    data = load_output_dir(hostile_dir, sample=small)
    assert data.sampled and data.n_rows <= 3 < data.total_rows
    full = load_output_dir(hostile_dir)
    assert not full.sampled and full.n_rows == full.total_rows == len(_scores(hostile_dir))
    assert 'id="sample-note"' not in render_report(hostile_dir)
    assert 'id="sample-note"' in render_report(hostile_dir, sample=small)


def test_unused_model_answer_is_embedded_for_dropped_rows(hostile_dir: Path) -> None:
    scores = _scores(hostile_dir)
    payload = _payload(render_report(hostile_dir))
    details: dict[str, dict[str, object]] = payload["details"]  # type: ignore[assignment]
    i = next(k for k, s in enumerate(scores) if s.action == "drop")
    d = details[str(i)]
    ops = [tuple(op) for op in d["d"]]  # type: ignore[attr-defined]
    assert d["k"] == 1
    assert original_of(ops) == scores[i].response  # type: ignore[arg-type]
    assert corrected_of(ops) == scores[i].details["candidate"]  # type: ignore[arg-type]
    # Scalars from details come along; lists (samples) and dicts (weights) do not.
    facts = d["f"]
    assert isinstance(facts, dict) and "candidate_confidence" in facts
    assert "samples" not in facts and "weights" not in facts and "candidate" not in facts


def test_demonstration_lines_are_listed_among_a_rows_facts() -> None:
    facts = _scalar_details({"demonstrations": [3, 7, 12, 15], "demonstration_sets": [[3, 7], [12, 15]],
                             "samples": ["a", "b"], "pmi_by_set": [0.5, 1.0], "candidates": ["x", "y"]})
    assert facts == {"demonstrations": "3, 7, 12, 15", "demonstration_sets": "3, 7 | 12, 15"}
