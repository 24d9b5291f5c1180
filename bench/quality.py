"""How well CLEAR finds the corrupted rows of the three labelled example sets.

    python bench/quality.py                      # examples/qa.jsonl, heldout/ and factual/, local model
    python bench/quality.py --samples 2 --cache /tmp/q.sqlite --only main
    python bench/quality.py --data my/qa.jsonl   # your own labelled set (my/labels.jsonl beside it)

Prints, per dataset: AUROC of each signal alone and of the combined confidence for telling
corrupted from clean rows (1.0 = every corrupted row scores below every clean one, 0.5 =
chance), AUROC per corruption kind, precision/recall of the filter at the default threshold
(calibrated to the dataset, with its estimated and actual clean-drop rate) and at the paper's
median cut, what auto-correct did (corrupted rows fixed, corrupted rows replaced by another
wrong answer, clean rows damaged), and calls/tokens per row.

Runs go through the public `clearapi.curate` with the response cache, so a second run only
re-applies the combination and policy (seconds). Labels come from ``labels.jsonl`` next to
each dataset: ``{"line", "corrupted", "kind", "correct"}`` (``kind`` and ``correct`` optional).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from clearapi import curate
from clearapi.clear.signals import SIGNAL_NAMES
from clearapi.clear.similarity import agreement, tokens

ROOT = Path(__file__).resolve().parents[1]
SETS = {"main": ROOT / "examples" / "qa.jsonl", "heldout": ROOT / "examples" / "heldout" / "qa.jsonl",
        "factual": ROOT / "examples" / "factual" / "qa.jsonl"}


def auroc(scores: list[float | None], clean: list[bool]) -> float | None:
    """P(a clean row scores above a corrupted one), ties count half; None without both classes."""
    pos = [s for s, c in zip(scores, clean, strict=True) if c and s is not None]
    neg = [s for s, c in zip(scores, clean, strict=True) if not c and s is not None]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _label(row: dict[str, Any]) -> dict[str, Any]:
    """A label line with the optional fields filled: `kind` (else clean/corrupted) and `correct`
    (else the response is taken as right for clean rows and unknown for corrupted ones)."""
    out = dict(row)
    out.setdefault("kind", "corrupted" if row["corrupted"] else "clean")
    out.setdefault("correct", "")  # see _is_right
    return out


def matches_reference(text: str, references: list[str]) -> bool:
    """Every word of one reference answer (normalised: case, punctuation, articles, number words)
    occurs in `text`; a one-word reference ending in a full stop ("Rex.") must be the whole answer."""
    words = tokens(text)
    return any(words == tokens(ref) if ref.endswith(".") and len(tokens(ref)) == 1 else set(tokens(ref)) <= set(words)
               for ref in references)


def _is_right(text: str, score: dict[str, Any], lab: dict[str, Any]) -> bool:
    """Does `text` give the labelled right answer? By the label's `reference` answers where it has
    them, else by agreement with `correct` (a clean row's own response if unlabelled)."""
    if lab.get("reference"):
        return matches_reference(text, lab["reference"])
    right = lab["correct"] or (score["response"] if not lab["corrupted"] else "")
    return bool(right) and agreement(text, right) >= 0.8


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def report(name: str, out: Path, labels: dict[int, dict[str, Any]], threshold: float) -> dict[str, Any]:
    scores = _jsonl(out / "scores.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    rows = [(s, labels[s["line"]]) for s in scores]
    clean = [not lab["corrupted"] for _, lab in rows]
    n_bad = sum(not c for c in clean)
    print(f"\n== {name}: {len(rows)} rows, {n_bad} corrupted ({summary['model']}) ==")
    result: dict[str, Any] = {"rows": len(rows), "corrupted": n_bad}
    print("AUROC (corrupted vs clean), each signal alone and combined:")
    for sig in [*SIGNAL_NAMES, "combined"]:
        vals = [s["confidence"] if sig == "combined" else s["signals"].get(sig) for s, _ in rows]
        a = auroc(vals, clean)
        result[f"auroc_{sig}"] = a
        w = summary["signals"].get(sig, {}).get("weight", "") if sig != "combined" else ""
        print(f"  {sig:18s} {_fmt(a)}   weight {w}")
    kinds = sorted({lab["kind"] for _, lab in rows} - {"clean"})
    print("combined AUROC per corruption kind (that kind vs all clean rows):")
    for kind in kinds:
        sub = [(s, lab) for s, lab in rows if lab["kind"] in ("clean", kind)]
        a = auroc([s["confidence"] for s, _ in sub], [not lab["corrupted"] for _, lab in sub])
        print(f"  {kind:18s} {_fmt(a)}  (n={sum(1 for _, lab in sub if lab['kind'] == kind)})")
    for label, cut in [(f"default threshold {threshold:.2f}", threshold),
                       ("median cut (paper)", sorted(s["confidence"] for s, _ in rows)[len(rows) // 2])]:
        flagged = [s["confidence"] < cut for s, _ in rows]
        tp = sum(1 for f, c in zip(flagged, clean, strict=True) if f and not c)
        fp = sum(1 for f, c in zip(flagged, clean, strict=True) if f and c)
        prec = tp / (tp + fp) if tp + fp else None
        rec = tp / n_bad if n_bad else None
        print(f"filter at {label}: flags {tp + fp} rows, precision {_fmt(prec)}, recall {_fmt(rec)}")
        result[f"filter_{'default' if cut == threshold else 'median'}"] = {"precision": prec, "recall": rec,
                                                                             "flagged": tp + fp}
        if cut == threshold and summary.get("calibration"):
            cal = summary["calibration"]
            n_clean = len(rows) - n_bad
            print(f"  cut rule {cal['rule']}: clean rows dropped {fp}/{n_clean} = {_fmt(fp / n_clean if n_clean else None)}"
                  f" (estimated {_fmt(cal['estimated_clean_dropped'])}), corrupted kept "
                  f"{_fmt((n_bad - tp) / n_bad if n_bad else None)} (estimated {_fmt(cal['estimated_corrupted_kept'])})")
    fixed = wrong_fix = damaged = harmless = 0
    for s, lab in rows:
        if s["action"] != "correct":
            continue
        right = _is_right(s["correction"], s, lab)
        if lab["corrupted"]:
            fixed += right
            wrong_fix += not right
        else:
            damaged += not right
            harmless += right
    actions = {a: sum(1 for s, _ in rows if s["action"] == a) for a in ("keep", "drop", "correct")}
    print(f"actions (default policy, both): {actions}")
    print(f"auto-correct: {fixed} corrupted rows fixed, {wrong_fix} corrupted rows replaced by another wrong "
          f"answer, {damaged} clean rows damaged, {harmless} clean rows rewritten to an equivalent answer")
    result.update(fixed=fixed, wrong_fix=wrong_fix, damaged=damaged, actions=actions)
    calls = [s["calls"] for s, _ in rows]
    tokens = [s["tokens"] for s, _ in rows]
    judged = sum(1 for s, _ in rows if "judgement" in s["details"])
    print(f"cost: {sum(calls) / len(rows):.2f} calls/row ({max(calls)} max), {sum(tokens) / len(rows):.0f} "
          f"tokens/row; {judged} rows judged pairwise; engine: {summary['engine']['requests']} model calls, "
          f"{summary['engine']['cache_hits']} cached, {summary['engine']['wall_seconds']:.0f} s")
    return result


def report_corrections(out: Path, labels: dict[int, dict[str, Any]]) -> None:
    scores = _jsonl(out / "scores.jsonl")
    judged = [s for s in scores if "judgement" in s["details"]]
    fixed = sum(1 for s in scores if s["action"] == "correct" and labels[s["line"]]["corrupted"]
                and _is_right(s["correction"], s, labels[s["line"]]))
    wrong = sum(1 for s in scores if s["action"] == "correct" and labels[s["line"]]["corrupted"]) - fixed
    damaged = sum(1 for s in scores if s["action"] == "correct" and not labels[s["line"]]["corrupted"]
                  and not _is_right(s["correction"], s, labels[s["line"]]))
    print(f"  {len(judged)} rows judged pairwise ({2 * len(judged)} calls); corrected "
          f"{sum(1 for s in scores if s['action'] == 'correct')}: {fixed} fixed, {wrong} replaced by another wrong "
          f"answer, {damaged} clean rows damaged")
    for s in judged:
        j = s["details"]["judgement"]
        print(f"    line {s['line']:3d} {labels[s['line']]['kind']:16s} {s['action']:7s} judge "
              f"{j['candidate_second']:.2f}/{j['candidate_first']:.2f}  {s['response'][:30]!r} -> "
              f"{s['details']['candidate'][:40]!r}")


async def run(args: argparse.Namespace) -> None:
    sets = {Path(p).parent.name or "data": Path(p) for p in args.data} if args.data else SETS
    names = [args.only] if args.only else list(sets)
    for name in names:
        data = sets[name]
        labels = {r["line"]: _label(r) for r in _jsonl(data.parent / "labels.jsonl")}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out_dir) / name if args.out_dir else Path(tmp)
            common = dict(provider=args.provider, model_path=args.model_path, samples=args.samples,
                          demonstrations=args.demonstrations, demo_sets=args.demo_sets, seed=args.seed,
                          cache=args.cache or True, progress=False)
            summary = await curate(data, out, **common)
            assert summary.threshold is not None
            report(name, out, labels, summary.threshold)
            if args.lenient is not None and args.lenient >= 0:
                # the same scores (cached) under a lenient correction gate: what the pairwise judge does
                out2 = out.parent / f"{out.name}-lenient"
                await curate(data, out2, correct_threshold=args.lenient, **common)
                print(f"-- {name} again with --correct-threshold {args.lenient} (scores from the cache) --")
                report_corrections(out2, labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=list(SETS), default=None)
    p.add_argument("--data", action="append", default=[], metavar="QA.JSONL",
                   help="measure on your own labelled set instead (labels.jsonl beside it, one line per input "
                        "line: {\"line\", \"corrupted\", \"kind\", \"correct\"}); repeatable")
    p.add_argument("--provider", default="local")
    p.add_argument("--model-path", default=None)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="sampling and demonstration seed (default 0)")
    p.add_argument("--demonstrations", type=int, default=None, metavar="K",
                   help="the dataset's rows shown before each answer/scoring prompt (default: curate's)")
    p.add_argument("--demo-sets", type=int, default=None, metavar="N",
                   help="draws of demonstrations each row is asked under (default: curate's)")
    p.add_argument("--cache", default=None, help="response cache file (default: clearapi's)")
    p.add_argument("--out-dir", default=None, help="keep the curate outputs here")
    p.add_argument("--lenient", type=float, default=0.4, metavar="G",
                   help="also re-decide with this --correct-threshold to show the pairwise judge at work "
                        "(default 0.4; a negative value skips it)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
