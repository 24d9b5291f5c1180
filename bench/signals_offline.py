"""The no-call signals (`focused_agreement`, `copy`) measured from recorded runs, without the model.

    python bench/quality.py --out-dir /tmp/q --lenient -1        # once: scores.jsonl per set
    python bench/signals_offline.py --out-dir /tmp/q              # seconds: recomputed from them

Recomputes each signal from the per-row details in scores.jsonl (response, prompt, the model's
answers y′ and their confidence), then prints AUROC alone and by corruption kind, next to a
length-only baseline (shorter scores lower) and to the pool with the signal added or swapped in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.quality import ROOT, SETS, auroc
from clearapi.clear.combine import combine
from clearapi.clear.signals import CONSISTENCY_ALPHA, answer_agreement, copy_ratio, focused_agreement
from clearapi.clear.similarity import exact_match

LONG = {"longctx": ROOT / "examples" / "longctx" / "qa.jsonl",
        "longctx-heldout": ROOT / "examples" / "longctx" / "heldout" / "qa.jsonl"}


def _rows(out: Path, data: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    labels = {r["line"]: r for r in map(json.loads, (data.parent / "labels.jsonl").read_text().splitlines())}
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines() if x.strip()]
    return [(s, labels[s["line"]]) for s in scores]


def _derive(s: dict[str, Any]) -> dict[str, float | None]:
    d = s["details"]
    cands = d.get("candidates") or ([d["candidate"]] if d.get("candidate") else [])
    conf = d.get("candidate_confidence") or 0.0
    fa = [answer_agreement(focused_agreement(s["response"], c, s["prompt"]), conf) for c in cands]
    cr = copy_ratio(s["response"], s["prompt"])
    out: dict[str, float | None] = {
        "length_only": -float(len(s["response"])), "copy": None if cr is None else 1.0 - cr,
        # as recorded by runs that still had the column (each y′ with its own confidence); recomputed
        # otherwise (newer runs' answer_agreement is this signal already)
        "focused_agreement": s["signals"].get("focused_agreement", sum(fa) / len(fa) if fa else None),
        "answer_agreement": s["signals"].get("answer_agreement"), "pool_today": s["confidence"]}
    out["focused_consistency"] = _focused_consistency(s["response"], cands, d.get("samples") or [], s["prompt"])
    sig, w = dict(s["signals"]), dict(d["weights"])
    swapped = {**sig, "answer_agreement": out["focused_agreement"]}
    out["pool_focused_for_aa"] = combine(swapped, w)
    both = {**swapped, "consistency": out["focused_consistency"]}
    out["pool_focused_for_aa_and_consistency"] = combine(both, w)
    out["pool_plus_focused"] = combine({**sig, "fa": out["focused_agreement"]}, {**w, "fa": 0.4})
    out["pool_plus_copy_0.2"] = combine({**sig, "c": out["copy"]}, {**w, "c": 0.2})
    out["pool_focused_for_aa_plus_copy_0.1"] = combine({**swapped, "c": out["copy"]}, {**w, "c": 0.1})
    return out


def _focused_consistency(response: str, best: list[str], samples: list[str], prompt: str) -> float | None:
    """`consistency_with` with `focused_agreement` in place of plain agreement."""
    def observed(answers: list[str]) -> float | None:
        if not answers:
            return None
        return sum(CONSISTENCY_ALPHA * focused_agreement(response, a, prompt)
                   + (1 - CONSISTENCY_ALPHA) * (1.0 if exact_match(response, a) else 0.0) for a in answers) / len(answers)

    parts = [x for x in (observed(best), observed(samples)) if x is not None]
    return sum(parts) / len(parts) if parts else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="bench/quality.py's --out-dir (one folder per set)")
    args = p.parse_args()
    for name, data in {**SETS, **LONG}.items():
        out = Path(args.out_dir) / name
        if not (out / "scores.jsonl").exists():
            continue
        rows = _rows(out, data)
        derived = [_derive(s) for s, _ in rows]
        kinds = sorted({lab.get("kind", "corrupted") for _, lab in rows if lab["corrupted"]})
        print(f"== {name}: {len(rows)} rows; AUROC overall, then by kind (that kind vs all clean rows)")
        print(f"  {'':34s} {'all':>5s} " + " ".join(f"{k[:10]:>10s}" for k in kinds))
        for key in derived[0]:
            vals = [d[key] for d in derived]
            cells = [auroc(vals, [not lab["corrupted"] for _, lab in rows])]
            for kind in kinds:
                idx = [i for i, (_, lab) in enumerate(rows) if not lab["corrupted"] or lab.get("kind") == kind]
                cells.append(auroc([vals[i] for i in idx], [not rows[i][1]["corrupted"] for i in idx]))
            print(f"  {key:34s} " + " ".join(f"{c:10.3f}" if c is not None else f"{'-':>10s}" for c in cells))


if __name__ == "__main__":
    main()
