"""report.html: what a curate run did, as one self-contained page.

`write_report(out_dir)` reads the run's summary.json, scores.jsonl and rejects.jsonl and
writes report.html next to them (atomically: a reader never sees half a page). The page
needs no server and no network; its style and script ship as package data under
``assets/`` and are inlined at render time.
"""

from __future__ import annotations

from pathlib import Path

from clearapi.report.load import DEFAULT_SAMPLE, DEFAULT_TEXT_BUDGET, Sample, load_output_dir
from clearapi.report.render import render_html
from clearapi.writers import write_bytes_atomic

__all__ = ["Sample", "render_report", "write_report"]


def render_report(out_dir: Path | str, *, text_budget: int = DEFAULT_TEXT_BUDGET,
                  sample: Sample = DEFAULT_SAMPLE) -> str:
    """The report page for the curate output folder `out_dir`, as a string."""
    return render_html(load_output_dir(Path(out_dir), text_budget=text_budget, sample=sample))


def write_report(out_dir: Path, *, path: Path | None = None,
                 text_budget: int = DEFAULT_TEXT_BUDGET, sample: Sample = DEFAULT_SAMPLE) -> Path:
    """Write the report for `out_dir` to `path` (default ``out_dir/report.html``) and return it.

    `text_budget` bounds, in characters, the full texts embedded for the detail view;
    rows beyond it show a preview and point at scores.jsonl. `sample` bounds the rows the
    table embeds once the run has more than ``sample.limit`` (the charts count every row).
    """
    out_dir = Path(out_dir)
    target = Path(path) if path is not None else out_dir / "report.html"
    html = render_report(out_dir, text_budget=text_budget, sample=sample)
    write_bytes_atomic(target, html.encode("utf-8"))
    return target
