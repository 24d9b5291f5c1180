# Sourced by scripts/demo and scripts/test: make ./.venv with everything clearapi needs.
# Idempotent and quick when nothing changed (pip caches the llama-cpp-python wheel).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
"$PY" -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "clearapi: installing ${need_apt[*]} (needed to build llama-cpp-python)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "clearapi: please install: ${need_apt[*]}" >&2; exit 2
    fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY="$ROOT/.venv/bin/python"
# A portable llama.cpp build: the default (-march=native) build segfaults on some CPUs.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
stamp=".venv/.clearapi-installed"
extras="${CLEARAPI_EXTRAS:-local,server,dev}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$(cat "$stamp")" != "$extras" ]; then
    "$VPY" -m pip install -q --upgrade pip
    "$VPY" -m pip install -q -e ".[${extras}]"
    echo "$extras" > "$stamp"
fi
