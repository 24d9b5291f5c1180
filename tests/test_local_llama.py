"""The embedded local provider: real SmolLM2 in process, no mocks.

The teacher-forced scores are checked against a reference computed here from llama-cpp-python's
low-level API (tokenize, eval, numpy log-softmax) with the chat prompt written out by hand, so
neither the template handling nor the maths of the adapter is trusted.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import pytest
from conftest_local import LLAMA_MISSING, SKIP_REASON

from clearapi.errors import BadRequest, ConfigError
from clearapi.records import ChatRequest, Message

pytestmark = [pytest.mark.local, pytest.mark.skipif(LLAMA_MISSING, reason=SKIP_REASON)]

SYSTEM = "You are a concise assistant."
QUESTION = "What is the capital of France?"
ANSWER = "The capital of France is Paris."
ONE_SENTENCE = "What is the capital of France? Answer in one sentence."


def user(text: str) -> Message:
    return Message(role="user", content=text)


def assistant(text: str) -> Message:
    return Message(role="assistant", content=text)


@pytest.fixture
def adapter(local_model_path: Path):  # type: ignore[no-untyped-def]
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    return LocalLlamaAdapter(model_path=local_model_path)


def total(resp) -> float:  # type: ignore[no-untyped-def]
    return sum(t.logprob for t in resp.choices[0].logprobs)


async def test_chat_logprobs_are_plain_finite_floats(adapter) -> None:  # type: ignore[no-untyped-def]
    resp = await adapter.chat(ChatRequest(messages=[user(QUESTION)], max_tokens=6, logprobs=True,
                                          top_logprobs=5))
    choice = resp.choices[0]
    assert choice.logprobs, "asked for logprobs, got none"
    assert resp.usage.completion_tokens == len(choice.logprobs)
    assert resp.usage.prompt_tokens > 5
    assert "".join(t.token for t in choice.logprobs) == choice.text
    for tok in choice.logprobs:
        assert type(tok.logprob) is float and math.isfinite(tok.logprob) and tok.logprob <= 0.0
        assert len(tok.top) == 5
        tops = [a.logprob for a in tok.top]
        assert all(type(v) is float for v in tops)
        assert tops == sorted(tops, reverse=True)
        # greedy decoding: the chosen token is the most likely one
        assert tok.logprob == pytest.approx(tops[0], abs=1e-9)
    # stdlib json, no default= hook: numpy scalars would raise here
    text = json.dumps(resp.model_dump())
    assert json.loads(text)["choices"][0]["logprobs"][0]["logprob"] == choice.logprobs[0].logprob
    assert resp.provider == "local" and resp.model == "smollm2-135m-instruct"


async def test_seeds_reproduce_and_differ(adapter) -> None:  # type: ignore[no-untyped-def]
    base = ChatRequest(messages=[user("Tell me a short story about a dragon.")], max_tokens=6,
                       temperature=1.0, n=3, seed=11)
    first = await adapter.chat(base)
    texts = [c.text for c in first.choices]
    assert len(set(texts)) > 1, f"three seeds gave one sample: {texts}"
    assert first.calls == 3
    # a later, separate call with the same seed reproduces its sample; and sample i of an
    # n-call is the sample_index=i call, so the cache may hold either shape
    second = await adapter.chat(base.model_copy(update={"n": 1, "sample_index": 1}))
    assert second.choices[0].text == texts[1]
    other = await adapter.chat(base.model_copy(update={"n": 1, "seed": 12345}))
    assert other.choices[0].text != texts[0]


async def test_top_p_cuts_the_nucleus(adapter) -> None:  # type: ignore[no-untyped-def]
    msgs = [user("Tell me a short story about a dragon.")]
    greedy = await adapter.chat(ChatRequest(messages=msgs, max_tokens=6))
    # a nucleus this small holds only the most likely token, so sampling at T=1 is greedy
    narrow = await adapter.chat(ChatRequest(messages=msgs, max_tokens=6, temperature=1.0, top_p=1e-6,
                                            n=2, seed=3))
    assert [c.text for c in narrow.choices] == [greedy.text, greedy.text]


async def test_stop_sequence_is_honoured(adapter) -> None:  # type: ignore[no-untyped-def]
    req = ChatRequest(messages=[user(ONE_SENTENCE)], max_tokens=20, logprobs=True)
    free = await adapter.chat(req)
    assert " is " in free.text, free.text  # precondition for the stop below
    stopped = await adapter.chat(req.model_copy(update={"stop": [" is "]}))
    assert stopped.text == free.text.split(" is ")[0]
    assert stopped.choices[0].finish_reason == "stop"
    assert "".join(t.token for t in stopped.choices[0].logprobs) == stopped.text


def reference_scores(model_path: Path, prefix: str, responses: list[str]) -> list[list[float]]:
    """log p(response tokens | prefix) for each response, straight from llama.cpp logits and numpy."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=2048, logits_all=True, verbose=False)
    out = []
    try:
        p = llm.tokenize(prefix.encode(), add_bos=False, special=True)
        for response in responses:
            r = llm.tokenize(response.encode(), add_bos=False, special=False)
            llm.reset()
            llm.eval(p + r)
            logits = np.array(llm.scores[len(p) - 1:len(p) + len(r) - 1], dtype=np.float64)
            peak = logits.max(1, keepdims=True)
            logsoftmax = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
            out.append([float(logsoftmax[i, t]) for i, t in enumerate(r)])
    finally:
        llm.close()
    return out


async def test_score_matches_direct_llama_computation(adapter, local_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    long_answer = " ".join(f"Fact {i}: Paris is the capital of France." for i in range(20))  # > 128 tokens
    # a generation first, so any state it leaves behind would show up in the score
    await adapter.chat(ChatRequest(messages=[Message(role="system", content=SYSTEM), user(QUESTION)],
                                   max_tokens=4))
    got = []
    for answer in (ANSWER, long_answer):
        resp = await adapter.chat(ChatRequest(
            mode="score", messages=[Message(role="system", content=SYSTEM), user(QUESTION), assistant(answer)],
            logprobs=True, top_logprobs=3))
        assert resp.choices[0].text == answer
        assert "".join(t.token for t in resp.choices[0].logprobs) == answer
        for tok in resp.choices[0].logprobs:
            assert len(tok.top) == 3 and tok.top[0].logprob >= tok.logprob - 1e-9
        assert resp.usage.completion_tokens == 0
        assert resp.usage.prompt_tokens > len(resp.choices[0].logprobs)
        got.append([t.logprob for t in resp.choices[0].logprobs])
    chatml = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
              "<|im_start|>assistant\n")
    expected = await asyncio.to_thread(reference_scores, local_model_path, chatml, [ANSWER, long_answer])
    assert len(got[1]) > 128, "the long answer should span more than one chunk of rows"
    for g, e in zip(got, expected, strict=True):
        assert len(g) == len(e)
        assert g == pytest.approx(e, abs=1e-4)


def reference_end_logprob(model_path: Path, prefix: str, response: str) -> float:
    """log p(<|im_end|> | prefix + response), straight from llama.cpp logits and numpy."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=2048, logits_all=True, verbose=False)
    try:
        tokens = llm.tokenize(prefix.encode(), add_bos=False, special=True)
        tokens += llm.tokenize(response.encode(), add_bos=False, special=False)
        (end,) = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        llm.eval(tokens)
        row = np.array(llm.scores[len(tokens) - 1], dtype=np.float64)
        return float(row[end] - row.max() - np.log(np.exp(row - row.max()).sum()))
    finally:
        llm.close()


async def test_score_says_whether_the_text_is_finished(adapter, local_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    def req(answer: str) -> ChatRequest:
        return ChatRequest(mode="score", messages=[Message(role="system", content=SYSTEM), user(QUESTION),
                                                   assistant(answer)], logprobs=True)

    async def end(answer: str) -> float:
        value = (await adapter.chat(req(answer))).choices[0].end_logprob
        assert value is not None and value <= 0.0
        return value

    whole, bare, cut = await end(ANSWER), await end("Paris"), await end("The capital of France is")
    assert whole > -10.0 and bare > -10.0
    assert cut < min(whole, bare) - 5.0, (whole, bare, cut)
    chatml = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
              "<|im_start|>assistant\n")
    # after a full stop nearly all the mass is the template's end-of-turn token, <|im_end|>
    direct = await asyncio.to_thread(reference_end_logprob, local_model_path, chatml, ANSWER)
    assert direct - 1e-4 <= whole <= direct + 0.05
    # a bare answer: <|im_end|> alone is unlikely (the model wants a full stop first), yet it is finished
    bare_direct = await asyncio.to_thread(reference_end_logprob, local_model_path, chatml, "Paris")
    assert bare_direct < bare - 3.0, (bare_direct, bare)
    # generated text carries no end probability: it is a property of scoring given text
    generated = await adapter.chat(ChatRequest(messages=[user(QUESTION)], max_tokens=4))
    assert generated.choices[0].end_logprob is None


async def test_score_prefers_the_matching_prompt_and_supports_pmi(adapter) -> None:  # type: ignore[no-untyped-def]
    def req(*messages: Message) -> ChatRequest:
        return ChatRequest(mode="score", messages=list(messages), logprobs=True)

    own = await adapter.chat(req(user(QUESTION), assistant(ANSWER)))
    other = await adapter.chat(req(user("How do I bake sourdough bread at home?"), assistant(ANSWER)))
    bare = await adapter.chat(req(assistant(ANSWER)))  # unconditional: no prompt at all
    assert total(own) > total(other) + 1.0
    assert total(own) > total(bare), "the right question should raise the answer's likelihood (PMI > 0)"
    assert len(bare.choices[0].logprobs) == len(own.choices[0].logprobs)
    assert all(math.isfinite(t.logprob) for t in bare.choices[0].logprobs)
    # scoring is stateless: the same request again gives the same numbers
    assert total(await adapter.chat(req(user(QUESTION), assistant(ANSWER)))) == total(own)


async def test_long_inputs(local_model_path: Path) -> None:
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    small = LocalLlamaAdapter(model_path=local_model_path, n_ctx=128)
    long_prompt = "Please read this carefully. " * 60  # ~ 300 tokens
    scored = await small.chat(ChatRequest(mode="score", messages=[user(long_prompt), assistant(ANSWER)],
                                          logprobs=True))
    assert any("truncated from the left" in n for n in scored.notes), scored.notes
    assert scored.usage.prompt_tokens == 128
    assert len(scored.choices[0].logprobs) == 7
    with pytest.raises(BadRequest, match="context"):
        await small.chat(ChatRequest(mode="score", messages=[user(QUESTION), assistant(long_prompt)]))
    with pytest.raises(BadRequest, match="context"):
        await small.chat(ChatRequest(messages=[user(long_prompt)], max_tokens=4))
    near = await small.chat(ChatRequest(messages=[user("word " * 60)], max_tokens=64))
    assert any("max_tokens cut" in n for n in near.notes), near.notes


async def test_event_loop_keeps_running_during_a_call(adapter) -> None:  # type: ignore[no-untyped-def]
    await adapter.load()
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    try:
        await adapter.chat(ChatRequest(messages=[user(QUESTION)], max_tokens=12))
    finally:
        done.set()
        await task
    # a blocking call would have let the ticker run at most once while it ran
    assert ticks - before > 3, ticks - before


async def test_concurrent_calls_are_serialised_and_correct(adapter) -> None:  # type: ignore[no-untyped-def]
    reqs = [ChatRequest(mode="score", messages=[user(q), assistant(ANSWER)], logprobs=True)
            for q in (QUESTION, "Name a city in France.", "What is 2 + 2?")]
    reqs.append(ChatRequest(messages=[user(QUESTION)], max_tokens=5, logprobs=True))
    together = await asyncio.gather(*(adapter.chat(r) for r in reqs))
    one_by_one = [await adapter.chat(r) for r in reqs]
    assert [r.model_dump() for r in together] == [r.model_dump() for r in one_by_one]


async def test_capabilities_and_gguf_as_model(local_model_path: Path) -> None:
    from clearapi.adapters.base import Adapter
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    a = LocalLlamaAdapter(model=str(local_model_path))
    assert isinstance(a, Adapter)
    assert a.model_path == local_model_path
    caps = a.capabilities
    assert caps.logprobs and caps.max_top_logprobs == 20 and caps.n and caps.seed and caps.score_given_text
    assert not caps.batch
    await a.aclose()
    await a.aclose()  # idempotent
    with pytest.raises(ConfigError, match="closed"):
        await a.chat(ChatRequest(messages=[user("hi")], max_tokens=1))


def test_missing_model_file_names_path_and_install_hint(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError) as info:
        LocalLlamaAdapter(model_path=missing)
    assert str(missing) in str(info.value) and "pip install 'clearapi[local]'" in str(info.value)
    with pytest.raises(ConfigError, match="not found"):  # how --model-path arrives via create_adapter
        LocalLlamaAdapter(model=str(tmp_path / "weights.bin"))
    monkeypatch.setenv("CLEARAPI_MODEL_PATH", str(missing))
    with pytest.raises(ConfigError, match="CLEARAPI_MODEL_PATH"):
        LocalLlamaAdapter()


def test_missing_llama_cpp_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from clearapi.adapters.local_llama import LocalLlamaAdapter

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an absent package looks like to import
    with pytest.raises(ConfigError, match=r"llama-cpp-python.*pip install 'clearapi\[local\]'"):
        LocalLlamaAdapter()


async def test_create_adapter_builds_the_local_adapter() -> None:
    from clearapi.adapters import create_adapter
    from clearapi.adapters.local_llama import LocalLlamaAdapter
    from clearapi.profiles import load_profile

    adapter = create_adapter(load_profile("local"))
    assert isinstance(adapter, LocalLlamaAdapter)
    resp = await adapter.chat(ChatRequest(mode="score", messages=[user(QUESTION), assistant(ANSWER)]))
    assert resp.provider == "local" and len(resp.choices[0].logprobs) == 7
