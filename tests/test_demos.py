"""In-context demonstrations: which rows may serve, which a row gets, and where they go."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clearapi.clear import prompts
from clearapi.clear.demos import MAX_RESPONSE_CHARS, MAX_TOTAL_CHARS, DemoPool
from clearapi.clear.estimate import estimate_run
from clearapi.clear.pipeline import ScoringPlan, score_example
from clearapi.datasets import DatasetReader
from clearapi.engine import Engine
from clearapi.errors import ConfigError
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Example,
    Message,
    Reject,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from clearapi.testing import ScriptedAdapter

LOCAL_LIKE = Capabilities(logprobs=True, max_top_logprobs=20, n=True, max_n=128, score_given_text=True)
OPENAI_LIKE = Capabilities(logprobs=True, max_top_logprobs=20, n=True, max_n=128)


def _ex(line: int, q: str, a: str, system: str | None = None) -> Example:
    msgs = [Message(role="system", content=system)] if system else []
    msgs += [Message(role="user", content=q), Message(role="assistant", content=a)]
    return Example(id=f"r{line}", line=line, messages=msgs)


ROWS = [_ex(i, f"Question number {i}?", f"Answer {i}.") for i in range(1, 11)]


def test_pool_keeps_short_single_turn_rows_only() -> None:
    multi = Example(id="m", line=2, messages=[Message(role="user", content="Hi"),
                                               Message(role="assistant", content="Hello."),
                                               Message(role="user", content="And?"),
                                               Message(role="assistant", content="Yes.")])
    rows: list[Example | Reject] = [
        _ex(1, "Capital of France?", "Paris.", system="Be brief."),  # a system prompt is fine; it is not copied
        multi,
        Reject(file="f", line=3, field="messages", error="bad"),
        _ex(4, "Long?", "x" * (MAX_RESPONSE_CHARS + 1)),
        _ex(5, "Capital of Peru?", "Lima."),
    ]
    pool = DemoPool.from_rows(rows)
    assert len(pool) == 2
    shown, lines = pool.for_example(_ex(9, "Capital of Chile?", "Santiago."), k=3)
    assert lines == (1, 5)
    assert [m.role for m in shown] == ["user", "assistant", "user", "assistant"]
    assert [m.content for m in shown] == ["Capital of France?", "Paris.", "Capital of Peru?", "Lima."]


def test_pool_stops_at_its_size() -> None:
    pool = DemoPool.from_rows(iter(ROWS), size=4)
    assert len(pool) == 4
    _, lines = pool.for_example(_ex(50, "Other?", "Other."), k=10)
    assert lines == (1, 2, 3, 4)


def test_draw_is_seeded_per_row_and_never_the_row_itself() -> None:
    pool = DemoPool.from_rows(ROWS, seed=0)
    draws = {row.line: pool.for_example(row, k=3)[1] for row in ROWS}
    assert all(len(lines) == 3 and row not in lines for row, lines in draws.items())
    assert all(list(lines) == sorted(lines) for lines in draws.values())
    assert len(set(draws.values())) > 3  # rows get different demonstrations
    again = DemoPool.from_rows(ROWS, seed=0)
    assert {row.line: again.for_example(row, k=3)[1] for row in ROWS} == draws
    other_seed = DemoPool.from_rows(ROWS, seed=1)
    assert {row.line: other_seed.for_example(row, k=3)[1] for row in ROWS} != draws


def test_a_row_with_the_same_prompt_is_never_its_demonstration() -> None:
    twin = _ex(20, "question NUMBER 3?", "Another answer.")  # same prompt as line 3, after normalising
    pool = DemoPool.from_rows(ROWS[:4])
    for _ in range(3):
        _, lines = pool.for_example(twin, k=4)
        assert 3 not in lines and lines == (1, 2, 4)


def test_a_row_with_the_same_response_is_never_its_demonstration() -> None:
    """A response copied from another row (a swapped answer) must not be shown to the model as an answer."""
    swapped = _ex(30, "What colour is the sky?", "answer 2")
    pool = DemoPool.from_rows(ROWS[:3])
    assert pool.for_example(swapped, k=3)[1] == (1, 3)


def test_a_long_row_gets_fewer_demonstrations_or_none() -> None:
    pool = DemoPool.from_rows([_ex(i, "Q" * 900, f"A{i}.") for i in range(1, 6)])
    assert len(pool.for_example(_ex(9, "Short?", "Yes."), k=3)[1]) == 3
    assert len(pool.for_example(_ex(9, "x" * (MAX_TOTAL_CHARS - 2000), "Yes."), k=3)[1]) == 2
    assert pool.for_example(_ex(9, "x" * MAX_TOTAL_CHARS, "Yes."), k=3) == ((), ())


def test_no_demonstrations_when_k_is_zero_or_the_pool_is_empty() -> None:
    assert DemoPool.from_rows(ROWS).for_example(ROWS[0], k=0) == ((), ())
    assert DemoPool.from_rows([]).for_example(ROWS[0], k=3) == ((), ())


def test_demonstrations_go_after_the_system_prompt_and_before_the_question() -> None:
    row = _ex(7, "Capital of Chile?", "Santiago.", system="Answer in one word.")
    demos = [Message(role="user", content="Capital of Peru?"), Message(role="assistant", content="Lima.")]
    answer = prompts.answer_messages(row.prompt_messages, demos)
    assert [m.content for m in answer] == ["Answer in one word.", "Capital of Peru?", "Lima.", "Capital of Chile?"]
    scored = prompts.score_messages(row.prompt_messages, row.response, demos)
    assert [m.content for m in scored][1:] == ["Capital of Peru?", "Lima.", "Capital of Chile?", "Santiago."]
    baseline = prompts.baseline_messages(row.prompt_messages, row.response, demos)
    assert [m.content for m in baseline] == ["Capital of Peru?", "Lima.", prompts.NEUTRAL_PROMPT, "Santiago."]
    assert prompts.answer_messages(row.prompt_messages) == row.prompt_messages


def test_plan_default_is_three_where_text_is_scored_and_none_on_billed_apis() -> None:
    assert ScoringPlan.for_capabilities(LOCAL_LIKE).demonstrations == 3
    assert ScoringPlan.for_capabilities(OPENAI_LIKE).demonstrations == 0
    assert ScoringPlan.for_capabilities(OPENAI_LIKE, demonstrations=2).demonstrations == 2
    assert ScoringPlan.for_capabilities(LOCAL_LIKE, demonstrations=0).demonstrations == 0
    assert "demonstrations" in ScoringPlan.for_capabilities(LOCAL_LIKE).methods()
    assert "demonstrations" not in ScoringPlan.for_capabilities(OPENAI_LIKE).methods()
    with pytest.raises(ConfigError, match="demonstrations must be >= 0"):
        ScoringPlan.for_capabilities(LOCAL_LIKE, demonstrations=-1)


def test_plan_asks_two_demonstration_sets_where_text_is_scored_and_one_on_billed_apis() -> None:
    local = ScoringPlan.for_capabilities(LOCAL_LIKE)
    assert local.sets() == 2 and "2 disjoint sets" in local.methods()["demonstrations"]
    assert "the 2 answers at T=0" in local.methods()["consistency"]
    assert "the answer at T=0" in ScoringPlan.for_capabilities(LOCAL_LIKE, demo_sets=1).methods()["consistency"]
    assert local.calls_per_row() == {"rating": 1, "best_answer": 2, "answers": 2, "likelihood": 4}
    assert local.calls_per_row(sets=1) == {"rating": 1, "best_answer": 1, "answers": 1, "likelihood": 2}
    assert ScoringPlan.for_capabilities(LOCAL_LIKE, demonstrations=0).sets() == 1
    assert ScoringPlan.for_capabilities(OPENAI_LIKE, demonstrations=2).sets() == 1
    assert ScoringPlan.for_capabilities(OPENAI_LIKE, demonstrations=2, demo_sets=3).calls_per_row() == {
        "rating": 1, "answers": 3}
    assert local.samples_per_set(2) == [2, 2]
    assert ScoringPlan.for_capabilities(LOCAL_LIKE, samples=3, demo_sets=2).samples_per_set(2) == [2, 1]
    assert ScoringPlan.for_capabilities(LOCAL_LIKE, samples=1, demo_sets=3).calls_per_row()["answers"] == 1
    with pytest.raises(ConfigError, match="demo sets must be >= 1"):
        ScoringPlan.for_capabilities(LOCAL_LIKE, demo_sets=0)
    with pytest.raises(ConfigError, match="need demonstrations"):
        ScoringPlan.for_capabilities(OPENAI_LIKE, demo_sets=2)


def test_demonstration_sets_are_disjoint_and_the_first_is_the_single_draw() -> None:
    many = [_ex(i, f"Question number {i}?", f"Answer {i}.") for i in range(1, 21)]
    pool = DemoPool.from_rows(many, seed=5)
    for row in many:
        sets = pool.sets_for(row, 3, 3)
        assert sets[0] == pool.for_example(row, 3)
        lines = [line for _, group in sets for line in group]
        assert len(sets) == 3 and all(len(group) == 3 for _, group in sets)
        assert len(set(lines)) == len(lines) and row.line not in lines
    # a pool too small for a second set: the rest go to it; none left, no empty twin set
    small = DemoPool.from_rows(many[:4])
    first, second = small.sets_for(many[0], 2, 2)
    assert len(first[1]) == 2 and second[1] == tuple(sorted({2, 3, 4} - set(first[1])))
    assert len(small.sets_for(many[0], 3, 2)) == 1
    # a row too long for any demonstration gets one set, without them
    assert pool.sets_for(_ex(99, "x" * MAX_TOTAL_CHARS, "Yes."), 3, 2) == (((), ()),)
    assert pool.sets_for(many[0], 0, 2) == (((), ()),)


async def test_answer_and_scoring_requests_carry_the_demonstrations_and_the_rating_does_not() -> None:
    seen: list[ChatRequest] = []

    def respond(request: ChatRequest) -> ChatResponse:
        seen.append(request)
        if request.mode == "score":
            return ChatResponse(choices=[Choice(text="x", logprobs=[TokenLogprob(token="x", logprob=-0.5)],
                                                end_logprob=-1.0)], usage=Usage(prompt_tokens=9))
        if request.max_tokens == 1:
            return ChatResponse(choices=[Choice(text="A", logprobs=[TokenLogprob(
                token="A", logprob=-0.1, top=[TopLogprob(token="A", logprob=-0.1)])])], usage=Usage(prompt_tokens=9))
        return ChatResponse(choices=[Choice(text="Answer 2.") for _ in range(request.n)],
                            usage=Usage(prompt_tokens=9, completion_tokens=2))

    adapter = ScriptedAdapter(respond=respond, capabilities=LOCAL_LIKE)
    pool = DemoPool.from_rows(ROWS)
    row = ROWS[1]
    async with Engine("local", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities, samples=2, demonstrations=2, demo_sets=1)
        score = await score_example(engine, row, plan, model="m", demos=pool)
        plain = ScoringPlan.for_capabilities(engine.capabilities, samples=2, demonstrations=0)
        bare = await score_example(engine, row, plain, model="m", demos=pool)
    expected_lines = pool.for_example(row, 2)[1]
    assert score.details["demonstrations"] == list(expected_lines) and len(expected_lines) == 2
    assert "demonstrations" not in bare.details
    with_demos = seen[: len(seen) // 2]
    demo_questions = {f"Question number {i}?" for i in expected_lines}
    for request in with_demos:
        texts = [m.content for m in request.messages]
        if request.max_tokens == 1 and request.mode != "score":  # the rating prompt shows no demonstrations
            assert not demo_questions & set(texts)
        else:
            assert demo_questions <= set(texts), request.tag
            last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
            assert texts[last_user] in ("Question number 2?", prompts.NEUTRAL_PROMPT)
            assert last_user > max(texts.index(q) for q in demo_questions)
    assert sum(1 for r in with_demos if r.mode == "score") == 2
    for request in seen[len(seen) // 2:]:
        assert not demo_questions & {m.content for m in request.messages}


def test_estimate_counts_the_demonstrations_tokens(tmp_path: Path) -> None:
    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question number {i}?"},
                                                     {"role": "assistant", "content": f"Answer {i}."}]}) + "\n"
                           for i in range(1, 9)), encoding="utf-8")
    reader = DatasetReader(src)

    def tokens(k: int) -> int:
        plan = ScoringPlan.for_capabilities(LOCAL_LIKE, demonstrations=k)
        return estimate_run(reader, plan, None, action="filter", filter_fraction=None, provider="local",
                            model="m", demos=DemoPool.from_rows(reader)).prompt_tokens

    without, with3 = tokens(0), tokens(3)
    # 3 demonstrations in each of the 2 answer and 2 scoring prompts of each of the 2 sets, ~12 tokens each
    assert with3 - without >= 8 * 2 * 4 * 3 * 8


def test_estimate_counts_the_calls_of_each_demonstration_set(tmp_path: Path) -> None:
    src = tmp_path / "qa.jsonl"
    rows = [(f"Question number {i}?", f"Answer {i}.") for i in range(1, 9)] + [("x" * MAX_TOTAL_CHARS, "Long.")]
    src.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}]}) + "\n"
                           for q, a in rows), encoding="utf-8")
    reader = DatasetReader(src)
    plan = ScoringPlan.for_capabilities(LOCAL_LIKE)
    est = estimate_run(reader, plan, None, action="filter", filter_fraction=None, provider="local", model="m",
                       demos=DemoPool.from_rows(reader))
    # 8 rows get 2 sets (the long one gets one, without demonstrations): a best answer and 2 scoring
    # passes per set, the 4 samples in one call per set
    assert est.calls == {"rating": 9, "best_answer": 8 * 2 + 1, "answers": 8 * 2 + 1, "likelihood": 8 * 4 + 2}


def test_dry_run_estimate_includes_the_demonstrations(tmp_path: Path) -> None:
    from clearapi.clear.curation import estimate

    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question number {i}?"},
                                                     {"role": "assistant", "content": f"Answer {i}."}]}) + "\n"
                           for i in range(1, 7)), encoding="utf-8")
    default = estimate(src, provider="local", demo_sets=1)  # the local profile: 3 by default, no model loaded
    none = estimate(src, provider="local", demonstrations=0)
    assert default.calls == none.calls
    assert default.prompt_tokens > none.prompt_tokens + 6 * 4 * 3 * 8
    two_sets = estimate(src, provider="local")  # the local default: 2 sets
    assert two_sets.calls["likelihood"] == 2 * none.calls["likelihood"]
    assert two_sets.prompt_tokens > default.prompt_tokens
    assert estimate(src, provider="openai").prompt_tokens < estimate(src, provider="openai",
                                                                     demonstrations=3).prompt_tokens


async def test_each_demonstration_set_gets_its_own_answer_and_scoring_passes_and_the_signals_average() -> None:
    """Two sets: every answer and scoring request carries exactly one of them; PMI is the mean of the
    two sets' PMI; the candidate is the best answer the samples support most."""
    seen: list[ChatRequest] = []
    pool = DemoPool.from_rows(ROWS)
    row = ROWS[1]
    sets = pool.sets_for(row, 2, 2)
    first_q = {f"Question number {i}?" for i in sets[0][1]}
    second_q = {f"Question number {i}?" for i in sets[1][1]}

    def which(request: ChatRequest) -> int:
        texts = {m.content for m in request.messages}
        assert not (first_q & texts and second_q & texts)
        return 0 if first_q <= texts else 1 if second_q <= texts else -1

    def respond(request: ChatRequest) -> ChatResponse:
        seen.append(request)
        s = which(request)
        if request.mode == "score":
            # set 0: PMI 0 - (-2) = 2 nats; set 1: PMI -1 - (-1) = 0
            baseline = request.messages[-2].content == prompts.NEUTRAL_PROMPT
            lp = {(0, False): 0.0, (0, True): -2.0, (1, False): -1.0, (1, True): -1.0}[s, baseline]
            return ChatResponse(choices=[Choice(text="x", logprobs=[TokenLogprob(token="x", logprob=lp)],
                                                end_logprob=-1.0)], usage=Usage(prompt_tokens=9))
        if request.max_tokens == 1:
            return ChatResponse(choices=[Choice(text="A", logprobs=[TokenLogprob(
                token="A", logprob=-0.1, top=[TopLogprob(token="A", logprob=-0.1)])])], usage=Usage(prompt_tokens=9))
        # best answers: "Answer 2." under set 0, "Banana." under set 1; samples all "Answer 2."
        text = "Banana." if s == 1 and request.temperature == 0 else "Answer 2."
        return ChatResponse(choices=[Choice(text=text, logprobs=[TokenLogprob(token="t", logprob=-0.2)])
                                     for _ in range(request.n)], usage=Usage(prompt_tokens=9, completion_tokens=2))

    adapter = ScriptedAdapter(respond=respond, capabilities=LOCAL_LIKE)
    async with Engine("local", adapter=adapter, cache=False, progress=False) as engine:
        plan = ScoringPlan.for_capabilities(engine.capabilities, samples=4, demonstrations=2)
        score = await score_example(engine, row, plan, model="m", demos=pool)
    answering = [r for r in seen if r.mode != "score" and r.max_tokens != 1]
    assert sorted((which(r), r.temperature, r.n) for r in answering) == [(0, 0.0, 1), (0, 1.0, 2), (1, 0.0, 1),
                                                                         (1, 1.0, 2)]
    assert {r.sample_index for r in answering if r.n == 2} == {0, 2}  # the 4 samples are 4 different draws
    assert sorted(which(r) for r in seen if r.mode == "score") == [0, 0, 1, 1]
    assert score.calls == 1 + 4 + 4
    assert score.details["demonstration_sets"] == [list(sets[0][1]), list(sets[1][1])]
    assert score.details["demonstrations"] == sorted(sets[0][1] + sets[1][1])
    assert score.details["pmi_by_set"] == [2.0, 0.0] and score.details["pmi_nats_per_token"] == 1.0
    assert score.details["candidates"] == ["Answer 2.", "Banana."]
    assert score.details["candidate"] == "Answer 2."  # 4 samples and nothing else agree with "Banana."
    one = score.signals["answer_agreement"]
    assert one is not None and 0.0 < one < 1.0  # y agrees with one best answer and not the other


@pytest.mark.parametrize(("option", "value", "message"), [("samples", -1, "samples must be >= 0"),
                                                         ("demonstrations", -1, "demonstrations must be >= 0"),
                                                         ("demo_sets", 0, "demo sets must be >= 1")])
def test_bad_counts_are_refused_by_the_options_before_any_plan(option: str, value: int, message: str) -> None:
    from clearapi.clear.curation import CurateOptions

    with pytest.raises(ConfigError, match=message):
        CurateOptions(**{option: value}).check()


# -- PMI's baseline: the prompt without its last part -------------------------------------------

SECTION = "fill(text, width=70)\n\nFill a single paragraph of text, returning a new string.\n\nTabs are expanded."


@pytest.mark.parametrize(("turn", "parts"), [
    # Alpaca: an instruction, then an input passage of several paragraphs (one part)
    (f"Summarise this passage in one sentence.\n\n{SECTION}", ["Summarise this passage in one sentence.", SECTION]),
    # an instruction, then an email
    ("Write a short subject line for this email.\n\nHi Sam, the books are overdue.",
     ["Write a short subject line for this email.", "Hi Sam, the books are overdue."]),
    # a passage, then the question about it
    (f"{SECTION}\n\nWhat does fill return?", [SECTION, "What does fill return?"]),
    # an instruction, the passage, a labelled question
    (f"Read the passage and answer the question.\n\n{SECTION}\n\nQuestion: what does fill return",
     ["Read the passage and answer the question.", SECTION, "Question: what does fill return"]),
    # a one-word label first is part of the passage, not an instruction
    (f"Context:\n\n{SECTION}\n\nWhat does fill return?", [f"Context:\n\n{SECTION}", "What does fill return?"]),
    # neither a question at the end nor a short lead: the last paragraph is the part that asks
    ("A long opening paragraph that runs on and on about many things.\n\nNow list them.",
     ["A long opening paragraph that runs on and on about many things.", "Now list them."]),
    ("What does fill return?", ["What does fill return?"]),
])
def test_a_turn_is_read_in_its_parts_and_the_baseline_drops_the_last(turn: str, parts: list[str]) -> None:
    prompt = [Message(role="system", content="Be brief."), Message(role="user", content=turn)]
    assert prompts.prompt_parts(prompt) == parts
    baseline = [m.content for m in prompts.baseline_prompt(prompt)]
    if len(parts) == 1:
        assert baseline == [prompts.NEUTRAL_PROMPT]
    else:
        assert baseline == ["Be brief.", "\n\n".join(parts[:-1])]


def test_a_passage_of_several_paragraphs_leaves_the_baseline_whole() -> None:
    """After an instruction, the baseline drops the whole passage, not only its last paragraph (which left the
    rest of the passage in the baseline, so a sentence from it looked explained by the prompt)."""
    prompt = [Message(role="user", content=f"Write the heading of this section.\n\n{SECTION}")]
    built = prompts.baseline_messages(prompt, "Text wrapping.", [Message(role="user", content="Q?"),
                                                                 Message(role="assistant", content="A.")])
    assert [m.content for m in built] == ["Q?", "A.", "Write the heading of this section.", "Text wrapping."]


@pytest.mark.parametrize("name", ["qa.jsonl", "factual/qa.jsonl", "heldout/qa.jsonl"])
def test_on_the_short_example_sets_the_baseline_is_the_prompt_minus_its_last_paragraph(name: str) -> None:
    """Reading turns in parts changed no baseline where each part is one paragraph (their cache keys stay)."""
    path = Path(__file__).resolve().parents[1] / "examples" / name
    several = 0
    for row in DatasetReader(path):
        paragraphs = [p for p in re.split(r"\n\s*\n", row.prompt_messages[-1].content) if p.strip()]
        several += len(paragraphs) >= 2
        expected = "\n\n".join(paragraphs[:-1]) if len(paragraphs) >= 2 else prompts.NEUTRAL_PROMPT
        assert prompts.baseline_prompt(row.prompt_messages)[-1].content == expected, row.line
    assert several >= 4  # the sets do have passages and emails
