#!/usr/bin/env bash
# Gateway overhead (issue: gateway benchmark): a release modeld pulls the tiny Qwen2 fixture from a loopback
# fake hub, starts it on the built-in engine, and scripts/bench-gateway.py sends the same requests straight to
# the engine and through the gateway, in one run.
#   swift build -c release && scripts/bench-gateway.sh      (REQUESTS=2000 STREAMS=200 PORT=18960)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18960}
HUB=$((PORT + 1))
work=$(mktemp -d /tmp/modeld-bench-gw.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/repo"
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
    cp "Tests/EngineTests/Fixtures/models/qwen2-tiny/$f" "$work/repo/"
done
python3 scripts/bench-fakehub.py "$work/repo" "$HUB" acme/qwen2-tiny > "$work/hub.log" 2>&1 &
pids+=($!)
HF_ENDPOINT="http://127.0.0.1:$HUB" "$BIN/modeld" --data-dir "$work/data" --listen "127.0.0.1:$PORT" \
    --log-level warning > "$work/modeld.log" 2>&1 &
pids+=($!)
ctl() { "$BIN/modelctl" "$@" --url "http://127.0.0.1:$PORT"; }
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HUB/api/models/acme/qwen2-tiny/revision/main" > /dev/null && break; sleep 0.1; done
ctl pull acme/qwen2-tiny > /dev/null
endpoint=$(ctl start acme/qwen2-tiny --engine builtin --name tiny --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"])')
echo "modeld $(git rev-parse --short HEAD), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
engine_pid=$(ctl ps --json | python3 -c 'import json,sys; print([r["pid"] for r in json.load(sys.stdin) if r["name"] == "tiny"][0])')
python3 scripts/bench-gateway.py --gateway "http://127.0.0.1:$PORT" --direct "$endpoint" --model tiny \
    --daemon-pid "${pids[1]}" --engine-pid "$engine_pid" \
    --requests "${REQUESTS:-2000}" --streams "${STREAMS:-200}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
