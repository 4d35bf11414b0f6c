#!/usr/bin/env bash
# Pulls a 2 GiB repository (4 x 512 MiB safetensors + config.json) from a loopback fake hub several ways and
# prints wall time and peak RSS of each: the release daemon through `modelctl pull` (its peak RSS is the daemon's
# VmHWM, read from /proc), modeld's pull service in the debug test bundle, curl fetching the same bytes (4 in
# parallel, and 1 stream), and huggingface_hub.snapshot_download. Each modeld row runs when its build is there:
# `swift build -c release --product modeld --product modelctl` and/or `swift build --build-tests`; huggingface_hub
# needs `pip install huggingface_hub`.
#   scripts/bench-pull.sh            (SIZE_MIB=2048 PORT=18931 ROUNDS=1 by default)
# RELEASE_DIRS="DIR1 DIR2" runs modeld and modelctl from each DIR in turn (.build/release by default), for a
# before/after in one run;
# TEST_BUNDLE=0 and HF_HUB=0 leave those rows out; FILES=N splits the repository into N files (4 by default, at most 9).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-2048}
PORT=${PORT:-18931}
ROUNDS=${ROUNDS:-1}
work=$(mktemp -d /tmp/modeld-bench.XXXXXX)
server=
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
    [ -n "$server" ] && kill "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/src"
FILES=${FILES:-4}
part=$((SIZE_MIB / FILES))
for i in $(seq 1 "$FILES"); do
    head -c "${part}M" /dev/urandom > "$work/src/model-0000$i-of-0000$FILES.safetensors"
done
echo '{"model_type": "llama"}' > "$work/src/config.json"
python3 "${FAKEHUB:-scripts/bench-fakehub.py}" "$work/src" "$PORT" bench/big > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/api/models/bench/big/revision/main" && break
    sleep 0.2
done
sync

# CPU time the hypervisor gave to others while this machine wanted it (steal), all CPUs, in seconds so far.
steal_now() { awk -v t="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f", $9 / t }' /proc/stat; }

# Wall times per row and round, for the medians at the end.
echo -n > "$work/walls"

measure() { # name, command...
    local name=$1; shift
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    local steal_before
    steal_before=$(steal_now)
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" > "$work/$name.out" 2>&1 || { cat "$work/$name.out"; exit 1; }
    read -r wall rss user sys < "$work/time"
    printf '%-34s %8s s %10s MiB  %8.0f MB/s  CPU %s + %s s  steal %s s\n' "$name" "$wall" "$((rss / 1024))" \
        "$(echo "$SIZE_MIB * 1.048576 / $wall" | bc -l)" "$user" "$sys" "$(echo "$steal_before $(steal_now)" | awk '{ printf "%.2f", $2 - $1 }')"
    echo "$round|$name|$wall" >> "$work/walls"
}

echo "pull of $SIZE_MIB MiB over loopback (wall time, peak RSS, throughput, CPU user + sys of the client process)"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"

urls=()
args=()
for i in $(seq 1 "$FILES"); do
    sha=$(sha256sum "$work/src/model-0000$i-of-0000$FILES.safetensors" | cut -d' ' -f1)
    urls+=("http://127.0.0.1:$((PORT + 1))/cdn/$sha")
done
for i in $(seq 0 $((FILES - 1))); do args+=(-o "$work/curl/$i" "${urls[$i]}"); done

# CPU seconds (user, sys) a process has used so far, and its major page faults (pages read from disk).
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f %.2f %d", $14 / t, $15 / t, $12 }' "/proc/$1/stat"; }

release_daemon() {
    local bin=$1 label="modelctl pull (release daemon)"
    [ "$bin" != .build/release ] && label="modelctl pull ($(basename "$bin"))"
    [ -x "$bin/modeld" ] && [ -x "$bin/modelctl" ] || return 0
    local url="http://127.0.0.1:$((PORT + 2))"
    rm -rf "$work/daemon"; mkdir -p "$work/daemon"
    HF_ENDPOINT="http://127.0.0.1:$PORT" "$bin/modeld" --data-dir "$work/daemon" --listen "127.0.0.1:$((PORT + 2))" \
        --control-socket "$work/daemon/modeld.sock" > "$work/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 1 100); do curl -s -o /dev/null "$url/health" && break; sleep 0.1; done
    sleep 1
    local idle before after
    idle=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$daemon/status")
    before=$(cpu_of "$daemon")
    measure "$label" "$bin/modelctl" pull bench/big --url "$url"
    after=$(cpu_of "$daemon")
    echo "  daemon: VmHWM $(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$daemon/status") MiB (idle before the pull: $idle MiB)," \
        "CPU during the pull: user $(echo "$before $after" | awk '{ printf "%.2f", $4 - $1 }') s," \
        "sys $(echo "$before $after" | awk '{ printf "%.2f", $5 - $2 }') s," \
        "major page faults $(echo "$before $after" | awk '{ print $6 - $3 }')"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    daemon=
    rm -rf "$work/daemon"
}

test_bundle() {
    [ -x .build/debug/modeldPackageTests.xctest ] && [ "${TEST_BUNDLE:-1}" != 0 ] || return 0
    # The test bundle run directly (swift test would add its own start-up to the figures).
    measure "modeld PullService (test bundle)" env MODELD_BENCH_ENDPOINT="http://127.0.0.1:$PORT" MODELD_BENCH_REPO=bench/big \
        MODELD_BENCH_DATA="$work/ours" .build/debug/modeldPackageTests.xctest --testing-library swift-testing --filter "PullBenchmark/pull"
    grep -o 'bench: .*' "$work/modeld PullService (test bundle).out" || true
    rm -rf "$work/ours"
}

for round in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for dir in ${RELEASE_DIRS:-.build/release}; do release_daemon "$dir"; done
    test_bundle
    rm -rf "$work/curl"; mkdir -p "$work/curl"
    measure "curl --parallel (4 streams)" curl -s --parallel --parallel-max 4 "${args[@]}"
    rm -rf "$work/curl"; mkdir -p "$work/curl"
    measure "curl (1 stream, sequential)" curl -s "${args[@]}"
    rm -rf "$work/curl"
    if [ "${HF_HUB:-1}" != 0 ]; then
        measure "huggingface_hub.snapshot_download" env HF_ENDPOINT="http://127.0.0.1:$PORT" HF_HUB_CACHE="$work/hf" \
            HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_ENABLE_HF_TRANSFER=0 \
            python3 -c "from huggingface_hub import snapshot_download; print(snapshot_download('bench/big'))"
        rm -rf "$work/hf"
    fi
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
# Each modeld row's throughput against each curl row's in the same round, and the median over the rounds.
python3 - "$work/walls" <<'PY'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    r, name, wall = line.rstrip("\n").split("|")
    rounds.setdefault(r, {})[name] = float(wall)
names = [n for n in next(iter(rounds.values())) if n.startswith("modelctl") or n.startswith("modeld")]
peers = [n for n in next(iter(rounds.values())) if not (n.startswith("modelctl") or n.startswith("modeld"))]
for name in names:
    for peer in peers:
        ratios = [walls[peer] / walls[name] for walls in rounds.values() if name in walls and peer in walls]
        if ratios:
            print("%s x %s: median %.2f (%s)" % (name, peer, statistics.median(ratios), ", ".join("%.2f" % r for r in ratios)))
PY
