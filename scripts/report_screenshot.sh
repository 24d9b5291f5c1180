#!/usr/bin/env bash
# Rebuild OUTDIR/report.html and photograph it for the README (issue 8):
#   bash scripts/report_screenshot.sh [OUTDIR=runs/example] [PNG=docs/report.png]
# Needs what scripts/browser_deps.sh installs (Debian's chromium, playwright-core).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-runs/example}"
PNG="${2:-docs/report.png}"
VPY="${VPY:-$ROOT/.venv/bin/python}"
bash scripts/browser_deps.sh
"$VPY" -m clearapi report "$OUT"
cfg="$(mktemp --suffix=.json)"
trap 'rm -f "$cfg"' EXIT
"$VPY" -c 'import json, sys; print(json.dumps({"html": sys.argv[1], "screenshot": sys.argv[2]}))' \
    "$(realpath "$OUT/report.html")" "$(realpath -m "$PNG")" > "$cfg"
(cd tests/browser && node report_check.js "$cfg" >/dev/null)
echo "wrote $PNG"
