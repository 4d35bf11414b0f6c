#!/usr/bin/env bash
# Ollama API overhead (docs/benchmarks.md): a release modeld pulls the tiny Qwen2 fixture from a loopback fake hub,
# starts it on the built-in engine, and scripts/bench-ollama.py sends the same streamed chat straight to the engine's
# /v1/chat/completions and to the daemon's /api/chat, alternating, in one run.
#   swift build -c release && scripts/bench-ollama.sh      (REQUESTS=2000 PORT=18970)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18970}
source scripts/gateway-daemon.sh
MODELCTL="$BIN/modelctl" start_gateway_daemon "$BIN/modeld" "$PORT" "$work"
echo "modeld $(git rev-parse --short HEAD), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench-ollama.py --daemon "http://127.0.0.1:$PORT" --direct "$endpoint" --model tiny \
    --requests "${REQUESTS:-2000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
