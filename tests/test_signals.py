"""Signal maths: option probabilities, certainty, likelihood, PMI, consistency, similarity, pooling."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearapi.clear.combine import combine, logit, weights_for
from clearapi.clear.signals import (
    answer_agreement,
    certainty,
    completeness,
    consistency_with,
    geometric_mean_probability,
    logistic,
    mean_logprob,
    numeric_rating,
    observed_consistency,
    option_probabilities,
    pmi_per_token,
    rating_from_letters,
    read_letter,
)
from clearapi.clear.similarity import agreement, containment, exact_match, normalize, token_f1

probs = st.floats(min_value=1e-6, max_value=1.0)
unit = st.floats(min_value=0.0, max_value=1.0)


# --- option probabilities ----------------------------------------------------------------------


def test_option_mass_sums_case_and_spacing_variants() -> None:
    top = [("A", math.log(0.3)), (" A", math.log(0.1)), ("a", math.log(0.1)), ("(B", math.log(0.2)),
           (" C.", math.log(0.1)), ("The", math.log(0.2))]
    p = option_probabilities(top)
    assert p is not None
    assert p["A"] == pytest.approx(0.5 / 0.8)
    assert p["B"] == pytest.approx(0.2 / 0.8)
    assert p["C"] == pytest.approx(0.1 / 0.8)


def test_non_option_tokens_are_ignored_and_no_option_gives_none() -> None:
    assert option_probabilities({"The": -0.1, "Answer": -2.0, "AB": -1.0}) is None
    p = option_probabilities({"Absolutely": -0.1, "B": -3.0})
    assert p == {"A": 0.0, "B": 1.0, "C": 0.0}


def test_certainty_scale() -> None:
    assert certainty({"A": 1.0, "B": 0.0, "C": 0.0}) == 1.0
    assert certainty({"A": 0.0, "B": 1.0, "C": 0.0}) == 0.0
    assert certainty({"A": 0.0, "B": 0.0, "C": 1.0}) == 0.5
    assert certainty({"A": 0.5, "B": 0.5, "C": 0.0}) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        certainty({"A": 0.0, "B": 0.0, "C": 0.0})


@given(a=probs, b=probs, c=probs)
def test_certainty_bounded_and_monotone_in_a(a: float, b: float, c: float) -> None:
    p = option_probabilities({"A": math.log(a), "B": math.log(b), "C": math.log(c)})
    assert p is not None
    assert sum(p.values()) == pytest.approx(1.0)
    s = certainty(p)
    assert 0.0 <= s <= 1.0
    # more mass on "correct" never lowers certainty
    more = option_probabilities({"A": math.log(min(1.0, a * 2)), "B": math.log(b), "C": math.log(c)})
    assert more is not None
    assert certainty(more) >= s - 1e-12


def test_sampled_letters() -> None:
    assert read_letter("(B) Incorrect") == "B"
    assert read_letter("A") == "A"
    assert read_letter("I am not sure") is None  # "I" is not an option
    assert read_letter("Answer: c") == "C"
    assert rating_from_letters(["A", "B", "C", None]) == pytest.approx(0.5)
    assert rating_from_letters([None, None]) is None


def test_numeric_rating() -> None:
    assert numeric_rating("8") == pytest.approx(0.8)
    assert numeric_rating("Score: 10/10") == 1.0
    assert numeric_rating("eleven") is None
    assert numeric_rating("42") is None


# --- likelihood and PMI ---------------------------------------------------------------------------


def test_mean_logprob_skips_unknown_tokens() -> None:
    assert mean_logprob([-1.0, None, -3.0]) == pytest.approx(-2.0)
    assert mean_logprob([None]) is None
    assert geometric_mean_probability([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)


@given(st.lists(st.floats(min_value=-50, max_value=0), min_size=1, max_size=30))
def test_geometric_mean_probability_is_a_probability(lps: list[float]) -> None:
    g = geometric_mean_probability(lps)
    assert g is not None and 0.0 <= g <= 1.0


def test_pmi_is_gain_from_the_prompt() -> None:
    assert pmi_per_token([-1.0, -1.0], [-3.0, -3.0]) == pytest.approx(2.0)
    assert pmi_per_token([-3.0], [-1.0]) == pytest.approx(-2.0)
    assert pmi_per_token([], [-1.0]) is None


@given(st.floats(min_value=-1e6, max_value=1e6), st.floats(min_value=-1e6, max_value=1e6))
def test_logistic_bounded_monotone(x: float, y: float) -> None:
    lx, ly = logistic(x), logistic(y)
    assert 0.0 <= lx <= 1.0
    if x < y:
        assert lx <= ly
    assert logistic(0.0) == 0.5


# --- similarity and consistency -------------------------------------------------------------------


def test_normalisation() -> None:
    assert normalize("The Pacific Ocean.") == "pacific ocean"
    assert normalize("Brasília") == "brasilia"
    assert exact_match("Eight.", "8")
    assert exact_match("1,000 grams", "1000 grams")


def test_containment_handles_sentence_around_span() -> None:
    assert containment("Warsaw", "Marie Curie was born in Warsaw, Poland.") == 1.0
    assert agreement("In Warsaw.", "Marie Curie was born in Warsaw.") == 1.0
    assert agreement("Toronto.", "The capital of Canada is Ottawa.") == 0.0
    # a stop-word-only answer agrees with nothing
    assert containment("It is.", "It is Ottawa.") == 0.0


def test_token_f1() -> None:
    assert token_f1("the heart", "Heart") == 1.0
    assert token_f1("red car", "blue car") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0
    assert token_f1("x", "") == 0.0


@given(st.text(max_size=40), st.text(max_size=40))
def test_agreement_bounded_and_symmetric(a: str, b: str) -> None:
    s = agreement(a, b)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(agreement(b, a))


def test_observed_consistency() -> None:
    assert observed_consistency("Ottawa", []) is None
    assert observed_consistency("Ottawa", ["Ottawa", "ottawa."]) == pytest.approx(1.0)
    assert observed_consistency("Toronto", ["Ottawa", "Ottawa"]) == 0.0
    # agreement without exact match earns alpha only
    assert observed_consistency("Ottawa", ["The capital is Ottawa."]) == pytest.approx(0.8)


def test_consistency_weighs_the_best_answer_as_much_as_all_samples() -> None:
    samples = ["Ottawa", "Montreal", "Montreal", "Montreal"]
    # best answer agrees (1.0), samples 1 of 4 (0.25): halves, not a 1-in-5 vote
    assert consistency_with("Ottawa", ["Ottawa"], samples) == pytest.approx(0.5 * 1.0 + 0.5 * 0.25)
    assert consistency_with("Ottawa", [], samples) == pytest.approx(0.25)
    assert consistency_with("Ottawa", ["Ottawa"], []) == pytest.approx(1.0)
    assert consistency_with("Ottawa", [], []) is None
    # one best answer per demonstration set: their half is their mean
    assert consistency_with("Ottawa", ["Ottawa", "Toronto"], samples) == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)


def test_answer_agreement_discounts_a_hesitant_contradiction() -> None:
    # y′ disagrees entirely: how much that counts depends on how sure the model is of y′
    assert answer_agreement(0.0, 0.9) == pytest.approx(0.1)
    assert answer_agreement(0.0, 0.2) == pytest.approx(0.8)
    # y′ agrees: no evidence against y, however sure
    assert answer_agreement(1.0, 0.9) == 1.0 and answer_agreement(1.0, 0.0) == 1.0
    assert answer_agreement(0.5, 0.5) == pytest.approx(0.75)
    assert answer_agreement(-1.0, 2.0) == 0.0  # clamped


def test_completeness_from_the_end_of_turn_logprob() -> None:
    assert completeness(None) is None and completeness(float("nan")) is None
    # the least finished-looking clean answer measured ("The lungs help us breathe.") passes
    assert completeness(-9.5) > 0.8
    # text the model is all but sure goes on ("Evaporation is the", with its closing-mark chance)
    assert completeness(-16.0) < 0.01
    assert completeness(-11.0) == pytest.approx(0.5)
    assert completeness(-3.0) > completeness(-10.0) > completeness(-12.0)


# --- pooling ---------------------------------------------------------------------------------------


def test_undecided_signal_does_not_drown_a_decisive_one() -> None:
    w = {"pmi": 0.5, "self_rating": 0.5}
    strong_bad = combine({"pmi": 0.02, "self_rating": 0.5}, w)
    assert strong_bad is not None and strong_bad < 0.2
    # a plain mean would have said 0.26; the pool keeps the decisive signal's verdict
    strong_good = combine({"pmi": 0.98, "self_rating": 0.5}, w)
    assert strong_good is not None and strong_good > 0.8


def test_missing_signals_renormalise() -> None:
    w = {"pmi": 0.5, "consistency": 0.5}
    assert combine({"pmi": 0.9, "consistency": None}, w) == pytest.approx(0.9)
    assert combine({"pmi": None}, w) is None
    assert combine({}, {}) is None


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), unit, min_size=1),
       st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0.01, max_value=1.0), min_size=1))
def test_combine_bounded_and_monotone(signals: dict[str, float], weights: dict[str, float]) -> None:
    c = combine(signals, weights)
    if not set(signals) & set(weights):
        assert c is None
        return
    assert c is not None and 0.0 <= c <= 1.0
    lo = min(signals[k] for k in weights if k in signals)
    hi = max(signals[k] for k in weights if k in signals)
    def clip(x: float) -> float:
        return min(0.98, max(0.02, x))

    # a weighted mean in log-odds space stays between the (clipped) extremes
    assert clip(lo) - 1e-9 <= c <= clip(hi) + 1e-9
    for k in signals:
        if k in weights:
            up = dict(signals, **{k: min(1.0, signals[k] + 0.1)})
            c2 = combine(up, weights)
            assert c2 is not None and c2 >= c - 1e-12


def test_completeness_gates_instead_of_voting() -> None:
    w = {"pmi": 0.5, "consistency": 0.5}
    pooled = combine({"pmi": 0.9, "consistency": 0.8}, w)
    assert pooled is not None
    # multiplies, whatever weight a table might give it: cut-off text cannot be outvoted ...
    assert combine({"pmi": 0.9, "consistency": 0.8, "completeness": 0.01}, {**w, "completeness": 5.0}) == \
        pytest.approx(pooled * 0.01)
    # ... and an ordinary ending (near 1) leaves the ranking the other signals give
    assert combine({"pmi": 0.9, "consistency": 0.8, "completeness": 0.999}, w) == pytest.approx(pooled * 0.999)
    assert "completeness" not in weights_for("gpt-4o-mini", {"pmi", "completeness"})


def test_logit_clipped() -> None:
    assert logit(0.0) == pytest.approx(logit(0.02))
    assert logit(1.0) == pytest.approx(-logit(0.0))


def test_weight_tables() -> None:
    smol = weights_for("smollm2-135m-instruct")
    assert smol == {"pmi": 0.4, "consistency": 0.4, "answer_agreement": 0.4, "self_rating": 0.2}
    assert weights_for("SmolLM2-135M-Instruct.Q4_1.gguf") == smol
    assert weights_for("gpt-4o-mini") == {"consistency": 0.5, "self_rating": 0.3, "likelihood": 0.1, "pmi": 0.1}
    only = weights_for("gpt-4o-mini", {"self_rating"})
    assert set(only) == {"self_rating"}


# --- answer-aware agreement and the copy signal -----------------------------------------------


def test_focused_agreement_sees_a_single_entity_contradiction() -> None:
    from clearapi.clear.signals import focused_agreement
    from clearapi.clear.similarity import agreement
    prompt = "What is the capital of England?"
    wrong, right = "The capital of England is Copenhagen.", "The capital of England is London."
    assert agreement(wrong, right) >= 0.8  # lexical agreement calls them the same
    assert focused_agreement(wrong, right, prompt) == 0.0
    assert focused_agreement("London.", right, prompt) == 1.0


def test_focused_agreement_falls_back_when_one_side_adds_nothing() -> None:
    from clearapi.clear.signals import answer_tokens, focused_agreement
    from clearapi.clear.similarity import agreement
    prompt = "Is the capital of England London?"
    assert answer_tokens("The capital of England is London.", prompt) == []
    assert focused_agreement("London.", "Yes, London.", prompt) == agreement("London.", "Yes, London.")


def test_focused_contradiction_by_a_confident_answer_scores_low() -> None:
    from clearapi.clear.signals import answer_agreement, focused_agreement
    a = focused_agreement("7 + 16 = 22.", "7 + 16 = 23.", "What is 7 + 16?")
    assert answer_agreement(a, 0.9) < 0.2


def test_consistency_compares_what_the_answers_add_to_the_prompt() -> None:
    """The model's answers all say London: a response saying Copenhagen is consistent with none of
    them, although it shares five of their six words."""
    from clearapi.clear.signals import consistency_with
    prompt = "What is the capital of England?"
    answers = ["The capital of England is London."] * 2
    samples = ["London.", "The capital of England is London.", "It is London."]
    wrong = "The capital of England is Copenhagen."
    lexical = consistency_with(wrong, answers, samples)
    assert lexical is not None and lexical > 0.4
    assert consistency_with(wrong, answers, samples, prompt=prompt) == 0.0
    right = consistency_with("London.", answers, samples, prompt=prompt)
    assert right is not None and right >= 0.8


def test_a_confident_single_entity_contradiction_pulls_the_pool_below_a_clean_row() -> None:
    """Through `score_example` on scripted answers: the wrong capital's consistency and answer
    agreement are near 0, so its confidence falls well below the right answer's."""
    import asyncio

    from clearapi.clear.pipeline import ScoringPlan, score_example
    from clearapi.records import ChatRequest, ChatResponse, Choice, Example, Message, TokenLogprob, Usage

    async def chat(request: ChatRequest) -> ChatResponse:
        text = "The capital of England is London."
        choices = [Choice(text=text, logprobs=[TokenLogprob(token=text, logprob=-0.01)], finish_reason="stop")
                   for _ in range(request.n)]
        return ChatResponse(choices=choices, usage=Usage(prompt_tokens=10, completion_tokens=8), calls=request.n)

    class Engine:
        async def chat(self, request: ChatRequest) -> ChatResponse:
            return await chat(request)

    def example(response: str) -> Example:
        return Example(id="r", line=1, messages=[Message(role="user", content="What is the capital of England?"),
                                                 Message(role="assistant", content=response)])

    plan = ScoringPlan(rating="sampled", best_answer=True, samples=4)
    wrong = asyncio.run(score_example(Engine(), example("The capital of England is Copenhagen."), plan=plan))
    right = asyncio.run(score_example(Engine(), example("The capital of England is London."), plan=plan))
    assert wrong.signals["consistency"] is not None and wrong.signals["consistency"] < 0.1
    assert wrong.signals["answer_agreement"] is not None and wrong.signals["answer_agreement"] < 0.1
    assert wrong.confidence < 0.5 < right.confidence


def test_copy_ratio_tells_a_passage_sentence_from_an_answer_using_it() -> None:
    from clearapi.clear.signals import copy_ratio
    prompt = ("Summarise this passage.\n\nThe cache keeps answers on disk. Re-runs with the same requests "
              "are free. Keys hash the whole request.")
    assert copy_ratio("Re-runs with the same requests are free.", prompt) == 1.0
    used = copy_ratio("It stores model answers on disk so re-runs are free.", prompt)
    assert used is not None and used < 0.5
    assert copy_ratio("", prompt) is None
    assert copy_ratio("Nothing here matches.", prompt) == 0.0
