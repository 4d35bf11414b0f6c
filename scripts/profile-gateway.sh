#!/usr/bin/env bash
# Where a gateway request's time goes in the daemon (issue: gateway benchmark): a release modeld set up as for
# scripts/bench-gateway.sh, `perf record` of the daemon while one client sends sequential 1-token completions
# through the gateway for SECONDS, then the share of samples per thread and per library.
#   swift build -c release && scripts/profile-gateway.sh      (SECONDS_RECORDED=8 PORT=18960 BIN=.build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18960}
RECORD=${SECONDS_RECORDED:-8}
source scripts/gateway-daemon.sh
MODELCTL="$BIN/modelctl" start_gateway_daemon "$BIN/modeld" "$PORT" "$work"
perf record -F 4999 -g -p "$daemon_pid" -o "$work/perf.data" -- sleep "$RECORD" > /dev/null 2>&1 &
recorder=$!
python3 - "$PORT" "$((RECORD + 1))" <<'PY'
import http.client, json, sys, time
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = json.dumps({"model": "tiny", "prompt": "Hello", "max_tokens": 1, "temperature": 0}).encode()
end, sent = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    connection.getresponse().read()
    sent += 1
print("requests through the gateway:", sent)
PY
wait "$recorder" || true
if [ -n "${KEEP_PERF:-}" ]; then cp "$work/perf.data" "$KEEP_PERF"; fi
echo "samples per thread:"
perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -5
echo "samples per library:"
perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -8
