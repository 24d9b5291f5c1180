"""`clearapi cache path|stats|clear`: look at or empty the response cache."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from clearapi.engine.cache import cache_stats, clear_cache, default_cache_path


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cache", help="show where the response cache is, what it holds, or empty it",
                       description="The response cache makes runs resumable: a finished run re-run "
                                   "makes no API calls. It never holds API keys.")
    p.add_argument("action", choices=["path", "stats", "clear"], help="what to do")
    p.add_argument("--cache", metavar="PATH", default=None,
                   help="cache file (default: $CLEARAPI_CACHE or ~/.cache/clearapi/cache.sqlite)")
    p.add_argument("--older-than", metavar="DAYS", type=float, default=None,
                   help="clear: only delete answers cached more than DAYS ago")
    p.add_argument("--json", action="store_true", help="stats: print JSON")
    p.set_defaults(run=run)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def run(args: argparse.Namespace) -> int:
    path = Path(args.cache).expanduser() if args.cache else default_cache_path()
    if args.action == "path":
        print(path)
        return 0
    if not path.exists():
        if args.action == "stats" and args.json:
            print(json.dumps({"path": str(path), "exists": False}))
        else:
            print(f"{path}: no cache yet", file=sys.stderr if args.action == "clear" else sys.stdout)
        return 0
    if args.action == "clear":
        days = args.older_than
        n = clear_cache(path, older_than_s=None if days is None else days * 86400)
        print(f"deleted {n} cached answers from {path}")
        return 0
    stats = cache_stats(path)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"cache:     {stats['path']}")
    print(f"size:      {stats['bytes'] / 1e6:.2f} MB (schema v{stats['schema_version']})")
    print(f"answers:   {stats['entries']}  ({stats['prompt_tokens']} prompt + "
          f"{stats['completion_tokens']} completion tokens)")
    print(f"oldest:    {_when(stats['oldest'])}")
    print(f"newest:    {_when(stats['newest'])}")
    if stats["batches"]:
        print(f"batches:   {stats['batches']}")
    for row in stats["by_model"][:20]:
        print(f"  {row['entries']:>8}  {row['provider'] or '?'} / {row['model'] or '?'}")
    return 0
