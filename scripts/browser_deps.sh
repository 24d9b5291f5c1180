#!/usr/bin/env bash
# Debian's chromium and playwright-core for the report's browser tests (issue 8).
# Tests that need them skip with a reason when this could not install them.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "clearapi: could not install chromium; browser tests will skip" >&2
fi
if command -v npm >/dev/null 2>&1 && [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
    (cd "$ROOT/tests/browser" 2>/dev/null && npm install --silent --no-audit --no-fund >/dev/null) \
        || echo "clearapi: could not install playwright-core; browser tests will skip" >&2
fi
exit 0
