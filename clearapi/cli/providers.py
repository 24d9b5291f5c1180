"""`clearapi providers`: what each profile can do, where it points, and whether its key is set.

Never prints a key, only whether the variable that should hold it is set. ``--json`` gives
the same facts for scripts; ``NAME`` narrows to one profile and adds its prices and
per-model rules.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from clearapi.profiles import Profile, list_profiles, load_profile, resolve_base_url
from clearapi.redact import redact_url


def add_parser(sub: Any) -> None:
    p = sub.add_parser("providers", help="list provider profiles, their capabilities and limits",
                       description="List provider profiles (providers/*.toml plus folders in "
                                   "CLEARAPI_PROVIDERS) with capabilities, default limits and key status.")
    p.add_argument("name", nargs="?", help="show one profile in full (prices, per-model rules)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def key_status(profile: Profile) -> str:
    """``set`` / ``missing`` / ``optional`` / ``none``: never the key itself."""
    if not profile.api_key_env:
        return "none"
    if os.environ.get(profile.api_key_env, "").strip():
        return "set"
    return "optional" if profile.key_optional else "missing"


def url_in_force(profile: Profile) -> tuple[str | None, str]:
    """The base URL a run would use (credentials masked) and where it comes from."""
    url, source = resolve_base_url(profile)
    return redact_url(url), source


def url_text(profile: Profile) -> str:
    url, source = url_in_force(profile)
    if url is None:
        return "(in process)"
    return url if source == "profile" else f"{url} (from {source})"


def describe(profile: Profile) -> dict[str, Any]:
    """The facts shown for one profile, JSON-ready."""
    data = profile.model_dump(mode="json", exclude={"description"})
    data["base_url"], data["base_url_source"] = url_in_force(profile)
    return {"name": profile.name, "description": profile.description, "key": key_status(profile), **data}


def capability_text(profile: Profile) -> str:
    caps = profile.capabilities
    parts = [f"logprobs(top {caps.max_top_logprobs})" if caps.logprobs else "no-logprobs"]
    if caps.n:
        parts.append(f"n<={caps.max_n}")
    if caps.seed:
        parts.append("seed")
    if caps.score_given_text:
        parts.append("score")
    if caps.batch:
        parts.append("batch")
    return " ".join(parts)


def limits_text(profile: Profile) -> str:
    lim = profile.limits
    rpm = f"{lim.rpm:g}" if lim.rpm else "-"
    tpm = f"{lim.tpm:g}" if lim.tpm else "-"
    return f"{rpm}/{tpm}/{lim.max_concurrency}"


def table(profiles: list[Profile]) -> str:
    header = ("NAME", "PROTOCOL", "BASE URL", "KEY", "DEFAULT MODEL", "CAPABILITIES", "RPM/TPM/CONC")
    rows = [header]
    for p in profiles:
        key = f"{p.api_key_env} ({key_status(p)})" if p.api_key_env else "-"
        rows.append((p.name, p.protocol, url_text(p), key, p.default_model,
                     capability_text(p), limits_text(p)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("")
    lines.append("Prices and limits are read from public pages (dates in each profile); none was checked live.")
    return "\n".join(lines)


def detail(profile: Profile) -> str:
    lines = [f"{profile.name}: {profile.description}".rstrip(": "),
             f"  protocol       {profile.protocol}",
             f"  base URL       {url_text(profile)}",
             f"  API key        {profile.api_key_env or '-'} ({key_status(profile)})",
             f"  default model  {profile.default_model}",
             f"  capabilities   {capability_text(profile)}",
             f"  limits         {limits_text(profile)} (rpm/tpm/concurrency; - = learned from headers)",
             f"  prices checked {profile.prices_checked or '-'} (checked live: {profile.checked_live})"]
    if profile.prices:
        lines.append("  prices (USD per million tokens: input / output, batch discount)")
        for model, price in profile.prices.items():
            batch = f", batch -{price.batch_discount:.0%}" if price.batch_discount else ""
            lines.append(f"    {model:<50} {price.input:g} / {price.output:g}{batch}")
    if profile.models:
        lines.append("  per-model rules")
        for pattern, rule in profile.models.items():
            changes = ", ".join(f"{k}={v}" for k, v in rule.model_dump(exclude_none=True).items()
                                if k != "note")
            lines.append(f"    {pattern:<20} {changes}" + (f"  ({rule.note})" if rule.note else ""))
    for source in profile.sources:
        lines.append(f"  source         {source}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.name:
        profile = load_profile(args.name)
        print(json.dumps(describe(profile), indent=2) if args.json else detail(profile))
        return 0
    profiles = sorted(list_profiles().values(), key=lambda p: p.name)
    if args.json:
        print(json.dumps([describe(p) for p in profiles], indent=2))
    else:
        print(table(profiles))
    return 0
