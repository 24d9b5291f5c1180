"""The labelled example sets are what bench/quality.py's figures rest on: check they say what they claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearapi.clear.similarity import tokens
from clearapi.datasets import read_examples
from clearapi.records import Example

ROOT = Path(__file__).resolve().parents[1]
SETS = [ROOT / "examples" / "qa.jsonl", ROOT / "examples" / "heldout" / "qa.jsonl",
        ROOT / "examples" / "factual" / "qa.jsonl", ROOT / "examples" / "longctx" / "qa.jsonl",
        ROOT / "examples" / "longctx" / "heldout" / "qa.jsonl"]
KINDS = {"clean", "wrong_answer", "context_sentence", "swapped", "off_topic", "truncated"}


def matches_reference(text: str, references: list[str]) -> bool:
    """bench/quality.py's rule for "a correction is right": every word of one reference answer
    (normalised: case, punctuation, articles, number words) occurs in the text; a one-word
    reference ending in a full stop ("Rex.") must be the whole answer."""
    words = tokens(text)
    return any(words == tokens(ref) if ref.endswith(".") and len(tokens(ref)) == 1 else set(tokens(ref)) <= set(words)
               for ref in references)


@pytest.mark.parametrize("path", SETS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_labelled_set_is_consistent(path: Path) -> None:
    items = list(read_examples(path))
    assert all(isinstance(x, Example) for x in items), "every example row must read cleanly"
    examples = [x for x in items if isinstance(x, Example)]
    labels = [json.loads(line) for line in (path.parent / "labels.jsonl").read_text().splitlines() if line]
    assert [lab["line"] for lab in labels] == [e.line for e in examples]
    assert [lab["id"] for lab in labels] == [e.id for e in examples]
    assert len({e.id for e in examples}) == len(examples)
    for example, lab in zip(examples, labels, strict=True):
        assert lab["kind"] in KINDS
        assert lab["corrupted"] == (lab["kind"] != "clean")
        if lab["kind"] == "clean":
            assert example.response == lab["correct"], example.id
        else:
            assert example.response != lab["correct"], example.id
        refs = lab["reference"]
        assert isinstance(refs, list) and refs and all(isinstance(r, str) and tokens(r) for r in refs), example.id
        assert matches_reference(lab["correct"], refs), example.id  # the labelled answer passes
        # a corrupted response fails (else a "correction" back to it would count as a fix)
        assert matches_reference(example.response, refs) != lab["corrupted"], example.id
        if lab["kind"] == "truncated":
            assert lab["correct"].startswith(example.response), example.id
        if lab["kind"] == "context_sentence":
            assert example.response.rstrip(".") in example.prompt_text, example.id
    corrupted = sum(lab["corrupted"] for lab in labels)
    assert 0.2 <= corrupted / len(labels) <= 0.35  # examples/README.md: 24 % and 30 %


def test_longctx_splits_share_no_source() -> None:
    """The long-context held-out split checks a rule chosen on the tuning split: no module in common."""
    def modules(folder: Path) -> set[str]:
        labels = [json.loads(x) for x in (folder / "labels.jsonl").read_text().splitlines() if x]
        assert all(len(e.prompt_text) >= 400 for e in read_examples(folder / "qa.jsonl") if isinstance(e, Example))
        return {lab["source"].split(".")[0] for lab in labels}
    tuning, heldout = modules(ROOT / "examples" / "longctx"), modules(ROOT / "examples" / "longctx" / "heldout")
    assert tuning and heldout and not tuning & heldout
