"""`clearapi upload FILE --provider openai`: validate, upload, create the fine-tuning job."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from clearapi.errors import ConfigError, InputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "upload",
        help="validate a fine-tuning file, upload it and create the job",
        description="Validates FILE (and --validation-file) against the target's rules first and refuses "
                    "to upload a file that would be rejected unless --force. Uploads with "
                    "purpose=fine-tune, creates the job, prints its id and how to watch it. --wait "
                    "follows the job to the end (exit code 1 if it fails).",
    )
    p.add_argument("file", metavar="FILE", type=Path, nargs="?", help="training file (JSONL)")
    p.add_argument("--provider", "-p", default="openai", help="an OpenAI-protocol provider profile")
    p.add_argument("--model", "-m", default=None, help="base model (default: the target's default)")
    p.add_argument("--target", "-t", choices=["openai", "openai-dpo"], default="openai",
                   help="openai = supervised, openai-dpo = preference (DPO) job")
    p.add_argument("--validation-file", type=Path, default=None, metavar="F")
    p.add_argument("--suffix", default=None, help="suffix for the fine-tuned model's name")
    p.add_argument("--epochs", type=int, default=None, help="n_epochs (default: the service decides)")
    p.add_argument("--force", action="store_true", help="upload even if validation finds errors")
    p.add_argument("--wait", action="store_true", help="follow the job until it finishes")
    p.add_argument("--watch", metavar="JOB_ID", default=None, help="follow an existing job instead")
    p.add_argument("--poll-interval", type=float, default=15.0, metavar="S", help="seconds between polls")
    p.add_argument("--base-url", default=None, help="override the provider's base URL")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.watch is None and args.file is None:
        raise InputError("upload needs a FILE (or --watch JOB_ID)")
    for path in (args.file, args.validation_file):
        if path is not None and not path.is_file():
            raise InputError(f"{path}: no such file")
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from clearapi.adapters import resolve_api_key
    from clearapi.adapters.openai_chat import OpenAIChatAdapter
    from clearapi.finetune.upload import ValidationFailed, job_error_message, submit_job, watch_job
    from clearapi.finetune.validate import format_report
    from clearapi.profiles import load_profile

    profile = load_profile(args.provider)
    if profile.protocol != "openai_chat" or (profile.name != "openai" and not args.base_url):
        # Together/Fireworks speak OpenAI's chat protocol but not its fine-tuning API
        raise ConfigError(f"upload speaks OpenAI's Files and Fine-tuning API; provider {profile.name!r} does not "
                          "(write its file with `convert --target ...` and use the service's own tool), "
                          "or pass --base-url of an OpenAI-compatible fine-tuning server")
    key = resolve_api_key(profile, None)
    base_url = args.base_url or profile.base_url
    # the adapter's client: an explicit key (never OPENAI_API_KEY sent to a server base_url did not
    # choose) and SDK retries off, the engine's policy in `submit_job`/`watch_job` retrying instead
    adapter = OpenAIChatAdapter(profile, base_url=base_url, api_key=key, model=args.model, timeout=args.timeout)
    client = adapter._client
    try:
        job_id = args.watch
        if job_id is None:
            try:
                sub = await submit_job(client, args.file, map_error=adapter.map_error, target=args.target,
                                       model=args.model, validation=args.validation_file, suffix=args.suffix,
                                       epochs=args.epochs, force=args.force)
            except ValidationFailed as exc:
                for report in exc.reports:
                    print(format_report(report, max_findings=50))
                print(f"clearapi: refusing to upload: {exc}", file=sys.stderr)
                return 1
            for report in sub.reports:
                print(format_report(report, max_findings=20))
            if sub.forced:
                print("warning: uploaded despite validation errors (--force)", file=sys.stderr)
            print(f"uploaded {args.file} as {sub.training_file}"
                  + (f", {args.validation_file} as {sub.validation_file}" if sub.validation_file else ""))
            print(f"created fine-tuning job {sub.job_id} ({sub.method}, {sub.model}): {sub.status}")
            job_id = sub.job_id
            if not args.wait:
                extra = f" --base-url {args.base_url}" if args.base_url else ""
                print(f"watch it: python -m clearapi upload --watch {job_id} --provider {profile.name}{extra}")
                if "api.openai.com" in (base_url or ""):
                    print(f"      or: https://platform.openai.com/finetune/{job_id}")
                return 0
        job = await watch_job(
            client, job_id, map_error=adapter.map_error, poll_interval=args.poll_interval,
            on_event=lambda ev: print(f"  [{ev.level}] {ev.message}"),
            on_status=lambda j: print(f"job {j.id}: {j.status}"),
        )
        if job.status == "succeeded":
            print(f"job {job.id} succeeded: fine-tuned model {job.fine_tuned_model}"
                  + (f" ({job.trained_tokens} trained tokens)" if job.trained_tokens else ""))
            return 0
        print(f"clearapi: {job_error_message(job)}", file=sys.stderr)
        return 1
    finally:
        await adapter.aclose()
