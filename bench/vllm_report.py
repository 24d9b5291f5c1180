"""The short report `bench/vllm_check.sh` prints after curating examples/ (also usable on any
output folder of examples/qa.jsonl): rows/s, AUROC of the confidence against the labels, and
which signals were present.

    python bench/vllm_report.py OUTDIR [LABELS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import auroc  # noqa: E402


def report(out: Path, labels_path: Path) -> list[str]:
    summary = json.loads((out / "summary.json").read_text())
    labels = {row["line"]: row for row in map(json.loads, labels_path.read_text().splitlines()) if row}
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines() if x.strip()]
    counts, engine = summary["counts"], summary["engine"]
    wall = engine["wall_seconds"] or 1e-9
    scored = [(s["confidence"], not labels[s["line"]]["corrupted"]) for s in scores if s["line"] in labels]
    area = auroc([c for c, _ in scored], [clean for _, clean in scored])
    present = sorted({name for s in scores for name, v in (s.get("signals") or {}).items() if v is not None})
    missing = sorted(set(summary["signals"]) - set(present))
    return [
        f"{summary['provider']} {summary['model']}: {counts['rows']} rows in {wall:.0f} s = {counts['rows'] / wall:.2f} rows/s "
        f"({engine['requests']} calls; {counts['failed']} failed, {counts['rejected']} rejected)",
        f"AUROC {area:.3f} (confidence vs examples/labels.jsonl, {len(scored)} rows)" if area is not None
        else "AUROC n/a (no scored rows of both classes)",
        "signals present: " + (", ".join(present) or "none") + ("; absent: " + ", ".join(missing) if missing else ""),
    ]


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    labels = Path(sys.argv[2]) if len(sys.argv) == 3 else ROOT / "examples" / "labels.jsonl"
    print("\n".join(report(Path(sys.argv[1]), labels)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
