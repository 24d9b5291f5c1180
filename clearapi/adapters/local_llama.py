"""The embedded local provider: llama-cpp-python in this process, no network.

It is the one provider that can *score a given response* (``mode="score"``): the
teacher-forced log-probability of every token of the final assistant message, given the
conversation before it under the model's chat template. Hosted chat APIs cannot do that,
and the CLEAR method leans on it for a likelihood signal.

Sampling follows hosted-API semantics (temperature and top_p only, none of llama.cpp's
top-k / min-p filters) and is done here with a seeded numpy generator, from the same logits
the logprobs are read from; logprobs are those of the model's raw distribution, as OpenAI
reports them. ``n`` is honoured by sampling n times from one prompt evaluation with seeds
``seed + sample_index + i``, so one call with ``n=3`` returns exactly what three calls with
``sample_index`` 0, 1, 2 would.

Calls share the evaluation of their common prompt prefix (`clearapi.adapters.local_kv`), in a
way that gives the same logits as evaluating each prompt from an empty context.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any

from clearapi.adapters.local_kv import common_prefix
from clearapi.adapters.local_model import (
    LoadedModel,
    ModelSettings,
    load_model,
    require_llama_cpp,
    resolve_model_path,
)
from clearapi.errors import BadRequest, ClearAPIError, ConfigError, TransientError
from clearapi.records import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    TokenLogprob,
    TopLogprob,
    Usage,
)

__all__ = ["LOCAL_CAPABILITIES", "LocalLlamaAdapter"]

LOCAL_CAPABILITIES = Capabilities(
    logprobs=True, max_top_logprobs=20, n=True, max_n=128, seed=True, score_given_text=True, batch=False
)


class LocalLlamaAdapter:
    """`Adapter` over an in-process GGUF model (SmolLM2-135M-Instruct by default).

    `model` may name a GGUF file (ends in ``.gguf``, contains a path separator, or is a file), which is how
    ``--model path.gguf`` reaches us through the generic factory; `model_path` says it
    explicitly. Construction checks the file and llama-cpp-python are there (a clear
    `ConfigError` up front); the model itself loads on first use, once per process.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        seed: int = 0,
        n_threads: int | None = None,
        capabilities: Capabilities | None = None,
        provider: str = "local",
    ) -> None:
        if model_path is None and model is not None and _looks_like_path(model):
            model_path = model
            model = None
        require_llama_cpp()
        path = resolve_model_path(model_path)
        settings = ModelSettings(path=path, n_ctx=n_ctx, seed=seed)
        if n_threads is not None:
            settings = dataclasses.replace(settings, n_threads=n_threads)
        self._settings = settings
        self._model_name = model
        self._provider = provider
        self._capabilities = capabilities or LOCAL_CAPABILITIES
        self._loaded: LoadedModel | None = None
        self._closed = False

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def model_path(self) -> Path:
        return self._settings.path

    async def load(self) -> LoadedModel:
        """Load (or find already loaded) the model; chat() does this on first use."""
        if self._closed:
            raise ConfigError("the local adapter is closed")
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(load_model, self._settings)
        return self._loaded

    async def chat(self, request: ChatRequest) -> ChatResponse:
        model = await self.load()
        if request.mode == "score":
            response = await model.run(_score, model, request)
        else:
            response = await model.run(_generate, model, request)
        response.model = self._model_name or model.name
        response.provider = self._provider
        return response

    async def aclose(self) -> None:
        """Forget the model; it stays loaded for other adapters in this process (one load per process)."""
        self._closed = True
        self._loaded = None


def _looks_like_path(model: str) -> bool:
    return model.endswith(".gguf") or "/" in model or os.sep in model or Path(model).is_file()


# --- work done on the model's own thread -------------------------------------------------


def _as_dicts(messages: list[Message]) -> list[dict[str, str]]:
    # Chat templates of small open models know system/user/assistant; "developer" is OpenAI's
    # newer name for system.
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]


def _translate(exc: Exception) -> ClearAPIError:
    if isinstance(exc, ClearAPIError):
        return exc
    if isinstance(exc, ValueError):
        return BadRequest(f"local model rejected the request: {exc}")
    return TransientError(f"local model failed: {type(exc).__name__}: {exc}", reason="local")


def _generate(model: LoadedModel, request: ChatRequest) -> ChatResponse:
    try:
        return _generate_unsafe(model, request)
    except Exception as exc:
        raise _translate(exc) from exc


def _score(model: LoadedModel, request: ChatRequest) -> ChatResponse:
    try:
        return _score_unsafe(model, request)
    except Exception as exc:
        raise _translate(exc) from exc


def _generate_unsafe(model: LoadedModel, request: ChatRequest) -> ChatResponse:
    prompt = model.prompt_tokens(_as_dicts(request.messages))
    room = model.n_ctx - len(prompt)
    if room < 1:
        raise BadRequest(
            f"prompt is {len(prompt)} tokens, which does not fit the local model's context of "
            f"{model.n_ctx} tokens; shorten it or raise n_ctx"
        )
    notes: list[str] = []
    budget = min(request.max_tokens, room)
    if budget < request.max_tokens:
        notes.append(f"max_tokens cut to {budget} to fit the {model.n_ctx}-token context")
    choices: list[Choice] = []
    completion_tokens = 0
    # once: every sample starts from these logits
    first = model.kv.evaluate(prompt, len(prompt) - 1, marks=_marks(model, request, prompt))[-1]
    for i in range(request.n):
        seed = (request.seed + request.sample_index + i) if request.seed is not None else secrets.randbits(31)
        ids, finish, rows = _sample(model, prompt, first, request, seed, budget)
        completion_tokens += len(ids)
        choices.append(_choice(model, rows, ids, finish, request))
    return ChatResponse(
        choices=choices,
        usage=Usage(prompt_tokens=len(prompt), completion_tokens=completion_tokens),
        calls=request.n,
        notes=notes,
    )


def _sample(model: LoadedModel, prompt: list[int], first: Any, request: ChatRequest, seed: int,
            budget: int) -> tuple[list[int], str, list[Any]]:
    """Token ids of one sample, its finish reason and the logits each token was drawn from,
    starting from the evaluated prompt (`first`: the logits after it).

    Sampling is ours (numpy, seeded), from the same logits the logprobs are read from, so
    a sample depends only on the request and its seed: the prompt's logits come from one
    full-batch evaluation and every later token from a one-token step, whether this is the
    first sample of a call or the fifth.
    """
    import llama_cpp
    import numpy as np

    llama = model.llama
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    stops = [s.encode("utf-8") for s in request.stop or () if s]
    rng = np.random.default_rng(seed)
    model.kv.rewind(len(prompt))  # forget the previous sample; the prompt's cache stays
    ids: list[int] = []
    rows = [first]
    while True:
        token = _pick(rows[-1], request.temperature, request.top_p or 1.0, rng)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return ids, "stop", rows
        ids.append(token)
        if stops:
            text = bytes(llama.detokenize(ids))  # once per token, not once per stop string
            if any(s in text for s in stops):
                return ids, "stop", rows
        if len(ids) >= budget:
            return ids, "length", rows
        rows.append(model.kv.step(token, len(prompt) + len(ids) - 1))


def _pick(logits: Any, temperature: float, top_p: float, rng: Any) -> int:
    """Greedy at temperature 0, else a draw from softmax(logits / T) cut to the top_p nucleus.

    The draw walks the probabilities from the largest down, ties by token id. Sorting the
    values alone gives the same cumulative sums as sorting the ids (tied values are equal), and
    it is over twice as fast as a stable argsort of the vocabulary; the drawn rank's id is then
    found among the ids holding that value.
    """
    import numpy as np

    if temperature == 0.0:
        return int(np.argmax(logits))
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    ranked = np.sort(p)[::-1]
    cumulative = np.cumsum(ranked)
    if top_p < 1.0:
        cumulative = cumulative[:int(np.searchsorted(cumulative, top_p)) + 1]
    at = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(cumulative) - 1)
    value = ranked[at]
    first = int(np.searchsorted(-ranked, -value, side="left"))  # the rank where this value's ties begin
    return int(np.flatnonzero(p == value)[at - first])


def _choice(model: LoadedModel, rows: list[Any], ids: list[int], finish: str,
            request: ChatRequest) -> Choice:
    llama = model.llama
    raw = bytes(llama.detokenize(ids))
    cut = len(raw)
    for stop in request.stop or ():
        at = raw.find(stop.encode("utf-8")) if stop else -1
        if at >= 0:
            cut = min(cut, at)
    text = raw[:cut].decode("utf-8", errors="ignore")
    logprobs = None
    if request.logprobs:
        kept, used = [], 0
        for token in ids:  # tokens wholly inside the returned text (a stop string is not returned)
            used += len(bytes(llama.detokenize([token])))
            if used > cut:
                break
            kept.append(token)
        logprobs = _token_logprobs(model, rows, kept, request.top_logprobs)
    return Choice(text=text, logprobs=logprobs, finish_reason=finish)


_ROWS_PER_CHUNK = 128  # float64 copies of 128 x 49k logits: ~50 MB at a time, however long the text


def _token_logprobs(model: LoadedModel, logits: Any, tokens: list[int], top: int) -> list[TokenLogprob]:
    """Log-softmax of the logits rows: row ``j`` predicts ``tokens[j]``."""
    out: list[TokenLogprob] = []
    for at in range(0, len(tokens), _ROWS_PER_CHUNK):
        out += _chunk_logprobs(model.llama, logits[at:at + _ROWS_PER_CHUNK], tokens[at:at + _ROWS_PER_CHUNK], top)
    return out


def _chunk_logprobs(llama: Any, logits: Any, tokens: list[int], top: int) -> list[TokenLogprob]:
    import numpy as np

    rows = np.asarray(logits[:len(tokens)], dtype=np.float64)
    peak = rows.max(axis=1, keepdims=True)
    logz = peak[:, 0] + np.log(np.exp(rows - peak).sum(axis=1))
    picked = rows[np.arange(len(tokens)), np.asarray(tokens)] - logz
    best: Any = None
    if top:
        part = np.argpartition(-rows, top - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(rows, part, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
    out: list[TokenLogprob] = []
    for j, token in enumerate(tokens):
        alts: list[TopLogprob] = []
        if best is not None:
            alts = [TopLogprob(token=_piece(llama, int(t)), logprob=min(0.0, float(rows[j, t] - logz[j])))
                    for t in best[j]]
        # plain floats: numpy scalars would break JSON and the cache
        out.append(TokenLogprob(token=_piece(llama, token), logprob=min(0.0, float(picked[j])), top=alts))
    return out


def _end_logprob(row: Any, end_of_turn: int | None, closers: list[int]) -> float | None:
    """log P(the text is finished at `row`): the turn ends next, or a sentence-closing mark comes.

    The closing mark counts because a small model almost never ends a turn without one: after
    a bare "William Shakespeare" it gives the end of turn e^-20 but a full stop about 0.25, while
    after "The official language of Italy is" both are below e^-10.
    """
    import numpy as np

    if end_of_turn is None:
        return None
    logits = np.asarray(row, dtype=np.float64)
    peak = logits.max()
    probs = np.exp(logits - peak)
    total = probs.sum()
    finished = probs[end_of_turn] + (probs[np.asarray(closers)].sum() if closers else 0.0)
    return min(0.0, float(np.log(max(finished / total, 1e-300))))


def _piece(llama: Any, token: int) -> str:
    return bytes(llama.detokenize([token])).decode("utf-8", errors="replace")


def _score_unsafe(model: LoadedModel, request: ChatRequest) -> ChatResponse:
    llama = model.llama
    text = request.messages[-1].content
    target = model.text_tokens(text)
    prefix = model.prompt_tokens(_as_dicts(request.messages[:-1]))
    if not prefix:  # a template that renders nothing: condition on BOS at least
        bos = llama.token_bos()
        if bos < 0:
            raise BadRequest("the local model's chat template renders an empty prompt and it has no BOS token")
        prefix = [bos]
    notes: list[str] = []
    room = model.n_ctx - len(target)
    if room < 1:
        raise BadRequest(
            f"the response to score is {len(target)} tokens, which does not fit the local model's "
            f"context of {model.n_ctx} tokens"
        )
    if len(prefix) > room:
        notes.append(f"prompt truncated from the left: kept the last {room} of {len(prefix)} tokens to fit "
                     f"the {model.n_ctx}-token context")
        prefix = prefix[-room:]
    tokens = prefix + target
    # logits of the response span only: row j predicts target[j], the last row what follows it
    rows = model.kv.evaluate(tokens, len(prefix) - 1, marks=_marks(model, request, prefix))
    logprobs = _token_logprobs(model, rows[-len(target) - 1:], target, request.top_logprobs)
    end = _end_logprob(rows[-1], model.end_of_turn, model.closing_punctuation)
    return ChatResponse(
        choices=[Choice(text=text, logprobs=logprobs, finish_reason="scored", end_logprob=end)],
        usage=Usage(prompt_tokens=len(tokens), completion_tokens=0),
        calls=1,
        notes=notes,
    )


def _marks(model: LoadedModel, request: ChatRequest, prompt: list[int]) -> list[int]:
    """Prefixes of `prompt` to keep for later calls: where its turns end (`_boundaries`), and
    two tokens before its end. The row's other calls with this prompt (samples, teacher-forced
    passes of the response) start there: the cache backs them off from the end, since a call
    never evaluates a single token and reads the logits of two positions at least, so a copy
    of the whole prompt would never be used. The baseline's end is kept for answers only: a
    baseline prompt is cut from the answer's prompt, never from another baseline's, and on long
    passages each copy is megabytes that would push out ones still needed."""
    baseline = _baseline_end(model, request, prompt) if request.mode == "generate" else []
    return [*_boundaries(model, request, prompt), *baseline, len(prompt) - 2]


def _baseline_end(model: LoadedModel, request: ChatRequest, tokens: list[int]) -> list[int]:
    """Where PMI's baseline prompt for this prompt (`prompts.baseline_prompt`: the last user turn
    without its last part) stops sharing `tokens`: an instruction without its passage, a passage
    without its question. On a long passage that is most of the prompt, and its pass comes later.
    The method's own rule, not a guess at paragraphs, so no copy is kept that no call will use."""
    from clearapi.clear.prompts import baseline_prompt

    messages = list(request.messages)
    cut = baseline_prompt(messages)
    if len(cut) != len(messages):  # a one-part prompt: its baseline is a neutral prompt
        return []
    return [common_prefix(model.prompt_tokens(_as_dicts(cut)), tokens)]


def _boundaries(model: LoadedModel, request: ChatRequest, tokens: list[int]) -> list[int]:
    """Where turns of the conversation before the last user turn end in `tokens`: prefixes
    other prompts share, saved for them. The last (system prompt and all demonstrations) is
    shared by the row's other calls; the first two (the system prompt; it and the first
    demonstration) by other rows' calls, since demonstrations are listed in file order and
    drawn from a small pool, so many rows open with the same one."""
    messages = request.messages[:-1] if request.mode == "score" else request.messages
    turns = [i for i, m in enumerate(messages) if m.role == "user" and i > 0]
    return [common_prefix(model.prompt_tokens(_as_dicts(messages[:i])), tokens)
            for i in sorted({*turns[:2], *turns[-1:]})]
