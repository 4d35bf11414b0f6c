#!/usr/bin/env bash
# Two modeld builds side by side (issue: gateway benchmark): each release daemon pulls the tiny Qwen2 fixture from
# its own loopback fake hub and starts it on the built-in engine; scripts/bench-gateway-ab.py then alternates
# requests between the two, each through its gateway and straight to its engine, in one run.
#   scripts/bench-gateway-ab.sh OLD_MODELD NEW_MODELD      (REQUESTS=2000 PORT=19580)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-19580}
source scripts/gateway-daemon.sh
start_gateway_daemon "$1" "$PORT" "$work/a"
old_port=${endpoint##*:} old_pid=$daemon_pid
start_gateway_daemon "$2" "$((PORT + 10))" "$work/b"
new_port=${endpoint##*:} new_pid=$daemon_pid
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench-gateway-ab.py "old=$PORT:$old_port:$old_pid" "new=$((PORT + 10)):$new_port:$new_pid" --requests "${REQUESTS:-2000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
