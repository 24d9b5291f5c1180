"""report.html in real headless Chromium (Debian's package) driven by playwright-core.

tests/browser/report_check.js opens the page from file:// with the flags this closed
network needs, acts like a user (sort, search, open a correction) and prints what the
page showed; these tests compare that with the run's own files. `scripts/browser_deps.sh`
(run by `.ci/run`) installs chromium and playwright-core; without them the tests skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import (
    HOSTILE_CORRECTION,
    HOSTILE_PROMPT,
    HOSTILE_RESPONSE,
    realistic_output_dir,
    scaled_output_dir,
)

from clearapi import curate
from clearapi.records import Score, Summary
from clearapi.report import write_report
from clearapi_testing.emulator import EmulatorThread

pytestmark = pytest.mark.browser

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CLEARAPI_CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install chromium, or run scripts/browser_deps.sh)"
    if NODE is None:
        return "node not found"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed (cd tests/browser && npm install, or scripts/browser_deps.sh)"
    return None


if (_why := _missing()) is not None:
    pytestmark = [pytest.mark.browser, pytest.mark.skip(reason=_why)]


def run_check(tmp_path: Path, **config: Any) -> dict[str, Any]:
    cfg = tmp_path / f"check-{len(list(tmp_path.glob('check-*.json')))}.json"
    cfg.write_text(json.dumps(config))
    assert NODE is not None
    proc = subprocess.run([NODE, str(BROWSER_DIR / "report_check.js"), str(cfg)], cwd=BROWSER_DIR,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "CLEARAPI_CHROMIUM": CHROMIUM})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _scores(out: Path) -> list[Score]:
    return [Score.model_validate_json(x) for x in (out / "scores.jsonl").read_text().splitlines() if x]


def _sort_key(s: Score, descending: bool) -> tuple[int, float, int]:
    # The page carries confidences to 4 decimals; equal ones keep input order.
    c = None if s.confidence is None else round(s.confidence, 4)
    return (c is None, 0.0 if c is None else (-c if descending else c), s.line)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realistic curate output folder, with rows that try to run script."""
    out = tmp_path_factory.mktemp("report") / "run"
    realistic_output_dir(out, rows=80, hostile=True)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def observed(example_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_check(tmp_path_factory.mktemp("check"), html=str(example_run / "report.html"),
                     search="SPIDER", hostile="hostile")


def test_page_loads_offline_without_errors(observed: dict[str, Any], example_run: Path) -> None:
    assert observed["pageErrors"] == []
    assert observed["consoleErrors"] == []
    assert observed["dialogs"] == []
    # The only request is the file itself: no CDN, no fonts, nothing.
    assert observed["requests"] == [(example_run / "report.html").resolve().as_uri()]


def test_headline_numbers_match_summary(observed: dict[str, Any], example_run: Path) -> None:
    summary = Summary.model_validate_json((example_run / "summary.json").read_text())
    stats = {s["id"]: s for s in observed["stats"]}
    c, e = summary.counts, summary.engine
    for key, want in {"rows": c.rows, "kept": c.kept, "corrected": c.corrected, "dropped": c.dropped,
                      "rejected": c.rejected, "requests": e.requests, "cache_hits": e.cache_hits,
                      "tokens": e.prompt_tokens + e.completion_tokens}.items():
        assert stats[f"stat-{key}"]["value"] == want, key
        assert stats[f"stat-{key}"]["text"] == f"{want:,}", key
    assert stats["stat-wall"]["value"] == pytest.approx(e.wall_seconds)


def test_histogram_with_threshold(observed: dict[str, Any], example_run: Path) -> None:
    summary = Summary.model_validate_json((example_run / "summary.json").read_text())
    hist = observed["histogram"]
    assert hist is not None and hist["rendered"]
    assert hist["bars"] > 0
    assert {"bar a0", "bar a1", "bar a2"} <= set(hist["barClasses"])
    assert hist["threshold"] == pytest.approx(summary.threshold)
    # Plot area runs from x=44 to x=630 in the 640-wide chart.
    assert hist["thresholdX"] == pytest.approx(44 + summary.threshold * 586, abs=0.05)
    assert hist["signalCharts"] == len(summary.signals)


def test_sorting_by_confidence(observed: dict[str, Any], example_run: Path) -> None:
    scores = _scores(example_run)
    page = observed["initial"]["rows"]
    assert page == min(50, len(scores))
    for name, descending in (("sortAsc", False), ("sortDesc", True)):
        got = observed[name]
        assert got["ariaSort"] == ("descending" if descending else "ascending")
        want = sorted(scores, key=lambda s: _sort_key(s, descending))[:page]
        assert got["lines"] == [s.line for s in want]
        assert got["values"] == [f"{round(s.confidence or 0, 4):.3f}" for s in want]


def test_search_filters_rows(observed: dict[str, Any], example_run: Path) -> None:
    want = [s.line for s in _scores(example_run)
            if any("spider" in (t or "").lower()
                   for t in (s.id, s.prompt, s.response, s.reason, s.correction, s.details.get("candidate")))]
    assert want
    assert observed["search"]["lines"] == want
    assert observed["search"]["count"].startswith(f"{len(want)} of ")


def test_clicking_a_histogram_bar_filters_to_its_bin(observed: dict[str, Any], example_run: Path) -> None:
    scores = _scores(example_run)
    got = observed["binClick"]
    assert (got["lo"], got["hi"]) == (0.1, 0.15)
    want = [s.line for s in scores if s.confidence is not None and min(19, int(round(s.confidence, 4) * 20)) == 2]
    assert want and got["lines"] == want[:50]
    assert got["chip"].startswith("confidence 0.10–0.15")
    assert observed["binCleared"] == f"{len(scores)}"


def test_clicking_a_row_shows_side_by_side_diff(observed: dict[str, Any], example_run: Path) -> None:
    scores = {s.line: s for s in _scores(example_run)}
    assert observed["correctedLines"] == [line for line, s in scores.items() if s.action == "correct"]
    detail = observed["detail"]
    row = scores[detail["line"]]
    assert detail["visible"] and detail["panesSideBySide"]
    assert f"line {row.line}" in detail["title"]
    assert detail["prompt"] == row.prompt
    assert detail["original"] == row.response
    assert detail["correction"] == row.correction
    assert detail["deleted"] and detail["inserted"]
    assert row.response is not None and row.correction is not None
    for part in detail["deleted"]:
        assert part in row.response
    for part in detail["inserted"]:
        assert part in row.correction
    assert detail["hash"] == f"#line={row.line}"
    assert observed["detailClosed"] is True


def test_dropped_row_shows_the_unused_model_answer(observed: dict[str, Any], example_run: Path) -> None:
    scores = {s.line: s for s in _scores(example_run)}
    d = observed["droppedDetail"]
    row = scores[d["line"]]
    assert row.action == "drop" and row.correction is None
    assert d["original"] == row.response
    assert d["correction"] == row.details["candidate"]
    assert d["correctionTitle"].startswith("Model's answer, not applied")
    assert ["candidate confidence", f"{row.details['candidate_confidence']:.4f}"] in d["facts"]


def test_injected_script_does_not_run(observed: dict[str, Any]) -> None:
    assert observed["pwned"] is None
    assert observed["dialogs"] == []
    assert observed["injectedElements"] == {"img": 0, "pwnId": 0, "scripts": 2, "bold": 0}
    # The hostile row is shown, as text.
    assert observed["hostileSearch"]["count"].startswith("1 of ")
    cells = observed["hostileCells"]
    assert '<b id="pwn">hostile</b>' in cells and HOSTILE_PROMPT in cells
    d = observed["hostileDetail"]
    assert (d["prompt"], d["original"], d["correction"]) == (HOSTILE_PROMPT, HOSTILE_RESPONSE, HOSTILE_CORRECTION)
    assert '<script>window.__pwned="reject-raw"</script>' in observed["rejectCells"]


def test_the_injection_check_can_fail(tmp_path: Path) -> None:
    """The same strings pasted into a page unescaped do run in this browser."""
    page = tmp_path / "unsafe.html"
    page.write_text(f"<!DOCTYPE html><html><body>{HOSTILE_PROMPT}</body></html>")
    assert run_check(tmp_path, html=str(page), control=True)["pwned"] in {"prompt", "img"}


@pytest.mark.slow
def test_100k_rows_stay_usable(tmp_path: Path) -> None:
    """Prints load/sort/search times; asserts that a 100k-row run's page is a sample, says so,
    and that paging, sorting and search work on it."""
    out = tmp_path / "big"
    scaled_output_dir(out, 100_000)
    path = write_report(out)
    html = path.read_text(encoding="utf-8")
    shown = int(html.split('data-shown="', 1)[1].split('"', 1)[0])
    assert shown <= 4_000 and "of 100,000 rows" in html and path.stat().st_size <= 5_000_000
    got = run_check(tmp_path, html=str(path), search="question 99999", bigPages=True)
    print(f"\n100k rows, {path.stat().st_size / 1e6:.1f} MB: load {got['loadMs']} ms, next page "
          f"{got['nextPageMs']} ms, search {got['searchMs']} ms, sort {got['sortMs']} ms")
    assert got["pageErrors"] == []
    assert got["initial"] == {"rows": 50, "count": f"{shown:,} (sample of 100,000)",
                              "headers": ["line", "id", "conf", "sig0", "sig1", "sig2", "act", "reason", "prompt"]}
    assert got["pageInfo"].startswith(f"rows 51–100 of {shown:,} · page 2 of ")
    asc = [float(v) for v in got["sortAsc"]["values"]]
    assert asc == sorted(asc) and len(asc) == 50


EXAMPLES = Path(__file__).parent.parent / "examples" / "qa.jsonl"


@pytest.fixture(scope="module")
def curate_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The method's own output: `curate` on a slice of the example set plus a hostile row and a
    broken line, over the real OpenAI SDK to the loopback emulator (curate writes report.html)."""
    base = tmp_path_factory.mktemp("curate")
    data = base / "qa.jsonl"
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:12]
    hostile = {"id": '<b id="pwn">hostile</b>',
               "messages": [{"role": "user", "content": HOSTILE_PROMPT},
                            {"role": "assistant", "content": HOSTILE_RESPONSE}]}
    lines += [json.dumps(hostile), '{"broken": <script>window.__pwned="reject"</script>']
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = base / "run"
    with EmulatorThread() as emu:
        asyncio.run(curate(data, out, provider="openai", base_url=emu.base_url + "/v1",
                                    api_key="sk-test-emulator-key", cache=False, progress=False))
    assert (out / "report.html").exists()
    return out


def test_report_of_a_real_curate_run(curate_run: Path, tmp_path: Path) -> None:
    summary = Summary.model_validate_json((curate_run / "summary.json").read_text())
    scores = _scores(curate_run)
    got = run_check(tmp_path, html=str(curate_run / "report.html"), search="hostile", hostile="hostile")
    assert got["pageErrors"] == [] and got["dialogs"] == [] and got["pwned"] is None
    assert got["injectedElements"] == {"img": 0, "pwnId": 0, "scripts": 2, "bold": 0}
    stats = {s["id"]: s["value"] for s in got["stats"]}
    c = summary.counts
    assert [stats[f"stat-{k}"] for k in ("rows", "kept", "corrected", "dropped", "rejected")] == \
        [c.rows, c.kept, c.corrected, c.dropped, c.rejected]
    assert stats["stat-requests"] == summary.engine.requests
    assert got["histogram"]["threshold"] == pytest.approx(summary.threshold)
    assert got["histogram"]["signalCharts"] == len({k for s in scores for k in s.signals} | set(summary.signals))
    assert got["sortAsc"]["lines"] == [s.line for s in sorted(scores, key=lambda s: _sort_key(s, False))][:50]
    assert HOSTILE_PROMPT in got["hostileCells"]
    assert got["hostileDetail"]["original"] == HOSTILE_RESPONSE
    assert any('window.__pwned="reject"' in cell for cell in got["rejectCells"])
