"""Batch mode figures on the example set (a script that prints, not a test).

    .venv/bin/python bench/batch_figures.py [--filter-fraction 0.5] [--input examples/qa.jsonl]

Curates the input twice against the loopback emulator through the real openai SDK, once
online and once with ``--batch`` (each with a fresh cache), and prints the requests per
batch file of each stage and the cost of both runs at the ``openai`` profile's list price
for its default model. Token counts are the emulator's (words and punctuation marks), not
OpenAI's tokenizer, so the dollar figures show the ratio, not a bill.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clearapi.clear.curation import curate  # noqa: E402
from clearapi.engine import Engine  # noqa: E402
from clearapi.engine.batch import BatchOptions  # noqa: E402
from clearapi.profiles import load_profile  # noqa: E402
from clearapi_testing.emulator import EmulatorThread  # noqa: E402
from clearapi_testing.emulator_batches import BatchBehaviour, batches_extension  # noqa: E402


async def _run(base: str, data: Path, out: Path, batch: bool, fraction: float | None) -> tuple[object, list[int]]:
    options = BatchOptions(linger=0.2, poll_interval=0.05) if batch else False
    async with Engine("openai", base_url=base, api_key="bench", cache=out / "cache.sqlite", rpm=1e6, tpm=1e9,
                      progress=False, batch=options) as engine:
        summary = await curate(data, out / "run", engine=engine, filter_fraction=fraction)
        sizes = list(engine._batch.batch_sizes) if engine._batch is not None else []
    return summary, sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=ROOT / "examples" / "qa.jsonl")
    ap.add_argument("--filter-fraction", type=float, default=None)
    args = ap.parse_args()
    profile = load_profile("openai")
    price = profile.price_for(profile.default_model)
    beh = BatchBehaviour()
    with EmulatorThread(extensions=[batches_extension(beh)]) as emu, tempfile.TemporaryDirectory() as tmp:
        base = emu.base_url + "/v1"
        t0 = time.perf_counter()
        online, _ = asyncio.run(_run(base, args.input, Path(tmp) / "online", False, args.filter_fraction))
        t1 = time.perf_counter()
        batch, sizes = asyncio.run(_run(base, args.input, Path(tmp) / "batch", True, args.filter_fraction))
        t2 = time.perf_counter()
        same = (Path(tmp) / "online/run/scores.jsonl").read_bytes() == (Path(tmp) / "batch/run/scores.jsonl").read_bytes()
    on, ba = online.engine, batch.engine  # type: ignore[attr-defined]
    print(f"input: {args.input} ({online.counts.rows} rows)")  # type: ignore[attr-defined]
    print(f"model: {profile.default_model} at ${price.input}/M in, ${price.output}/M out, "
          f"batch discount {price.batch_discount:.0%} (providers/openai.toml)")
    print(f"online: {on.requests} requests, {on.prompt_tokens}+{on.completion_tokens} tokens, "
          f"${on.cost_usd:.6f}, {t1 - t0:.1f}s")
    print(f"batch:  {ba.batch_requests} requests in {ba.batches} batch file(s) of {sizes} requests, "
          f"{ba.requests - ba.batch_requests} online retries, ${ba.cost_usd:.6f}, {t2 - t1:.1f}s")
    print(f"batch / online cost: {ba.cost_usd / on.cost_usd:.3f}; scores.jsonl identical: {same}")


if __name__ == "__main__":
    main()
