"""Assemble report.html: one file, no network, safe with hostile dataset text.

Safety comes in three layers. Text placed in markup here goes through `html.escape`.
Row data travels as JSON inside ``<script type="application/json">`` with every ``<``,
``>`` and ``&`` written as a ``\\u00XX`` escape, so no value can close the tag or open a
comment; the page's script reads it with `JSON.parse` and writes it with `textContent`
only. And a Content-Security-Policy allows exactly the page's own script and style (by
hash) and no network at all, so even a mistake in the first two cannot run or fetch
anything.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from html import escape
from importlib.resources import files
from typing import Any

import orjson

from clearapi._version import __version__
from clearapi.errors import redact
from clearapi.records import RowCounts, RunStats
from clearapi.report.histogram import histogram_svg
from clearapi.report.load import ACTIONS, ReportData

__all__ = ["embed_json", "render_html"]


def _asset(name: str) -> str:
    return files("clearapi.report").joinpath("assets", name).read_text(encoding="utf-8")


def embed_json(obj: Any) -> str:
    """JSON that is inert inside a <script> element whatever strings it carries."""
    raw = orjson.dumps(obj)
    raw = raw.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")
    return raw.decode("utf-8")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def _int(n: int) -> str:
    return f"{n:,}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m" if hours else f"{minutes} m {sec:02d} s"


def _stat(key: str, label: str, shown: str, value: float | int | None, title: str = "") -> str:
    data = "" if value is None else f' data-value="{value}"'
    tip = f' title="{escape(title)}"' if title else ""
    return (f'<div class="stat" id="stat-{key}"{data}{tip}><span class="v">{escape(shown)}</span>'
            f'<span class="k">{escape(label)}</span></div>')


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% of rows" if whole else ""


def _headline(data: ReportData) -> str:
    c: RowCounts = data.counts
    e: RunStats = data.summary.engine if data.summary else RunStats()
    tokens = e.prompt_tokens + e.completion_tokens
    if data.summary is None:
        cost_text = "n/a"
    elif not e.cost_known:
        cost_text = f"≥ ${e.cost_usd:.4f}" if e.cost_usd else "unknown"
    else:
        cost_text = f"${e.cost_usd:.4f}"
    row_stats = [
        _stat("rows", "rows in", _int(c.rows), c.rows),
        _stat("kept", "kept", _int(c.kept), c.kept, _pct(c.kept, c.rows)),
        _stat("corrected", "corrected", _int(c.corrected), c.corrected, _pct(c.corrected, c.rows)),
        _stat("dropped", "dropped", _int(c.dropped), c.dropped, _pct(c.dropped, c.rows)),
        _stat("rejected", "rejected", _int(c.rejected), c.rejected, _pct(c.rejected, c.rows)),
        _stat("failed", "failed", _int(c.failed), c.failed,
              (_pct(c.failed, c.rows) + "; the API did not answer: re-run to retry").lstrip("; ")),
    ]
    run_stats = [
        _stat("requests", "requests", _int(e.requests), e.requests,
              f"{e.logical_calls:,} logical calls; retries included"),
        _stat("cache_hits", "cache hits", _int(e.cache_hits), e.cache_hits),
        _stat("tokens", "tokens", _int(tokens), tokens,
              f"{e.prompt_tokens:,} prompt + {e.completion_tokens:,} completion"),
        _stat("cost", "cost (USD)", cost_text, round(e.cost_usd, 6),
              "" if e.cost_known else "no price known for at least one model: partial or unknown"),
        _stat("wall", "wall time", _duration(e.wall_seconds), round(e.wall_seconds, 3)),
    ]
    adds = "" if c.adds_up else (
        '<p class="banner warn">The counts do not add up: rows ≠ kept + corrected + dropped + rejected + failed.</p>')
    return (f'<section id="headline" aria-label="Headline numbers"><div class="stats rows">{"".join(row_stats)}</div>'
            f'<div class="stats run">{"".join(run_stats)}</div>{adds}</section>')


def _meta_line(data: ReportData) -> str:
    s = data.summary
    if s is None:
        return f'<p class="sub">{escape(str(data.out_dir))}</p>'
    bits = [
        f'<span id="meta-input" title="input file">{escape(redact(s.input))}</span>',
        f'<span id="meta-model">{escape(s.provider)} · {escape(s.model)}</span>',
        f'<span id="meta-threshold">threshold {"—" if s.threshold is None else f"{s.threshold:.4g}"}</span>',
        f"<span>{escape(s.started_at)} → {escape(s.finished_at or 'unfinished')}</span>",
    ]
    return f'<p class="sub">{" · ".join(bits)}</p>'


def _banners(data: ReportData) -> str:
    out: list[str] = []
    s = data.summary
    if s is not None and not s.completed:
        reason = f": {s.stopped_reason}" if s.stopped_reason else ""
        out.append(f'<p class="banner warn" id="stopped">This run stopped early{escape(redact(reason))}. '
                   "Rows it did not reach are not in this report; re-running resumes from the cache.</p>")
    for warning in s.warnings if s is not None else []:
        out.append(f'<p class="banner warn drop-warning">{escape(warning)}</p>')
    if s is not None and s.calibration:
        out.append(f'<p class="banner note" id="calibration">{escape(_calibration_text(s.calibration))}</p>')
    for note in data.notes:
        out.append(f'<p class="banner note">{escape(note)}</p>')
    if data.bad_lines_total:
        items = "".join(f"<li>{escape(f)}:{n}: {escape(msg)}</li>" for f, n, msg in data.bad_lines)
        more = data.bad_lines_total - len(data.bad_lines)
        tail = f"<li>… and {more:,} more</li>" if more > 0 else ""
        out.append(f'<div class="banner warn" id="bad-lines"><p>{data.bad_lines_total:,} line(s) of the output '
                   f"files could not be read and are not shown:</p><ul>{items}{tail}</ul></div>")
    return "".join(out)


def _share(x: object) -> str:
    return f"{x:.0%}" if isinstance(x, int | float) else "unknown"


def _calibration_text(cal: dict[str, Any]) -> str:
    """What the cut costs, in the calibration's own words (summary.json `calibration`)."""
    return (f"Cut: {cal.get('note', '')}. At the cut applied, an estimated {_share(cal.get('estimated_clean_dropped'))} "
            f"of clean rows are dropped and {_share(cal.get('estimated_corrupted_kept'))} of corrupted rows kept "
            f"(estimates from the fit, not measurements).")


def _legend() -> str:
    names = [*ACTIONS, "no action"]
    return '<p class="legend">' + "".join(
        f'<span><i class="sw a{i}"></i>{escape(n)}</span>' for i, n in enumerate(names)) + \
        '<span><i class="sw thr"></i>filter threshold</span></p>'


def _signal_note(note: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in note.items() if isinstance(v, str | int | float | bool))


def _reason_summary(data: ReportData, limit: int = 8) -> str:
    """The most common reasons, numbers masked, so "why were rows dropped?" has a one-glance answer
    (counted over every row, not only the table's)."""
    counts = data.reason_counts
    if not counts:
        return ""
    rows = "".join(
        f'<tr><td><span class="pill a{a if a >= 0 else 3}">{escape(ACTIONS[a] if a >= 0 else "no action")}</span></td>'
        f'<td class="num">{n:,}</td><td>{escape(text)}</td></tr>'
        for (a, text), n in counts.most_common(limit))
    more = len(counts) - limit
    tail = f'<p class="hint">… and {more:,} more kinds of reason.</p>' if more > 0 else ""
    return (f'<h3>Reasons <span class="count">(numbers shown as #)</span></h3><table class="reasons" id="reasons-table">'
            f"<thead><tr><th>action</th><th class=\"num\">rows</th><th>reason</th></tr></thead><tbody>{rows}</tbody>"
            f"</table>{tail}")


def _charts(data: ReportData) -> str:
    threshold = data.summary.threshold if data.summary else None
    main = data.hist_confidence
    svg = histogram_svg(main, title="Confidence by action", threshold=threshold,
                        element_id="confidence-histogram", clickable=True)
    missing = f" {main.missing:,} row(s) without a confidence are not drawn." if main.missing else ""
    thr = ("" if threshold is None else
           f" Rows left of the dashed line (confidence below {threshold:.4g}) were dropped unless corrected.")
    parts = [
        '<section id="charts"><h2>Confidence</h2>', _legend(), '<div class="charts-grid"><div>',
        f'<div class="chart main">{svg}</div>',
        f'<p class="hint">Click a bar to show its rows in the table{" (its sampled rows)" if data.sampled else ""}.'
        f'{escape(thr)}{escape(missing)}</p>',
        _reason_summary(data), "</div>",
    ]
    if data.signals:
        notes = data.summary.signals if data.summary else {}
        parts.append('<div><h3>Signals</h3><div class="small-multiples">')
        for k, name in enumerate(data.signals):
            hist = data.signal_histogram(name)
            scored = hist.total
            mean = f"mean {data.signal_sums[name] / scored:.3f}" if scored else "no values"
            na = f", {hist.missing:,} n/a" if hist.missing else ""
            note = _signal_note(notes.get(name, {}))
            svg = histogram_svg(hist, title=f"{name} by action", width=320, height=150,
                                element_id=f"signal-histogram-{k}")
            parts.append(f'<figure class="chart small">{svg}<figcaption><b>{escape(name)}</b> · '
                         f'{escape(mean + na)}{"<br>" + escape(note) if note else ""}</figcaption></figure>')
        parts.append("</div></div>")
    parts.append("</div></section>")
    return "".join(parts)


def _rows_section(data: ReportData) -> str:
    embedded = len(data.details)
    budget_note = ""
    if data.detail_candidates > embedded:
        budget_note = (f" Full texts are embedded for {embedded:,} of the {data.detail_candidates:,} rows "
                       "with long texts or corrections (corrections and drops first); the others show "
                       f"their first {data.preview_chars} characters and the rest is in scores.jsonl.")
    sample = ""
    if data.sampled:
        sample = (f'<p class="banner note" id="sample-note" data-shown="{data.n_rows}" data-total="{data.total_rows}">'
                  f"The table shows a sample of {data.n_rows:,} of {data.total_rows:,} rows: the "
                  f"{data.sample.lowest:,} with the lowest confidence, every corrected row (up to "
                  f"{data.sample.corrected:,}) and a random sample (seed {data.sample.seed}); the counts and "
                  "charts above count all rows, and scores.jsonl holds every row.</p>")
    return f"""<section id="rows"><h2>Rows <span class="count" id="row-count"></span></h2>{sample}
<div class="controls">
<input type="search" id="search" placeholder="Search id, prompt, response, reason…" aria-label="Search rows">
<select id="action-filter" aria-label="Action"><option value="">all actions</option>
<option value="0">keep</option><option value="1">correct</option><option value="2">drop</option>
<option value="-1">no action</option></select>
<button type="button" id="range-chip" class="chip" hidden></button>
<label class="pagesize">rows per page <select id="page-size"><option>25</option><option selected>50</option>
<option>100</option><option>500</option></select></label>
</div>
<p class="hint">Click a column to sort, a row to compare its response and correction.
Search covers ids, reasons and the first {data.preview_chars} characters of each text (all of it where
embedded).{escape(budget_note)}</p>
<div class="table-wrap"><table id="rows-table"><thead><tr id="rows-head"></tr></thead>
<tbody id="rows-body"></tbody></table></div>
<nav class="pager" aria-label="Pages"><button type="button" id="prev">‹ prev</button>
<span id="page-info"></span><button type="button" id="next">next ›</button></nav>
<noscript><p class="banner note">The row table needs JavaScript; scores.jsonl holds the same rows.</p></noscript>
</section>
<section id="detail" hidden aria-live="polite"><div class="detail-head"><h2 id="detail-title"></h2>
<button type="button" id="detail-close" aria-label="Close">close ✕</button></div>
<dl class="facts" id="detail-facts"></dl>
<div class="panes"><div class="pane"><h3>Prompt</h3><pre id="detail-prompt"></pre></div>
<div class="pane"><h3>Original response</h3><pre id="detail-original"></pre></div>
<div class="pane"><h3 id="detail-correction-title">Correction</h3><pre id="detail-correction"></pre></div></div>
<p class="hint" id="detail-note"></p></section>"""


def _listing(key: str, title: str, total: int, shown: int, file: str, empty: str, intro: str,
             head: tuple[str, ...], rows: str) -> str:
    """A section listing rows that are in no other output: rejected lines and failed rows."""
    opening = f'<section id="{key}"><h2>{title} <span class="count">{total:,}</span></h2>'
    if not total:
        return f'{opening}<p class="hint">{empty}</p></section>'
    more = total - shown
    tail = f'<p class="hint">… and {more:,} more in {file}.</p>' if more > 0 else ""
    cells = "".join(f"<th>{h}</th>" for h in head)
    return (f'{opening}{intro}<div class="table-wrap"><table id="{key}-table"><thead><tr>{cells}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>{tail}</section>")


def _rejects(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td class=\"num\">{r.line}</td><td>{escape(r.file)}</td><td>{escape(r.field or '')}</td>"
        f"<td>{escape(r.error)}</td><td class=\"raw\">{escape(r.raw or '')}</td></tr>"
        for r in data.rejects)
    return _listing("rejects", "Rejected lines", data.rejects_total, len(data.rejects), "rejects.jsonl",
                    "Every input line could be read.", "",
                    ("line", "file", "field", "reason", "line as read"), rows)


def _failures(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td class=\"num\">{r.line}</td><td>{escape(r.id or '')}</td>"
        f"<td class=\"num\">{'' if r.attempts is None else r.attempts}</td><td>{escape(redact(r.error))}</td></tr>"
        for r in data.failures)
    intro = ('<p class="hint">The input was fine; the API did not answer these rows after every retry, so they '
             "are in no other output. Re-run the same command to retry them (the rest comes from the cache).</p>")
    return _listing("failed", "Failed rows", data.failures_total, len(data.failures), "failed.jsonl",
                    "The API answered every row.", intro, ("line", "id", "attempts", "error"), rows)


def _kv_table(pairs: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv" id="{table_id}"><tbody>{body}</tbody></table>'


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return redact(text)


def _run_section(data: ReportData) -> str:
    s = data.summary
    if s is None:
        return ""
    e = s.engine
    settings = [(k, _show(v)) for k, v in sorted(s.settings.items())]
    engine = [
        ("logical calls", f"{e.logical_calls:,}"), ("requests sent", f"{e.requests:,}"),
        ("cache hits", f"{e.cache_hits:,}"),
        ("retries", ", ".join(f"{k} {v}" for k, v in sorted(e.retries.items())) or "0"),
        ("429 answers", f"{e.rate_limited:,}"), ("failed calls", f"{e.failures:,}"),
        ("prompt tokens", f"{e.prompt_tokens:,}"), ("completion tokens", f"{e.completion_tokens:,}"),
        ("learned limits", f"rpm {e.learned_rpm or '—'}, tpm {e.learned_tpm or '—'}"),
    ]
    if e.batches:
        engine.append(("batch jobs", f"{e.batches:,} ({e.batch_requests:,} requests)"))
    run = [("clearapi", s.clearapi_version), ("input", redact(s.input)), ("output", redact(s.output_dir)),
           ("provider", s.provider), ("model", s.model), ("threshold", _show(s.threshold)),
           ("started", s.started_at), ("finished", s.finished_at or "—"),
           ("completed", "yes" if s.completed else f"no: {s.stopped_reason or 'stopped'}")]
    signals = [(name, _show(note)) for name, note in s.signals.items()]
    blocks = [f"<div><h3>Run</h3>{_kv_table(run, 'run-table')}</div>",
              f"<div><h3>Settings</h3>{_kv_table(settings, 'settings-table')}</div>",
              f"<div><h3>Engine</h3>{_kv_table(engine, 'engine-table')}</div>"]
    if signals:
        blocks.append(f"<div><h3>Signals</h3>{_kv_table(signals, 'signals-table')}</div>")
    return f'<section id="run"><h2>Run details</h2><div class="kv-grid">{"".join(blocks)}</div></section>'


def _payload(data: ReportData) -> dict[str, Any]:
    return {
        "n": data.n_rows,
        "total": data.total_rows,
        "signals": data.signals,
        "line": data.line,
        "id": data.ids,
        "conf": data.confidence,
        "sig": [data.signal_values[name] for name in data.signals],
        "act": data.action,
        "reason": data.reason,
        "reasons": data.reasons,
        "p": data.prompt_preview,
        "r": data.response_preview,
        "x": data.truncated,
        "details": {str(i): d for i, d in data.details.items()},
        "threshold": data.summary.threshold if data.summary else None,
        "actions": list(ACTIONS),
    }


def render_html(data: ReportData) -> str:
    css = _asset("report.css")
    js = _asset("report.js")
    csp = (f"default-src 'none'; script-src {_csp_hash(js)}; style-src {_csp_hash(css)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    title = "clearapi report"
    if data.summary is not None:
        title += " — " + redact(data.summary.input.replace("\\", "/").rsplit("/", 1)[-1])
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join([
        f'<header><h1>{escape(title)}</h1>{_meta_line(data)}</header>',
        _banners(data), _headline(data), _charts(data), _rows_section(data), _rejects(data), _failures(data),
        _run_section(data),
        f"<footer>Generated by clearapi {escape(__version__)} on {generated}. "
        "This file is self-contained: it makes no network requests.</footer>",
    ])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{css}</style></head>\n"
        f"<body>{body}\n"
        f'<script type="application/json" id="report-data">{embed_json(_payload(data))}</script>\n'
        f"<script>{js}</script></body></html>\n"
    )
