# Sourced by the gateway benchmarks: makes a scratch directory `work`, and on exit stops every process listed in
# `pids` and removes `work`.
work=$(mktemp -d /tmp/modeld-bench-gw.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start_daemon MODELD PORT DIR [VARIABLE=VALUE ...]: a daemon on 127.0.0.1:PORT (data in DIR/data, log in
# DIR/modeld.log) with those variables added to its environment, once it answers /health. Sets `daemon_pid` and
# appends it to `pids`.
start_daemon() {
    local modeld=$1 port=$2 dir=$3
    shift 3
    env "$@" "$modeld" --data-dir "$dir/data" --listen "127.0.0.1:$port" --log-level warning > "$dir/modeld.log" 2>&1 &
    daemon_pid=$!
    pids+=($daemon_pid)
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.1; done
}

# start_gateway_daemon MODELD PORT DIR: a release daemon on 127.0.0.1:PORT
# (data in DIR) pulls the tiny Qwen2 fixture from its own loopback fake hub on PORT+1 and starts it on the built-in
# engine as run `tiny`. Sets `endpoint` (the engine's URL) and `daemon_pid`, appends both started processes to `pids`,
# and uses MODELCTL (default .build/release/modelctl).
start_gateway_daemon() {
    local modeld=$1 port=$2 dir=$3 hub=$(($2 + 1))
    local ctl=${MODELCTL:-.build/release/modelctl}
    mkdir -p "$dir/repo"
    for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
        cp "Tests/BuiltinEngineTests/Fixtures/models/qwen2-tiny/$f" "$dir/repo/"
    done
    python3 scripts/bench-fakehub.py "$dir/repo" "$hub" acme/qwen2-tiny > "$dir/hub.log" 2>&1 &
    pids+=($!)
    start_daemon "$modeld" "$port" "$dir" HF_ENDPOINT="http://127.0.0.1:$hub"
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$hub/api/models/acme/qwen2-tiny/revision/main" > /dev/null && break; sleep 0.1; done
    "$ctl" pull acme/qwen2-tiny --url "http://127.0.0.1:$port" > /dev/null
    endpoint=$("$ctl" start acme/qwen2-tiny --engine builtin --name tiny --wait --json --url "http://127.0.0.1:$port" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"])')
}
