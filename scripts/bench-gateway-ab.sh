#!/usr/bin/env bash
# Two modeld builds side by side (issue: gateway benchmark): each release daemon pulls the tiny Qwen2 fixture from
# its own loopback fake hub and starts it on the built-in engine; scripts/bench-gateway-ab.py then alternates
# requests between the two, each through its gateway and straight to its engine, in one run.
#   scripts/bench-gateway-ab.sh OLD_MODELD NEW_MODELD      (REQUESTS=2000 PORT=19580)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-19580}
work=$(mktemp -d /tmp/modeld-bench-ab.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # binary, daemon port, directory -> prints the engine's port
    local bin=$1 port=$2 dir=$3 hub=$(($2 + 1))
    mkdir -p "$dir/repo"
    for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
        cp "Tests/EngineTests/Fixtures/models/qwen2-tiny/$f" "$dir/repo/"
    done
    python3 scripts/bench-fakehub.py "$dir/repo" "$hub" acme/qwen2-tiny > "$dir/hub.log" 2>&1 &
    pids+=($!)
    HF_ENDPOINT="http://127.0.0.1:$hub" "$bin" --data-dir "$dir/data" --listen "127.0.0.1:$port" --log-level warning > "$dir/modeld.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.1; done
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$hub/api/models/acme/qwen2-tiny/revision/main" > /dev/null && break; sleep 0.1; done
    .build/release/modelctl pull acme/qwen2-tiny --url "http://127.0.0.1:$port" > /dev/null
    .build/release/modelctl start acme/qwen2-tiny --engine builtin --name tiny --wait --json --url "http://127.0.0.1:$port" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"].rsplit(":", 1)[1])'
}
start "$1" "$PORT" "$work/a" > "$work/a.port"
start "$2" "$((PORT + 10))" "$work/b" > "$work/b.port"
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench-gateway-ab.py "old=$PORT:$(cat "$work/a.port")" "new=$((PORT + 10)):$(cat "$work/b.port")" --requests "${REQUESTS:-2000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
