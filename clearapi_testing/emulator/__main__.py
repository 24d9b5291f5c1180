"""``python -m clearapi_testing.emulator``: the emulator as a process, for benchmarks.

Prints ``clearapi emulator listening on http://127.0.0.1:PORT`` (one line, flushed) and serves
until SIGINT or SIGTERM. The API key, if wanted, is read from an environment variable so it never
appears in a process listing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import orjson

from clearapi_testing.emulator.config import ALL_FAULTS, EmulatorConfig, Latency
from clearapi_testing.emulator.server import Emulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clearapi_testing.emulator",
                                description="Loopback OpenAI/Anthropic API emulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--rpm", type=float, help="requests per minute limit")
    p.add_argument("--tpm", type=float, help="tokens per minute limit")
    p.add_argument("--burst-seconds", type=float, default=1.0, help="bucket capacity in seconds of quota")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency, or the minimum/median")
    p.add_argument("--latency-max-ms", type=float, help="uniform latency between --latency-ms and this")
    p.add_argument("--latency-sigma", type=float, help="lognormal latency with median --latency-ms")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per request")
    p.add_argument("--fault-kinds", help=f"comma-separated pool for --fault-rate, from {','.join(ALL_FAULTS)}")
    p.add_argument("--hang-seconds", type=float)
    p.add_argument("--ratelimit-headers", action="store_true", help="send x-ratelimit-* headers (as OpenAI does)")
    p.add_argument("--polite", action="store_true",
                   help="the ideal server: exact top_logprobs lists, no empty completions, no stray 500s")
    p.add_argument("--short-top-logprobs", action="store_true",
                   help="list fewer top_logprobs than asked for some tokens (the default unless --polite)")
    p.add_argument("--no-logprobs", action="store_true",
                   help="answer without logprobs even when asked, as some compatible servers do")
    p.add_argument("--empty-rate", type=float, help="share of free-text completions that are empty (default 0.02)")
    p.add_argument("--stray-500-rate", type=float, help="share of requests answered 500 (default 0.02)")
    p.add_argument("--cassette", action="append", type=Path, help="replay only from this cassette (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api-key-env", metavar="VAR", help="require the key held in this environment variable")
    p.add_argument("--config", help="a JSON object of EmulatorConfig fields (applied first)")
    return p


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    data = orjson.loads(args.config) if args.config else {}
    data.update(host=args.host, port=args.port, seed=args.seed, burst_seconds=args.burst_seconds,
                fault_rate=args.fault_rate, ratelimit_headers=args.ratelimit_headers)
    if args.polite:
        data["polite"] = True
    if args.no_logprobs:
        data["returns_logprobs"] = False
    if args.short_top_logprobs:
        data["exact_top_logprobs"] = False
    for name in ("rpm", "tpm", "hang_seconds", "empty_rate", "stray_500_rate"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    if args.fault_kinds:
        data["fault_kinds"] = [k.strip() for k in args.fault_kinds.split(",") if k.strip()]
    if args.latency_max_ms is not None:
        data["latency"] = Latency(kind="uniform", ms=args.latency_ms, max_ms=args.latency_max_ms)
    elif args.latency_sigma is not None:
        data["latency"] = Latency(kind="lognormal", ms=args.latency_ms, sigma=args.latency_sigma)
    elif args.latency_ms:
        data["latency"] = Latency(kind="fixed", ms=args.latency_ms)
    if args.cassette:
        data["cassette"] = args.cassette
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise SystemExit(f"environment variable {args.api_key_env} is empty or unset")
        data["api_key"] = key
    return EmulatorConfig.model_validate(data)


async def _serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(config) as emu:
        print(f"clearapi emulator listening on {emu.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
