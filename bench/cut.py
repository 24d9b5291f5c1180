"""The default cut on labelled sets, from scores already computed: precision, recall, and the
calibration's estimated clean-drop rate against the actual one.

    python bench/cut.py OUT/scores.jsonl:examples/longctx/labels.jsonl [more SCORES:LABELS ...]

Each SCORES is the ``scores.jsonl`` of a curate run (``bench/quality.py --out-dir`` keeps them);
LABELS the set's ``labels.jsonl`` (rows are matched by line, so a run over the first N rows of a
set works). No model call: the cut is re-applied to the stored confidences, so a change to the
rule is measured in seconds. Prints one line per set and cut rule: the calibrated default, the
old absolute 0.5 and the paper's median.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clearapi.clear.calibrate import calibrate


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def evaluate(scores_path: Path, labels_path: Path) -> list[dict[str, Any]]:
    labels = {lab["line"]: lab for lab in _jsonl(labels_path)}
    rows = [(s["confidence"], not labels[s["line"]]["corrupted"]) for s in _jsonl(scores_path)
            if s.get("confidence") is not None and s["line"] in labels]
    conf = [c for c, _ in rows]
    cal = calibrate(conf)
    median = sorted(conf)[len(conf) // 2]
    out = []
    for name, cut in [("calibrated", cal.threshold), ("absolute 0.5", 0.5), ("median", median)]:
        tp = sum(1 for c, clean in rows if c < cut and not clean)
        fp = sum(1 for c, clean in rows if c < cut and clean)
        n_bad = sum(1 for _, clean in rows if not clean)
        n_clean = len(rows) - n_bad
        out.append({"rule": name, "cut": cut, "rows": len(rows), "corrupted": n_bad, "flagged": tp + fp,
                    "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / n_bad if n_bad else None,
                    "clean_dropped": fp / n_clean if n_clean else None,
                    "est_clean_dropped": cal.clean_dropped(cut),
                    "corrupted_kept": (n_bad - tp) / n_bad if n_bad else None,
                    "est_corrupted_kept": cal.corrupted_kept(cut), "fit": cal.rule})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", nargs="+", metavar="SCORES:LABELS")
    args = p.parse_args()
    print(f"{'set':28s} {'rule':13s} {'cut':>6s} {'rows':>4s} {'bad':>4s} {'flag':>4s} {'prec':>6s} {'recall':>6s} "
          f"{'clean drop (est)':>17s} {'bad kept (est)':>15s}  fit")
    for pair in args.pairs:
        scores, labels = (Path(x) for x in pair.split(":", 1))
        for r in evaluate(scores, labels):
            print(f"{scores.parent.name:28s} {r['rule']:13s} {r['cut']:6.3f} {r['rows']:4d} {r['corrupted']:4d} "
                  f"{r['flagged']:4d} {_fmt(r['precision']):>6s} {_fmt(r['recall']):>6s} "
                  f"{_fmt(r['clean_dropped'])} ({_fmt(r['est_clean_dropped'])}) "
                  f"{_fmt(r['corrupted_kept'])} ({_fmt(r['est_corrupted_kept'])})  {r['fit']}")


if __name__ == "__main__":
    main()
