#!/usr/bin/env bash
# Self-hosted scoring on a GPU: start `vllm serve MODEL`, curate examples/qa.jsonl through
# `--provider vllm` with the full method (the self-hosted defaults: temperature-0 answer,
# demonstrations, likelihood of the given response from prompt_logprobs), print rows/s, AUROC and
# the signals present, stop the server.
#
#   bench/vllm_check.sh MODEL            # e.g. Qwen/Qwen2.5-0.5B-Instruct
#   PORT=8011 VLLM_ARGS="--tensor-parallel-size 2" bench/vllm_check.sh MODEL
#
# Needs vllm installed (pip install vllm) and a CUDA device. Exit 0 only if every row was scored.
set -euo pipefail
MODEL="${1:?usage: bench/vllm_check.sh MODEL}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
PORT="${PORT:-8011}"
URL="http://127.0.0.1:${PORT}/v1"
command -v vllm >/dev/null || { echo "vllm_check: vllm is not installed (pip install vllm)" >&2; exit 2; }

WORK="$(mktemp -d)"
LOG="$WORK/vllm.log"
# --max-logprobs: the scoring requests ask 20 alternatives per token, answers and prompt alike
# shellcheck disable=SC2086
vllm serve "$MODEL" --host 127.0.0.1 --port "$PORT" --max-logprobs 20 ${VLLM_ARGS:-} >"$LOG" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "vllm_check: starting vllm serve $MODEL on port $PORT (log: $LOG)"
for _ in $(seq 1 600); do   # model download and load: up to 10 minutes
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "vllm_check: vllm serve exited before it was ready; its log ends:" >&2; tail -20 "$LOG" >&2; exit 1
    fi
    curl -sf "$URL/models" >/dev/null && break
    sleep 1
done
curl -sf "$URL/models" >/dev/null || { echo "vllm_check: no answer from $URL after 10 minutes" >&2; exit 1; }

set +e
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m clearapi curate "$ROOT/examples/qa.jsonl" -o "$WORK/out" \
    --provider vllm --base-url "$URL" --model "$MODEL" --no-cache --quiet
code=$?
set -e
if [ ! -f "$WORK/out/summary.json" ]; then
    echo "vllm_check: clearapi curate failed (exit $code)" >&2; exit 1
fi
"$PY" "$ROOT/bench/vllm_report.py" "$WORK/out" "$ROOT/examples/labels.jsonl"
exit "$code"
