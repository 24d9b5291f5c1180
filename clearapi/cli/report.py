"""`clearapi report OUTDIR [-o FILE]`: rebuild report.html from a curate output folder.

Useful after a run was stopped, after editing a threshold by hand, or to write the page
somewhere shareable; it reads only the output files, never the cache or the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clearapi.report import write_report


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.html from a curate output folder",
        description="Write a self-contained HTML report (histograms, row table, side-by-side "
                    "corrections, rejected lines) from OUTDIR's summary.json, scores.jsonl and rejects.jsonl.",
    )
    p.add_argument("out_dir", metavar="OUTDIR", type=Path, help="a curate output folder")
    p.add_argument("-o", "--output", metavar="FILE", type=Path, default=None,
                   help="where to write the page (default: OUTDIR/report.html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = write_report(args.out_dir, path=args.output)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB)" if size >= 1e6 else f"wrote {path} ({size / 1e3:.0f} kB)")
    return 0
