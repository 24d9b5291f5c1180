"""Record a cassette: a fixed set of requests, sent through clearapi's OpenAI adapter and the
real openai SDK to a real endpoint, with every HTTP exchange captured.

Usage::

    python -m clearapi_testing.record --provider local --out cassettes/local.json
    python -m clearapi_testing.record --provider llamacpp-server --llama-server \\
        --out cassettes/llamacpp-server.json
    OPENAI_API_KEY=... python -m clearapi_testing.record --provider openai --model gpt-4o-mini \\
        --out cassettes/openai.json

``--provider local`` records the in-process SmolLM2 through an OpenAI-shaped transport
(`clearapi_testing.local_openai`); ``--llama-server`` starts ``python -m llama_cpp.server``
on 127.0.0.1 with the local GGUF file and records against it; any other profile is called
at its base URL (or ``--base-url``) with the key from its environment variable.

Why through the adapter rather than raw SDK calls: a cassette only replays if the replaying
client sends byte-for-byte the same bodies, and in tests that client is our adapter.

Two files are written: the cassette (`clearapi_testing.cassettes` format: request and
response bodies, a few safe response headers, never a request header, so keys cannot leak)
and ``NAME.normalised.json`` beside it: the profile used, each `ChatRequest` sent and the
`ChatResponse` the adapter made of it, which the replay test must reproduce exactly.

The request set (`RECORDED_REQUESTS`) covers what the CLEAR method asks of a provider:
a greedy answer with logprobs and top-5 alternatives, three samples at temperature 1 with
a seed (``n=3``, which some servers ignore), a one-token multiple-choice self-rating read
from top logprobs, and a request for 20 alternatives (some servers cap it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson

from clearapi._version import __version__
from clearapi.adapters import resolve_api_key
from clearapi.adapters.openai_chat import OpenAIChatAdapter
from clearapi.errors import ClearAPIError
from clearapi.profiles import Profile, load_profile
from clearapi.records import ChatRequest, ChatResponse, Message
from clearapi.writers import write_json_atomic
from clearapi_testing.cassettes import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    RecordedWith,
    save_cassette,
)

__all__ = ["RECORDED_REQUESTS", "RecordingTransport", "local_profile", "main", "normalised", "record"]

_RATING = (
    "Question: What is 2 + 2?\nProposed answer: 5\n"
    "Is the proposed answer:\n(A) Correct\n(B) Incorrect\n(C) I am not sure\n"
    "Answer with the letter only."
)

#: (name, request): what every cassette contains, in this order.
RECORDED_REQUESTS: tuple[tuple[str, ChatRequest], ...] = (
    ("chat_logprobs", ChatRequest(
        messages=[Message(role="user", content="What is the capital of France? Answer in one sentence.")],
        max_tokens=16, temperature=0.0, logprobs=True, top_logprobs=5, seed=0)),
    ("samples_n3", ChatRequest(
        messages=[Message(role="user", content="Name one fruit.")],
        max_tokens=12, temperature=1.0, n=3, seed=7)),
    ("rating_mc", ChatRequest(
        messages=[Message(role="system", content="You are a careful grader."),
                  Message(role="user", content=_RATING)],
        max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=5, seed=0)),
    ("top_logprobs_20", ChatRequest(
        messages=[Message(role="user", content="Write one word that rhymes with cat.")],
        max_tokens=3, temperature=0.0, logprobs=True, top_logprobs=20, seed=0)),
)

# Response headers worth keeping: what the adapter reads. Request headers are never kept.
_KEEP_HEADERS = ("content-type", "retry-after", "retry-after-ms")
_KEEP_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_DROP_ON_REBUILD = ("content-encoding", "content-length", "transfer-encoding")

LOCAL_BASE_URL = "http://local-model.invalid/v1"


def local_profile(model: str = "smollm2-135m-instruct") -> Profile:
    """The in-process model seen as an OpenAI-compatible provider (what the local cassette used)."""
    from clearapi.adapters.local_llama import LOCAL_CAPABILITIES

    return Profile(name="local-openai", description="SmolLM2 in process behind an OpenAI-shaped transport",
                   protocol="openai_chat", base_url=LOCAL_BASE_URL, default_model=model,
                   capabilities=LOCAL_CAPABILITIES.model_copy(update={"max_n": 8}))


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Passes each request to `inner` and keeps a copy of both bodies as an `Interaction`."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner
        self.interactions: list[Interaction] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sent = await request.aread()
        response = await self._inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        kept = {k.lower(): v for k, v in response.headers.items()
                if k.lower() in _KEEP_HEADERS or k.lower().startswith(_KEEP_PREFIXES)}
        self.interactions.append(Interaction(
            request=RecordedRequest(method=request.method, path=request.url.path, body=_json_or_text(sent)),
            response=RecordedResponse(status=response.status_code, headers=kept, body=_json_or_text(content)),
        ))
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _DROP_ON_REBUILD]
        return httpx2.Response(response.status_code, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def normalised(response: ChatResponse) -> dict[str, Any]:
    """What a replay must reproduce: everything but per-call metadata (rate-limit headers, cache flag)."""
    return response.model_dump(mode="json", exclude={"ratelimit", "cached"})


async def record(provider: str, out: Path, *, base_url: str | None = None, model: str | None = None,
                 model_path: str | None = None, llama_server: bool = False,
                 command: str = "") -> Cassette:
    """Send `RECORDED_REQUESTS`, write the cassette and its ``.normalised.json``; return the cassette."""
    server_label: str
    inner: httpx2.AsyncBaseTransport
    server: Any = None
    versions = {"openai": openai.__version__, "clearapi": __version__}
    if provider == "local":
        from clearapi.adapters.local_llama import LocalLlamaAdapter
        from clearapi_testing.local_openai import LocalOpenAITransport

        local = LocalLlamaAdapter(model_path=model_path)
        profile = local_profile(model or "smollm2-135m-instruct")
        inner = LocalOpenAITransport(local)
        url = LOCAL_BASE_URL
        versions["llama_cpp"] = _llama_version()
        server_label = f"clearapi in-process local model ({local.model_path.name}) via LocalOpenAITransport"
    else:
        profile = load_profile(provider)
        url = base_url or profile.base_url or ""
        inner = httpx2.AsyncHTTPTransport()
        server_label = f"{provider} at {url}"
        if llama_server:
            from clearapi.adapters.local_model import resolve_model_path
            from clearapi_testing.llama_server import LlamaServer

            server = LlamaServer(resolve_model_path(model_path), model_alias=model or "smollm2-135m-instruct")
            await asyncio.to_thread(server.start)
            url = server.base_url
            model = model or server.model_alias
            versions["llama_cpp"] = _llama_version()
            server_label = f"python -m llama_cpp.server {versions['llama_cpp']} ({server.model_path.name})"
    model = model or profile.default_model
    recorder = RecordingTransport(inner)
    adapter = OpenAIChatAdapter(profile, model=model, base_url=url, api_key=resolve_api_key(profile),
                                http_client=httpx2.AsyncClient(transport=recorder, timeout=300.0))
    exchanges: list[dict[str, Any]] = []
    try:
        for name, request in RECORDED_REQUESTS:
            response = await adapter.chat(request)
            exchanges.append({"name": name, "request": request.model_dump(mode="json"),
                              "response": normalised(response)})
    finally:
        await adapter.aclose()
        if server is not None:
            await asyncio.to_thread(server.stop)
    now = datetime.now(UTC).replace(microsecond=0)
    cassette = Cassette(
        recorded_at=now,
        recorded_with=RecordedWith(server=server_label, model=model, versions=versions),
        how=(f"Recorded {now.isoformat()} by `python -m clearapi_testing.record`: the fixed requests "
             f"{[n for n, _ in RECORDED_REQUESTS]} (clearapi_testing.record.RECORDED_REQUESTS) sent through "
             f"clearapi's OpenAIChatAdapter and the openai SDK {openai.__version__} to {server_label}, "
             f"profile {profile.name!r}, model {model!r}. Response bodies are verbatim; request headers "
             "are not stored."),
        rerecord_command=command or _command(provider, out, model, llama_server),
        interactions=recorder.interactions,
    )
    save_cassette(out, cassette)
    write_json_atomic(normalised_path(out), {
        "cassette": out.name,
        "profile": profile.model_dump(mode="json"),
        "model": model,
        "exchanges": exchanges,
    })
    return cassette


def normalised_path(cassette_path: Path) -> Path:
    """``cassettes/x.json`` -> ``cassettes/x.normalised.json``."""
    return cassette_path.with_name(cassette_path.stem + ".normalised.json")


def _llama_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def _command(provider: str, out: Path, model: str | None, llama_server: bool) -> str:
    parts = ["python -m clearapi_testing.record", f"--provider {provider}"]
    if llama_server:
        parts.append("--llama-server")
    if model and provider != "local" and not llama_server:
        parts.append(f"--model {model}")
    parts.append(f"--out {out.as_posix()}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clearapi_testing.record", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", required=True, help="profile name, or 'local' for the in-process model")
    parser.add_argument("--base-url", help="override the profile's base URL")
    parser.add_argument("--model", help="model name (default: the profile's)")
    parser.add_argument("--model-path", help="GGUF file for --provider local / --llama-server")
    parser.add_argument("--llama-server", action="store_true",
                        help="start `python -m llama_cpp.server` on 127.0.0.1 with the local GGUF and record it")
    parser.add_argument("--out", required=True, type=Path, help="cassette file to write (e.g. cassettes/NAME.json)")
    args = parser.parse_args(argv)
    try:
        cassette = asyncio.run(record(args.provider, args.out, base_url=args.base_url, model=args.model,
                                      model_path=args.model_path, llama_server=args.llama_server))
    except ClearAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(cassette.interactions)} interactions) and {normalised_path(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
