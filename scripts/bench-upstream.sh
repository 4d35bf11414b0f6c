#!/usr/bin/env bash
# Upstream overhead (docs/gateway.md): a release modeld serves the tiny Qwen2 fixture on the built-in engine, and a
# second release modeld in front of it reaches that engine as an OpenAI-compatible upstream. scripts/bench-gateway.py
# sends the same requests straight to the engine and through the front daemon: first with the live upstream alone,
# then with a dead upstream (nothing listens on its port) tried before it on every request (cooldown disabled, so
# each request pays the failover).
#   swift build -c release && scripts/bench-upstream.sh      (REQUESTS=2000 STREAMS=100 PORT=18970)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18970}
source scripts/gateway-daemon.sh
MODELCTL="$BIN/modelctl" start_gateway_daemon "$BIN/modeld" "$PORT" "$work"
front=$((PORT + 3))  # PORT+1 and PORT+2 are the fake hub's
MODELD_COOLDOWN_FAILURES=1000000000 "$BIN/modeld" --data-dir "$work/front" --listen "127.0.0.1:$front" \
    --log-level warning > "$work/front.log" 2>&1 &
front_pid=$!
pids+=($front_pid)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$front/health" > /dev/null && break; sleep 0.1; done
ctl() { MODELD_URL="http://127.0.0.1:$front" "$BIN/modelctl" "$@" > /dev/null; }
ctl upstream add live --url "$endpoint/v1" --models tiny --priority 1
echo "modeld $(git rev-parse --short HEAD 2>/dev/null || echo "?"), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
engine_pid=$("$BIN/modelctl" ps --json --url "http://127.0.0.1:$PORT" |
    python3 -c 'import json,sys; print([r["pid"] for r in json.load(sys.stdin) if r["name"] == "tiny"][0])')
bench() {
    python3 scripts/bench-gateway.py --gateway "http://127.0.0.1:$front" --direct "$endpoint" --model tiny \
        --daemon-pid "$front_pid" --engine-pid "$engine_pid" --requests "${REQUESTS:-2000}" --streams "${STREAMS:-100}"
}
echo "== through an upstream (the live engine alone)"
bench
dead=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ctl upstream add dead --url "http://127.0.0.1:$dead/v1" --models tiny --priority 0
echo "== with a dead upstream (connection refused) tried first on every request"
bench
echo "failovers counted: $(curl -s "http://127.0.0.1:$front/metrics" | grep '^modeld_upstream_failovers_total' || true)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
