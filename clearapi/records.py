"""The data that crosses clearapi's boundaries, as pydantic models.

A row flows one way: an input line becomes an `Example` (or a `Reject`); the method turns
it into `ChatRequest`s; adapters answer with `ChatResponse`s; the method condenses them into
a `Score`; the policy turns scores into a `Decision`; writers emit the lot.

Models that cross a process or disk boundary (`ChatRequest`, `ChatResponse`, `Score`,
`Reject`) are strict about unknown fields so a typo in a caller's code fails loudly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Action",
    "Candidate",
    "Capabilities",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "Decision",
    "Example",
    "FailedRow",
    "Message",
    "RateLimitInfo",
    "Reject",
    "Role",
    "RowCounts",
    "RunStats",
    "Score",
    "Summary",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
Action = Literal["keep", "drop", "correct"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Message(_Strict):
    """One chat turn, its content reduced to text (what the models read)."""

    role: Role
    content: str

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content is empty")
        return v


class Example(_Strict):
    """One input row under review.

    `messages` ends with the assistant response being judged (`response`); everything
    before it is the prompt. `raw` keeps the row exactly as read so writers can preserve
    keys clearapi does not understand (tools, metadata, weights).
    """

    id: str
    line: int = Field(ge=1, description="1-based line (or CSV record) number in the input file")
    messages: list[Message] = Field(min_length=2)
    weight: int | None = None
    source_format: str = "openai_chat"
    raw: dict[str, Any] = Field(default_factory=dict)
    consumed_keys: list[str] = Field(
        default_factory=list,
        description="keys of `raw` the input format turned into `messages`; writers carry over the rest "
                    "(empty: the format's usual keys)")

    @model_validator(mode="after")
    def _ends_with_assistant(self) -> Example:
        if self.messages[-1].role != "assistant":
            raise ValueError("the last message must be the assistant response under review")
        if not any(m.role == "user" for m in self.messages[:-1]):
            raise ValueError("there is no user turn before the assistant response")
        return self

    @property
    def prompt_messages(self) -> list[Message]:
        return self.messages[:-1]

    @property
    def response(self) -> str:
        return self.messages[-1].content

    @property
    def prompt_text(self) -> str:
        """The last user turn: what a judge prompt quotes as 'the question'."""
        return next(m.content for m in reversed(self.messages[:-1]) if m.role == "user")


class ChatRequest(_Strict):
    """A provider-neutral request. Every field here is part of the cache key except `tag`.

    `mode="score"` asks for the token log-probabilities of the final assistant message as
    given (teacher forcing) instead of generating; only adapters whose capabilities say
    `score_given_text` accept it.
    """

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    mode: Literal["generate", "score"] = "generate"
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    seed: int | None = None
    stop: list[str] | None = None
    sample_index: int = Field(default=0, ge=0, description="distinguishes repeated samples in the cache")
    tag: str | None = Field(default=None, description="what the call is for, for accounting; not cached")

    @model_validator(mode="after")
    def _coherent(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=True")
        if self.mode == "score" and self.messages[-1].role != "assistant":
            raise ValueError("mode='score' needs the text to score as the final assistant message")
        return self


class TopLogprob(_Strict):
    token: str
    logprob: float


class TokenLogprob(_Strict):
    """One token and its log-probability. Alternatives are in `top`.

    Sentinels some servers send for "not in the list" (e.g. -9999) are converted to
    `None` by adapters: a sentinel is not a probability.
    """

    token: str
    logprob: float | None
    top: list[TopLogprob] = Field(default_factory=list)

    @field_validator("logprob")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is None:
            return None
        v = float(v)
        if math.isnan(v) or v > 1e-6:
            raise ValueError(f"logprob must be <= 0, got {v}")
        return v


class Choice(_Strict):
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    #: score mode: log-probability that `text` is finished — the turn ends right after it, or
    #: a sentence-closing mark comes next (a bare "Paris" is finished). A response cut off
    #: mid-sentence is one the model is nearly sure goes on, which no per-token average of the
    #: text itself can show. None where the provider cannot say.
    end_logprob: float | None = None


class Usage(_Strict):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens)


class RateLimitInfo(_Strict):
    """What a provider's rate-limit headers said (OpenAI ``x-ratelimit-*``, Anthropic
    ``anthropic-ratelimit-*``); the engine learns its limits from these. Never cached."""

    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests_s: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens_s: float | None = None


class ChatResponse(_Strict):
    """A normalised answer. `notes` records quiet server quirks the adapter worked around
    (e.g. ``"n ignored: 4 extra calls"``, ``"top_logprobs capped at 5"``)."""

    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    provider: str = ""
    cached: bool = False
    calls: int = Field(default=1, ge=0, description="HTTP/model calls this answer took")
    notes: list[str] = Field(default_factory=list)
    ratelimit: RateLimitInfo | None = Field(default=None, description="from response headers; not cached")

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class Capabilities(_Strict):
    """What a provider/model can do; the method plans its calls from this."""

    logprobs: bool = False
    max_top_logprobs: int = Field(default=0, ge=0, le=20)
    n: bool = False
    max_n: int = Field(default=1, ge=1)
    seed: bool = False
    score_given_text: bool = False
    batch: bool = False


@dataclass(frozen=True)
class Candidate:
    """The model's own answer y′, how sure the model is of it, and how much it agrees with y."""

    text: str
    confidence: float
    agreement: float


class Decision(_Strict):
    action: Action
    reason: str
    correction: str | None = None


class Score(_Strict):
    """One line of `scores.jsonl`: every input row that was not rejected gets one.

    `signals` holds each signal's value in [0, 1] (None where it could not be computed);
    `methods` says how each was obtained (e.g. ``"self_rating": "logprobs"`` or
    ``"sampled x5"``) so a reader can tell comparable numbers apart.
    """

    line: int = Field(ge=1)
    id: str
    prompt: str | None = Field(default=None, description="the last user turn, for reading scores alone")
    response: str | None = Field(default=None, description="the dataset's response under review")
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    signals: dict[str, float | None] = Field(default_factory=dict)
    methods: dict[str, str] = Field(default_factory=dict)
    action: Action | None = None
    reason: str | None = None
    correction: str | None = None
    correction_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    details: dict[str, Any] = Field(default_factory=dict)
    candidate: Candidate | None = Field(default=None, description="the model's own answer y′, if any")
    decision: Decision | None = Field(default=None, description="what the policy decided, and why")
    calls: int = 0
    tokens: int = 0


class Reject(_Strict):
    """An input line that could not become an `Example`, and why (one line of `rejects.jsonl`)."""

    file: str
    line: int = Field(ge=1)
    field: str | None = None
    error: str
    raw: str | None = Field(default=None, description="the offending line, truncated to 500 chars")

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.file}:{self.line}{field}: {self.error}"


class FailedRow(_Strict):
    """A row the API could not answer after every retry (one line of `failed.jsonl`). Not a
    judgement on the row: re-running the same command asks again, the rest from the cache."""

    file: str
    line: int = Field(ge=1)
    id: str | None = None
    error_type: str = Field(description="the exception's class, e.g. TransientError or BadRequest")
    error: str = Field(description="'<type>: <message>', the message redacted of keys")
    attempts: int | None = Field(default=None, description="tries of the call that failed, if known")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.error}"


class RunStats(BaseModel):
    """What the engine did, for `summary.json`, the progress bar and the report."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(default=0, description="HTTP/model calls actually sent, retries included")
    logical_calls: int = Field(default=0, description="engine.chat() calls, cached or not")
    cache_hits: int = 0
    retries: dict[str, int] = Field(default_factory=dict, description="retries by reason")
    rate_limited: int = Field(default=0, description="429 answers received")
    failures: int = Field(default=0, description="calls that failed after all retries")
    batches: int = Field(default=0, description="provider batch jobs submitted (batch mode)")
    batch_requests: int = Field(default=0, description="requests answered through batch jobs (in `requests`)")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    wall_seconds: float = 0.0
    learned_rpm: float | None = None
    learned_tpm: float | None = None


class RowCounts(BaseModel):
    """Every input row lands in exactly one bucket: rows == kept + corrected + dropped + rejected + failed."""

    model_config = ConfigDict(extra="forbid")

    rows: int = 0
    kept: int = 0
    corrected: int = 0
    dropped: int = 0
    rejected: int = 0
    #: rows whose API calls failed after every retry (failed.jsonl); a re-run asks them again
    failed: int = 0

    @property
    def adds_up(self) -> bool:
        return self.rows == self.kept + self.corrected + self.dropped + self.rejected + self.failed


class Summary(BaseModel):
    """`summary.json`."""

    model_config = ConfigDict(extra="forbid")

    clearapi_version: str
    input: str
    output_dir: str
    provider: str
    model: str
    started_at: str
    finished_at: str | None = None
    completed: bool = Field(default=True, description="False when a fatal error stopped the run early")
    stopped_reason: str | None = None
    counts: RowCounts = Field(default_factory=RowCounts)
    settings: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = Field(default=None, description="the confidence cut actually applied")
    calibration: dict[str, Any] | None = Field(
        default=None, description="the dataset's calibrated cut and the estimated share of clean rows dropped "
                                  "and of corrupted rows kept at the cut applied")
    warnings: list[str] = Field(default_factory=list, description="what a user should know before using the output")
    engine: RunStats = Field(default_factory=RunStats)
    judges: dict[str, RunStats] = Field(default_factory=dict,
                                        description="each separate judge's own engine: calls, tokens, cost")
    signals: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-signal notes: weight, method")
    outputs: dict[str, str] = Field(default_factory=dict, description="file name per output kind")
