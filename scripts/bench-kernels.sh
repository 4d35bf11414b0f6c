#!/usr/bin/env bash
# The built-in engine's C kernels on their own (scripts/bench-kernels.c): Q4_K and Q6_K decode against a loop that
# only loads the same rows, and bf16 prefill against vdpbf16ps's peak. Compiles with the Swift toolchain's clang
# into .build/bench-kernels; the argument is the number of alternating decode rounds (15).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$ROOT/.build"
clang -O3 -march=native -I "$ROOT/Sources/CEngineAMX/include" -I "$ROOT/Sources/CEngineAMX" \
    "$ROOT/scripts/bench-kernels.c" "$ROOT"/Sources/CEngineAMX/*.c -o "$ROOT/.build/bench-kernels" -lpthread
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$ROOT/.build/bench-kernels" "${1:-15}"
