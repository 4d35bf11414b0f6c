#!/usr/bin/env bash
# Two (or more) modeld builds side by side (issue: gateway benchmark): each release daemon pulls the tiny Qwen2
# fixture from its own loopback fake hub and starts it on the built-in engine; scripts/bench-gateway-ab.py then
# alternates requests between them, each through its gateway and straight to its engine, in one run.
#   scripts/bench-gateway-ab.sh OLD_MODELD NEW_MODELD [MORE_MODELD...]     (REQUESTS=2000 PORT=19580)
# Sides are named old and new, or 1, 2, 3... with more than two.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-19580}
source scripts/gateway-daemon.sh
sides=()
index=0
for modeld in "$@"; do
    index=$((index + 1))
    name=$index
    [ $# -eq 2 ] && { [ $index -eq 1 ] && name=old || name=new; }
    port=$((PORT + 10 * (index - 1)))
    start_gateway_daemon "$modeld" "$port" "$work/$index"
    echo "$name: $modeld"
    sides+=("$name=$port:${endpoint##*:}:$daemon_pid")
done
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench-gateway-ab.py "${sides[@]}" --requests "${REQUESTS:-2000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
