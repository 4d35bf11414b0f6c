#!/usr/bin/env bash
# Gateway overhead (issue: gateway benchmark): a release modeld pulls the tiny Qwen2 fixture from a loopback
# fake hub, starts it on the built-in engine, and scripts/bench-gateway.py sends the same requests straight to
# the engine and through the gateway, in one run.
#   swift build -c release && scripts/bench-gateway.sh      (REQUESTS=2000 STREAMS=200 PORT=18960)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18960}
source scripts/gateway-daemon.sh
MODELCTL="$BIN/modelctl" start_gateway_daemon "$BIN/modeld" "$PORT" "$work"
ctl() { "$BIN/modelctl" "$@" --url "http://127.0.0.1:$PORT"; }
echo "modeld $(git rev-parse --short HEAD), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
engine_pid=$(ctl ps --json | python3 -c 'import json,sys; print([r["pid"] for r in json.load(sys.stdin) if r["name"] == "tiny"][0])')
python3 scripts/bench-gateway.py --gateway "http://127.0.0.1:$PORT" --direct "$endpoint" --model tiny \
    --daemon-pid "$daemon_pid" --engine-pid "$engine_pid" \
    --requests "${REQUESTS:-2000}" --streams "${STREAMS:-200}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
