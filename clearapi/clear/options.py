"""`CurateOptions`: every option of a run, declared once.

Each field carries its command-line flag and help (`flag`). Everything else derives from the
fields, so a new option is one new field:

- `clearapi.cli.options` builds the flags of ``clearapi curate`` and ``clearapi score`` (and so of
  ``--dry-run``) from them, and reads the parsed flags back into options;
- ``clearapi.curate(..., **options)``, `score` and `estimate` accept exactly the field names
  (`CurateOptions.from_kwargs`);
- summary.json's ``settings`` lists every field (`CurateOptions.settings`) except the `SECRETS`.
"""

from __future__ import annotations

import difflib
import functools
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from clearapi.clear.judge import JudgeSpec
from clearapi.clear.pipeline import ScoringPlan
from clearapi.clear.policy import DEFAULT_CORRECT_THRESHOLD, DEFAULT_ETA, CurationAction, PolicySettings
from clearapi.errors import ConfigError
from clearapi.redact import redact_url

__all__ = ["GROUPS", "SECRETS", "CurateOptions", "Flag"]

#: options with no command-line flag and no place in summary.json: API keys. A flag would put a key
#: in the shell's history and in ``ps``; the CLI reads keys from the profile's environment variable.
SECRETS: frozenset[str] = frozenset({"api_key", "judge_api_key"})

#: the subcommands whose flags an option is, by default: both take the scoring options
BOTH = ("curate", "score")

#: titles and descriptions of the argument groups of ``--help`` (`Flag.group`)
GROUPS: dict[str, str] = {
    "separate judge": "judge correction candidates with another model (its own engine, limits and cost); "
                      "repeat --judge-provider for a panel",
}


@dataclass(frozen=True)
class Flag:
    """How an option is spelled on the command line. Its argparse type, action and choices come from
    the field's annotation (`clearapi.cli.options`): int, float, str, a Literal (choices), a bool
    (``--x``, or ``--x/--no-x`` when its default is None) or a list (the flag repeats)."""

    help: str
    #: the flag (default: ``--`` and the field's name with dashes)
    name: str | None = None
    metavar: str | None = None
    #: the subcommands that take it
    commands: tuple[str, ...] = BOTH
    #: an argument group's title (a key of `GROUPS`)
    group: str | None = None
    #: options sharing this name are mutually exclusive on the command line
    exclusive: str | None = None
    #: (flag, help) of a second flag that sets the option to False, exclusive with the first
    off: tuple[str, str] | None = None
    #: what a given flag's value is read as, where the annotation allows more than one (a path or a bool)
    as_type: Callable[[str], Any] | None = None
    #: a URL: summary.json shows it without credentials
    url: bool = False

    def flag(self, name: str) -> str:
        return self.name or "--" + name.replace("_", "-")


def flag(help: str, **spelling: Any) -> dict[str, Flag]:
    """A `CurateOptions` field's metadata: its command-line `Flag`."""
    return {"flag": Flag(help, **spelling)}


@dataclass
class CurateOptions:
    """Everything a run is configured by: ``clearapi.curate(input, out, **options)`` takes these names,
    and each is a flag of ``clearapi curate`` (or also of ``clearapi score``)."""

    provider: str = field(default="local", metadata=flag(
        "provider profile (default: local, the embedded model)"))
    model: str | None = field(default=None, metadata=flag("model name (default: the profile's)"))
    model_path: str | None = field(default=None, metadata=flag(
        "local provider: a GGUF model file", metavar="GGUF"))
    #: None: $CLEARAPI_THREADS, else the cores other processes leave idle
    threads: int | None = field(default=None, metadata=flag(
        "local provider: llama.cpp threads (default: $CLEARAPI_THREADS, else the idle cores)", metavar="N"))
    base_url: str | None = field(default=None, metadata=flag(
        "override the profile's API base URL", metavar="URL", url=True))
    api_key: str | None = field(default=None, repr=False)
    rpm: float | None = field(default=None, metadata=flag("requests per minute cap", metavar="N"))
    tpm: float | None = field(default=None, metadata=flag("tokens per minute cap", metavar="N"))
    max_concurrency: int | None = field(default=None, metadata=flag("calls in flight at most", metavar="N"))
    #: seconds one API request may take before it counts as a (retried) timeout
    timeout: float = field(default=120.0, metadata=flag(
        "per-request timeout (default: 120)", metavar="SECONDS"))
    #: failed attempts in a row (connection, timeout, 5xx) that stop the run; 0: never
    breaker: int = field(default=20, metadata=flag(
        "stop the run when N requests in a row fail to connect, time out or get a 5xx, with no success in "
        "between (default 20; 0 turns the circuit breaker off)", metavar="N"))
    #: True: the default cache file; a path: that file; False or None: no cache
    cache: str | Path | bool | None = field(default=True, metadata=flag(
        "response cache file (default: $CLEARAPI_CACHE or ~/.cache/clearapi/cache.sqlite)", metavar="PATH",
        as_type=str, off=("--no-cache", "do not read or write the response cache")))
    samples: int = field(default=4, metadata=flag(
        "sampled answers per row for observed consistency (default 4; 0 turns it off)", metavar="K"))
    #: ask the temperature-0 answer too (None: where the provider scores given text, i.e. self-hosted)
    best_answer: bool | None = field(default=None, metadata=flag(
        "also ask the model's temperature-0 answer (one more call per row) for consistency and as the "
        "correction candidate (default: on where the provider scores given text, i.e. self-hosted models; "
        "off on billed APIs, where the samples' medoid stands in)"))
    #: the dataset's rows shown before each answer/scoring prompt (None: 3 where self-hosted, else 0)
    demonstrations: int | None = field(default=None, metadata=flag(
        "show the model K of the dataset's own rows before each answer and scoring prompt, so it answers in "
        "the dataset's style (default: 3 where the provider scores given text, i.e. self-hosted models; 0 "
        "on billed APIs, where they lengthen every prompt)", metavar="K"))
    #: disjoint draws of them each row is asked under (None: 2 where self-hosted with demonstrations, else 1)
    demo_sets: int | None = field(default=None, metadata=flag(
        "ask each row under N different draws of demonstrations, each with its own answer at T=0 and "
        "scoring passes, and average the signals (default: 2 where the provider scores given text and "
        "there are demonstrations, else 1)", metavar="N"))
    seed: int = field(default=0, metadata=flag(
        "seed of the sampled answers and of the demonstrations each row is shown (default 0)", metavar="S"))
    max_cost: float | None = field(default=None, metadata=flag("stop before spending more", metavar="USD"))
    prompt_column: str | None = field(default=None, metadata=flag(
        "column (CSV, Parquet, datasets) or key (JSONL) holding the prompt", metavar="NAME"))
    response_column: str | None = field(default=None, metadata=flag(
        "column (CSV, Parquet, datasets) or key (JSONL) holding the response", metavar="NAME"))
    #: process only the first N input rows (demonstrations are still drawn from the file's first rows)
    limit: int | None = field(default=None, metadata=flag(
        "process only the first N rows of INPUT (to try a big file; demonstrations are still drawn from "
        "its first rows, so those rows score as in a full run)", metavar="N"))
    progress: bool | None = field(default=None, metadata=flag(
        "progress bar (default: on a terminal or in a notebook)"))
    #: where rows are scored: "local" (this process) or "ray" (an actor pool; `clearapi.executors`)
    executor: Literal["local", "ray"] = field(default="local", metadata=flag(
        "where rows are scored: this process, or a pool of Ray workers sharing one rate limit (needs "
        "clearapi[ray]; $RAY_ADDRESS names a cluster, else a local one is started)"))
    workers: int | None = field(default=None, metadata=flag("--executor ray: workers (default 2)", metavar="N"))
    action: CurationAction = field(default="both", metadata=flag(
        "filter: drop rows below the threshold; correct: replace them when the model's answer is "
        "confidently better, else keep; both (default): correct, else drop", commands=("curate",)))
    threshold: float | None = field(default=None, metadata=flag(
        "drop/correct rows with confidence below T (default: a cut calibrated to the dataset, where a row "
        "is more likely corrupted than clean; see summary.json)", metavar="T", commands=("curate",),
        exclusive="cut"))
    filter_fraction: float | None = field(default=None, metadata=flag(
        "drop/correct the lowest fraction F of rows instead (the CLEAR paper: 0.5)", metavar="F",
        commands=("curate",), exclusive="cut"))
    #: None: 0.6 for a text judge, `LIKELIHOOD_CORRECT_THRESHOLD` for the likelihood judge
    correct_threshold: float | None = field(default=None, metadata=flag(
        f"confidence the model's own answer needs to replace a response (default "
        f"{DEFAULT_CORRECT_THRESHOLD}; 0.3 where the scorer judges by likelihood)", metavar="G",
        commands=("curate",)))
    eta: float = field(default=DEFAULT_ETA, metadata=flag(
        f"pairwise-judgement confidence needed, in both orders (default {DEFAULT_ETA})", metavar="E",
        commands=("curate",)))
    #: a separate judge (a cheap scorer, a stronger judge): provider profile(s); a list is a panel
    judge_provider: str | list[str] | None = field(default=None, metadata=flag(
        "provider profile of the judge (default: the scorer judges; by likelihood where it scores given "
        "text)", metavar="NAME", commands=("curate",), group="separate judge"))
    #: the judge's model (one per judge provider, or one for all)
    judge_model: str | list[str] | None = field(default=None, metadata=flag(
        "the judge's model (once for every judge, or once per --judge-provider)", metavar="MODEL",
        commands=("curate",), group="separate judge"))
    judge_base_url: str | list[str] | None = field(default=None, metadata=flag(
        "the judge's API base URL (once, or once per --judge-provider)", metavar="URL",
        commands=("curate",), group="separate judge", url=True))
    judge_api_key: str | None = field(default=None, repr=False)
    #: how many of a panel's judges must prefer the correction (None: all of them)
    judge_majority: int | None = field(default=None, metadata=flag(
        "a panel corrects when M judges prefer the candidate at eta (default: all)", metavar="M",
        commands=("curate",), group="separate judge"))
    target: str = field(default="openai", metadata=flag(
        "curated.jsonl format (default openai chat; trl-sft, together, fireworks, bedrock, "
        "bedrock-nova...; hf: trl-sft rows plus a Hugging Face dataset folder OUTDIR/hf)",
        commands=("curate",)))
    #: batch mode: misses go through the provider's batch API at its batch price
    batch: bool = field(default=False, metadata=flag(
        "send the calls through the provider's batch API (OpenAI Batch, Anthropic Message Batches): about "
        "half the price, results within 24 h; an interrupted run resumes its batches", commands=("curate",)))
    batch_retry: Literal["online", "batch"] = field(default="online", metadata=flag(
        "where requests that failed or expired inside a batch are retried (default online)",
        commands=("curate",)))
    batch_poll_interval: float = field(default=10.0, metadata=flag(
        "first wait between polls of a batch; grows to 2 minutes (default 10)", name="--batch-poll",
        metavar="SECONDS", commands=("curate",)))

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> CurateOptions:
        """The options of ``curate(**options)``, checked: an unknown name is a TypeError, as for any call."""
        unknown = sorted(set(options) - set(_FIELDS))
        if unknown:
            hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, _FIELDS, 1))
                     else name for name in unknown]
            raise TypeError(f"unknown option(s): {', '.join(hints)}")
        opts = cls(**{name: _typed(name, value) for name, value in options.items()})
        opts.check()
        return opts

    def judges(self) -> list[JudgeSpec]:
        """The separate judges asked, in order (none: the scorer judges its own candidates)."""
        def listed(value: str | list[str] | None) -> list[str | None]:
            return [] if value is None else [value] if isinstance(value, str) else list(value)

        providers = [p for p in listed(self.judge_provider) if p]
        models, urls = listed(self.judge_model), listed(self.judge_base_url)
        if not providers:
            if models or urls or self.judge_majority is not None:
                raise ConfigError("--judge-model, --judge-base-url and --judge-majority need --judge-provider")
            return []
        for name, values in (("--judge-model", models), ("--judge-base-url", urls)):
            if len(values) > 1 and len(values) != len(providers):
                raise ConfigError(f"{name} given {len(values)} times for {len(providers)} judge providers: give it "
                                  "once (for every judge) or once per --judge-provider")
        if self.judge_majority is not None and not 1 <= self.judge_majority <= len(providers):
            raise ConfigError(f"judge majority must be between 1 and {len(providers)} (the judges), "
                              f"got {self.judge_majority}")

        def pick(values: list[str | None], i: int) -> str | None:
            return values[i] if len(values) > 1 else values[0] if values else None

        return [JudgeSpec(p, pick(models, i), pick(urls, i)) for i, p in enumerate(providers)]

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be 'local' or 'ray', got {self.executor!r}")
        if self.workers is not None and (self.workers < 1 or self.executor != "ray"):
            raise ConfigError(f"workers must be >= 1 and needs executor 'ray', got {self.workers}")
        if self.threshold is not None and self.filter_fraction is not None:
            raise ConfigError("give either --threshold or --filter-fraction, not both")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.filter_fraction is not None and not 0.0 <= self.filter_fraction <= 1.0:
            raise ConfigError(f"filter fraction must be in [0, 1], got {self.filter_fraction}")
        ScoringPlan.check_counts(samples=self.samples, demonstrations=self.demonstrations, demo_sets=self.demo_sets)
        PolicySettings(action=self.action, correct_threshold=self.correct_threshold or 0.0, eta=self.eta)
        self.judges()

    def settings(self) -> dict[str, Any]:
        """What goes into summary.json: every option but the `SECRETS`, URLs without credentials."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in SECRETS:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif (spec := f.metadata.get("flag")) is not None and spec.url:
                value = [redact_url(u) for u in value] if isinstance(value, list) else redact_url(value)
            out[f.name] = value
        out["threshold_rule"] = (
            f"filter fraction {self.filter_fraction}" if self.filter_fraction is not None
            else f"absolute {self.threshold}" if self.threshold is not None else "calibrated")
        return out


_FIELDS = {f.name: f for f in fields(CurateOptions)}


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(typing.get_type_hints(CurateOptions)[name])


def _typed(name: str, value: Any) -> Any:
    """`value` as the field's annotation reads it (``"4"`` for an int becomes 4, as the flag would
    read it); a value it cannot be is refused here, naming the option, not deep inside the run."""
    try:
        return _adapter(name).validate_python(value)
    except ValidationError as exc:
        if isinstance(value, os.PathLike):  # a path where the option is a string (model_path)
            return _typed(name, os.fspath(value))
        problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        shown = "***" if name in SECRETS else repr(value)
        raise ConfigError(f"option {name}={shown[:80]}: {problem}") from None
