"""Curate output folders for the report tests, written through clearapi's own models.

`realistic_output_dir` mimics a small run of the example dataset (kept, corrected, dropped
and rejected rows, three signals, engine counters); `hostile` adds rows whose text is
markup meant to run script, to prove the page shows it as text. `scaled_output_dir`
writes N rows fast for the size test.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import orjson

from clearapi.records import Reject, RowCounts, RunStats, Score, Summary

SIGNALS = ("self_rating", "consistency", "token_prob")
WEIGHTS = {"self_rating": 0.3, "consistency": 0.56, "token_prob": 0.14}

QA = [
    ("What is the capital of France?", "The capital of France is Paris.", None),
    ("How many legs does a spider have?", "A spider has six legs.", "A spider has eight legs."),
    ("Translate 'thank you' into Spanish.", "Gracias.", None),
    ("What is 12 times 12?", "12 times 12 is 124.", "12 times 12 is 144."),
    ("Name the largest planet in the Solar System.", "Jupiter is the largest planet in the Solar System.", None),
    ("Who wrote 'Pride and Prejudice'?", "Charles Dickens wrote 'Pride and Prejudice' in 1813.",
     "Jane Austen wrote 'Pride and Prejudice', published in 1813."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide (CO2) for photosynthesis.", None),
    ("Write a subject line for an email asking for a meeting.", "Re: invoice #4411 overdue", None),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level.", None),
    ("Summarise: The cat sat on the mat all afternoon, ignoring the dog.",
     "A dog chased a ball in the park.", "A cat lounged on the mat all afternoon and ignored the dog."),
    ("Which ocean is the largest?", "The Pacific Ocean is the largest ocean.", None),
    ("Convert 5 kilometres to metres.", "5 kilometres is 500 metres.", "5 kilometres is 5,000 metres."),
]

SUBJECT_CANDIDATE = "Meeting request: could we talk on Thursday?"

HOSTILE_PROMPT = '<script>window.__pwned = "prompt"</script><img src=x onerror="window.__pwned=\'img\'">'
HOSTILE_RESPONSE = '</script><script>window.__pwned = "response"</script><!-- <b>bold?</b>'
HOSTILE_CORRECTION = '<svg onload="window.__pwned=\'svg\'"></svg> & &amp; </textarea></pre>'


def _score(rng: random.Random, line: int, prompt: str, response: str, correction: str | None,
           bad: bool) -> Score:
    centre = 0.25 if bad else 0.8
    signals: dict[str, float | None] = {
        s: min(1.0, max(0.0, rng.gauss(centre, 0.15))) for s in SIGNALS
    }
    if rng.random() < 0.05:
        signals["token_prob"] = None
    present = {k: v for k, v in signals.items() if v is not None}
    total_w = sum(WEIGHTS[k] for k in present)
    confidence = sum(WEIGHTS[k] * v for k, v in present.items()) / total_w
    # Like the pipeline: the model's own answer travels in details whether or not it is used.
    candidate = correction or (SUBJECT_CANDIDATE if "subject line" in prompt else response)
    details = {"candidate": candidate, "candidate_confidence": round(rng.uniform(0.5, 0.99), 4),
               "candidate_agreement": 1.0 if candidate == response else round(rng.uniform(0, 0.4), 4),
               "samples": [candidate] * 3, "weights": WEIGHTS}
    return Score(
        line=line, id=f"row-{line:05d}", prompt=prompt, response=response, confidence=confidence,
        signals=signals, details=details,
        methods={"self_rating": "logprobs", "consistency": "sampled x5", "token_prob": "answer tokens"},
        correction=correction, calls=7, tokens=rng.randint(300, 900),
    )


def _decide(scores: list[Score], threshold: float) -> None:
    for s in scores:
        assert s.confidence is not None
        if s.confidence >= threshold:
            s.action, s.reason, s.correction = "keep", f"confidence {s.confidence:.2f} ≥ threshold", None
        elif s.correction is not None:
            s.action = "correct"
            s.correction_confidence = 0.9
            s.reason = "model answer confident (0.90) and preferred in both orders"
        else:
            s.action = "drop"
            s.reason = f"confidence {s.confidence:.2f} < threshold {threshold:.2f}; no confident correction"


def _write(out: Path, scores: list[Score], rejects: list[Reject], threshold: float, input_name: str,
           n_lines: int) -> Summary:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scores.jsonl").open("wb") as fh:
        for s in scores:
            fh.write(s.model_dump_json().encode() + b"\n")
    with (out / "rejects.jsonl").open("wb") as fh:
        for r in rejects:
            fh.write(r.model_dump_json().encode() + b"\n")
    with (out / "curated.jsonl").open("wb") as fh:
        for s in scores:
            if s.action in ("keep", "correct"):
                answer = s.correction if s.action == "correct" else s.response
                fh.write(orjson.dumps({"messages": [{"role": "user", "content": s.prompt},
                                                    {"role": "assistant", "content": answer}]}) + b"\n")
    counts = RowCounts(
        rows=n_lines,
        kept=sum(s.action == "keep" for s in scores),
        corrected=sum(s.action == "correct" for s in scores),
        dropped=sum(s.action == "drop" for s in scores),
        rejected=len(rejects),
    )
    assert counts.adds_up
    summary = Summary(
        clearapi_version="0.1.0", input=f"examples/{input_name}", output_dir=str(out),
        provider="local", model="SmolLM2-135M-Instruct", started_at="2026-11-25T14:00:00Z",
        finished_at="2026-11-25T14:03:21Z", counts=counts,
        settings={"threshold": "median", "samples": 5, "eta": 0.8, "temperature": 1.0, "max_tokens": 512},
        threshold=threshold,
        engine=RunStats(requests=7 * len(scores) - 40, logical_calls=7 * len(scores), cache_hits=40,
                        retries={"429": 3}, rate_limited=3, prompt_tokens=41_250, completion_tokens=9_830,
                        cost_usd=0.0, cost_known=True, wall_seconds=201.4),
        signals={s: {"weight": WEIGHTS[s], "method": m} for s, m in
                 zip(SIGNALS, ("logprobs", "sampled x5", "answer tokens"), strict=True)},
        outputs={"curated": "curated.jsonl", "scores": "scores.jsonl", "rejects": "rejects.jsonl",
                 "summary": "summary.json", "report": "report.html"},
    )
    (out / "summary.json").write_text(summary.model_dump_json(indent=2))
    return summary


def realistic_output_dir(out: Path, *, rows: int = 60, hostile: bool = False, seed: int = 7) -> Summary:
    """A small run: QA pairs, some wrong (low confidence, some with corrections), 3 rejected lines."""
    rng = random.Random(seed)
    scores: list[Score] = []
    rejects: list[Reject] = []
    reject_lines = {5, 23, 41}
    line = 0
    while len(scores) < rows:
        line += 1
        if line in reject_lines:
            rejects.append(Reject(file="qa.jsonl", line=line, field="messages[1].content",
                                  error="content is empty", raw='{"messages": [{"role": "user", "content": "Hi"}, '
                                                                '{"role": "assistant", "content": ""}]}'))
            continue
        prompt, response, correction = QA[len(scores) % len(QA)]
        bad = correction is not None or "subject line" in prompt
        scores.append(_score(rng, line, prompt, response, correction, bad))
    if hostile:
        line += 1
        scores.append(Score(line=line, id='<b id="pwn">hostile</b>', prompt=HOSTILE_PROMPT,
                            response=HOSTILE_RESPONSE, confidence=0.05,
                            signals={"self_rating": 0.05, "consistency": 0.04, "token_prob": 0.1},
                            correction=HOSTILE_CORRECTION, calls=7, tokens=500))
        line += 1
        rejects.append(Reject(file="qa.jsonl", line=line, field=None,
                              error='bad JSON near <img src=x onerror="window.__pwned=\'reject\'">',
                              raw='<script>window.__pwned="reject-raw"</script>'))
    threshold = round(statistics.median(s.confidence for s in scores if s.confidence is not None), 4)
    _decide(scores, threshold)
    return _write(out, scores, rejects, threshold, "qa.jsonl", line)


def scaled_output_dir(out: Path, rows: int, *, seed: int = 1) -> Summary:
    """`rows` scored rows with ~300-character texts, written without per-row model overhead."""
    rng = random.Random(seed)
    filler = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
              "ut labore et dolore magna aliqua. ")
    counts = {"keep": 0, "correct": 0, "drop": 0}
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scores.jsonl").open("wb") as fh:
        for i in range(rows):
            conf = rng.random()
            action = "keep" if conf >= 0.5 else ("correct" if rng.random() < 0.2 else "drop")
            counts[action] += 1
            row = {
                "line": i + 1, "id": f"r{i}", "prompt": f"Question {i}: " + filler * 2,
                "response": f"Answer {i}: " + filler * 2, "confidence": conf,
                "signals": {s: rng.random() for s in SIGNALS}, "methods": {},
                "action": action, "reason": f"confidence {conf:.2f} vs threshold 0.50",
                "correction": (f"Better answer {i}: " + filler * 2) if action == "correct" else None,
                "correction_confidence": 0.9 if action == "correct" else None,
                "details": {}, "calls": 7, "tokens": 600,
            }
            fh.write(orjson.dumps(row) + b"\n")
    (out / "rejects.jsonl").write_bytes(b"")
    summary = Summary(
        clearapi_version="0.1.0", input="big.jsonl", output_dir=str(out), provider="openai", model="gpt-4o-mini",
        started_at="2026-11-25T10:00:00Z", finished_at="2026-11-25T12:00:00Z",
        counts=RowCounts(rows=rows, kept=counts["keep"], corrected=counts["correct"], dropped=counts["drop"]),
        threshold=0.5, engine=RunStats(requests=rows * 7, logical_calls=rows * 7, prompt_tokens=rows * 500,
                                       completion_tokens=rows * 100, cost_usd=rows * 0.0001, wall_seconds=7200),
        signals={s: {"weight": WEIGHTS[s]} for s in SIGNALS},
    )
    (out / "summary.json").write_text(summary.model_dump_json(indent=2))
    return summary
