"""Build the long-context labelled set from documentation shipped with Python (stdlib docstrings).

    python examples/longctx/build.py      # rewrites qa.jsonl + labels.jsonl here and in heldout/

Every row is Alpaca (`instruction`, `input`, `output`, plus an `id`): the input is a real docstring
of 400-900 characters (paragraphs reflowed to one line each, doctest and indented code dropped), the
instruction asks for a heading, a one-sentence summary or what the function returns, and the output
is read off the passage itself (its qualified name, its first sentence, its first sentence about
what it returns). None of the text was written by us; only the instructions were.

The tuning split and the held-out split come from disjoint module lists, so the held-out rows share
no passage, name or wording with the rows a rule is chosen on. About 22 % of the rows are corrupted
the ways CLEAR's benchmarks are: `swapped` (the output of another row with the same instruction),
`context_sentence` (another sentence copied from the row's own passage, never the answer sentence)
and `truncated` (the right output cut mid-way). Choices are seeded hashes of the row id, so the
files are the same on every run of the same Python version (docstrings change between versions).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TUNING = ["json", "textwrap", "shutil", "string", "collections", "functools", "itertools", "os.path",
          "re", "subprocess", "tempfile", "csv", "urllib.parse", "base64", "hashlib", "zipfile", "typing",
          "enum", "dataclasses", "threading", "queue", "configparser", "codecs", "calendar", "fractions",
          "ftplib", "smtplib", "pickle", "xml.etree.ElementTree", "sqlite3", "io", "decimal"]
HELDOUT = ["pathlib", "datetime", "statistics", "random", "heapq", "bisect", "difflib", "argparse",
           "logging", "fnmatch", "glob", "tarfile", "gzip", "inspect", "operator", "contextlib", "uuid",
           "shlex", "copy", "pprint", "email.message", "http.client", "http.cookies", "mailbox", "imaplib",
           "poplib", "trace", "doctest", "unittest.case", "weakref", "locale", "gettext", "ipaddress",
           "sched", "selectors", "optparse", "getopt", "cmd", "ast", "tokenize", "traceback"]
PER_SPLIT = 72
CORRUPT_SHARE = 0.22

HEADING = "Write a short heading for this section of the documentation."
SUMMARY = "Summarise this passage in one sentence."
RETURNS = "What does this function return? Answer in one sentence."

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`'\"(])")


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12], 16)


def _passage(doc: str) -> str | None:
    """Reflowed paragraphs of a docstring, cut at a paragraph end to leave room for the name line."""
    paras: list[str] = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = block.splitlines()
        if any(x.startswith((" ", "\t", ">>>", "...")) for x in lines) or not lines:
            continue  # code, doctests and indented tables read badly on one line
        text = " ".join(x.strip() for x in lines)
        if len(text) < 20 or "::" in text:
            continue
        if sum(len(p) + 2 for p in paras) + len(text) > 820:
            break
        paras.append(text)
    out = "\n\n".join(paras)
    return out if 360 <= len(out) <= 820 else None  # 400-900 with the name line added


def _sentences(passage: str) -> list[str]:
    return [s.strip() for p in passage.split("\n\n") for s in _SENTENCE.split(p) if s.strip()]


def _prose(sentence: str) -> bool:
    """A first sentence that reads as a summary (not a signature or an example)."""
    return len(sentence) >= 25 and sentence.endswith(".") and "->" not in sentence and "(" not in sentence[:12]


def _documented(module_name: str) -> list[tuple[str, str]]:
    """(qualified name, passage) of the module's public functions, classes and methods with a long docstring."""
    mod = importlib.import_module(module_name)
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str, obj: Any) -> None:
        doc = inspect.getdoc(obj) if (inspect.isroutine(obj) or inspect.isclass(obj)) else None
        passage = _passage(doc) if doc else None
        if passage and passage not in seen:
            seen.add(passage)
            found.append((name, passage))

    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or getattr(obj, "__module__", module_name) not in (module_name, mod.__name__):
            continue
        visit(f"{module_name}.{attr}", obj)
        if inspect.isclass(obj):
            for meth, m in sorted(vars(obj).items()):
                if not meth.startswith("_") and inspect.isroutine(m):
                    visit(f"{module_name}.{attr}.{meth}", m)
    return found


def _signature(obj: Any) -> str:
    try:
        # object addresses (<function f at 0x7f...>) differ between runs: keep the build reproducible
        return re.sub(r" at 0x[0-9a-f]+>", ">", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return ""


def _rows(modules: list[str], prefix: str) -> list[dict[str, Any]]:
    """Clean rows, one instruction per passage, interleaved across modules. The passage opens with the
    documented name and signature, as pydoc prints it, so a heading can be read off the passage."""
    per_module = []
    for name in modules:
        rows = []
        for qual, doc in _documented(name):
            sents = _sentences(doc)
            if len(sents) < 3 or not _prose(sents[0]):
                continue  # a context_sentence corruption needs a sentence that is not the answer
            obj = _resolve(qual)
            short = qual[len(name) + 1:]
            passage = f"{short}{_signature(obj)}\n\n{doc}"
            if not 400 <= len(passage) <= 900:
                continue
            returns = next((s for s in sents if re.match(r"(Return|Returns) ", s) and _prose(s)), None)
            choice = _h(prefix, qual) % 3
            if choice == 2 and returns is not None and inspect.isroutine(obj):
                instr, out = RETURNS, returns
            elif choice == 1:
                instr, out = HEADING, short
            else:
                instr, out = SUMMARY, sents[0]
            rows.append({"instruction": instr, "input": passage, "output": out, "_source": qual,
                         "_doc": doc})
        rows.sort(key=lambda r: _h(prefix, r["_source"]))
        per_module.append(rows)
    merged: list[dict[str, Any]] = []
    while any(per_module) and len(merged) < PER_SPLIT:
        for rows in per_module:
            if rows and len(merged) < PER_SPLIT:
                merged.append(rows.pop(0))
    for i, row in enumerate(merged, 1):
        row["id"] = f"{prefix}-{i:03d}"
    return merged


def _resolve(qual: str) -> Any:
    parts = qual.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for p in parts[cut:]:
            obj = getattr(obj, p)
        return obj
    raise LookupError(qual)


def _corrupt(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Corrupt about CORRUPT_SHARE of the rows in place; return one label per row."""
    n_bad = round(CORRUPT_SHARE * len(rows))
    order = sorted(range(len(rows)), key=lambda i: _h(prefix, "corrupt", rows[i]["id"]))
    bad = {i: k for k, i in enumerate(order[:n_bad])}  # row -> its rank, to spread the kinds evenly
    labels = []
    originals = [r["output"] for r in rows]
    for i, row in enumerate(rows):
        correct = originals[i]
        kind = "clean"
        if i in bad:
            kinds = ["swapped", "context_sentence", "truncated"]
            kind = kinds[bad[i] % 3]
            if kind == "swapped":
                others = [j for j in range(len(rows)) if j != i and rows[j]["instruction"] == row["instruction"]
                          and originals[j] != correct]
                row["output"] = originals[others[_h(prefix, "swap", row["id"]) % len(others)]]
            elif kind == "context_sentence":
                options = [s for s in _sentences(row["_doc"]) if s != correct and s not in correct
                           and correct.rstrip(".") not in s and len(s) >= 25]
                if not options:
                    kind, row["output"] = "truncated", correct
                else:
                    row["output"] = options[_h(prefix, "ctx", row["id"]) % len(options)]
            if kind == "truncated":
                words = correct.split()
                if len(words) < 4:  # too short to cut: swap instead
                    others = [j for j in range(len(rows)) if j != i and originals[j] != correct]
                    kind, row["output"] = "swapped", originals[others[_h(prefix, "swap", row["id"]) % len(others)]]
                else:
                    row["output"] = " ".join(words[: max(2, len(words) // 2)])
        labels.append({"line": i + 1, "id": row["id"], "corrupted": kind != "clean", "kind": kind,
                       "correct": correct, "reference": [correct], "source": row["_source"]})
    return labels


def _write(folder: Path, rows: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "qa.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "instruction": r["instruction"], "input": r["input"],
                                "output": r["output"]}, ensure_ascii=False) + "\n")
    with (folder / "labels.jsonl").open("w", encoding="utf-8") as f:
        for lab in labels:
            f.write(json.dumps(lab, ensure_ascii=False) + "\n")


def main() -> None:
    for modules, prefix, folder in [(TUNING, "lc", HERE), (HELDOUT, "lh", HERE / "heldout")]:
        rows = _rows(modules, prefix)
        labels = _corrupt(rows, prefix)
        _write(folder, rows, labels)
        kinds: dict[str, int] = {}
        for lab in labels:
            kinds[lab["kind"]] = kinds.get(lab["kind"], 0) + 1
        print(f"{folder.relative_to(HERE.parent)}: {len(rows)} rows, {kinds} (Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
