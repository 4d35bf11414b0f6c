#!/usr/bin/env bash
# The built-in engine beside llama.cpp and transformers, in one run, on models of Qwen2.5-0.5B's shape: random
# bf16 weights (safetensors), and GGUF Q8_0 and Q4_K_M files (docs/benchmarks.md records the figures).
#
#   scripts/bench-engine.sh            # after `swift build -c release`
#
# Sets up, once, under $BENCH_DIR (default .build/bench-engine; nothing of it is committed):
#   - a Python venv with torch (CPU), transformers, safetensors and numpy (PYTHON names another interpreter
#     that has them, and then nothing is installed);
#   - the bf16 model directory (scripts/make-bench-model.py: real config, random bf16 weights, real Qwen2
#     tokenizer), and its BF16 GGUF by llama.cpp's convert_hf_to_gguf.py, for llama.cpp;
#   - the GGUF models of scripts/make-bench-gguf.py (Qwen2.5-0.5B with the hidden size 1024, random F16 weights,
#     quantized by llama-quantize to Q8_0 and Q4_K_M), read by both engines;
#   - llama.cpp's programs by scripts/build-llamacpp.sh (llama-bench, llama-batched-bench, llama-quantize).
# Then measures per weight type (bf16, Q8_0, Q4_K_M), in REPEATS rounds that alternate the engines: modeld engine
# bench with one stream (its peak RSS too) and with BATCH streams, llama-bench (pp, and tg after a context of
# PROMPT_TOKENS) and llama-batched-bench (BATCH streams, aggregate decode tok/s) on the same weights; for bf16 also with MODELD_ENGINE_AMX=0 where the CPU has AMX, and
# transformers bf16 and f32 (TORCH=0 leaves them out). Prints a table with each figure and our ratios to
# llama.cpp's.
#
# Also prints the memory read bandwidth PyTorch reaches summing 1 GiB on the same threads, before and after:
# decode reads every weight once per token, so the higher bandwidth / weight bytes is the decode ceiling of each
# model.
#
# Environment: PROMPT_TOKENS (128), GEN_TOKENS (64), THREADS (2), BATCH (4), BENCH_DIR, REPEATS (3: each figure
# is the best of that many runs, to damp a shared machine's noise), TORCH (1), TORCH_REPEATS (1: transformers'
# runs are the longest), LLAMA (1; 0 skips llama.cpp: no download, no compile, no GGUF rows),
# LLAMACPP_PYPI_VERSION (0.3.36, scripts/build-llamacpp.sh's), MODELD (the binary: .build/release/modeld), SHAPE (0.5b;
# 1.5b benchmarks Qwen2.5-1.5B's shape: 3.1 GB of bf16 weights, its GGUF files at that shape).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/.build/bench-engine}
PROMPT_TOKENS=${PROMPT_TOKENS:-128}
GEN_TOKENS=${GEN_TOKENS:-64}
THREADS=${THREADS:-2}
BATCH=${BATCH:-4}
REPEATS=${REPEATS:-3}
TORCH=${TORCH:-1}
TORCH_REPEATS=${TORCH_REPEATS:-1}
LLAMA=${LLAMA:-1}
export LLAMACPP_PYPI_VERSION=${LLAMACPP_PYPI_VERSION:-0.3.36}
MODELD=${MODELD:-$ROOT/.build/release/modeld}
VENV=$BENCH_DIR/venv
PY=${PYTHON:-$VENV/bin/python}
SHAPE=${SHAPE:-0.5b}
case "$SHAPE" in 0.5b) PREFIX=bench- ;; 1.5b) PREFIX=bench-1.5b- ;; *) echo "SHAPE is 0.5b or 1.5b" >&2; exit 2 ;; esac
MODEL=$BENCH_DIR/qwen2.5-$SHAPE-random
GGUF=$BENCH_DIR/qwen2.5-$SHAPE-random-bf16.gguf

log() { echo "== $*" >&2; }

[ -x "$MODELD" ] || { echo "build modeld first: swift build -c release" >&2; exit 1; }
mkdir -p "$BENCH_DIR"

# --- Python peers -------------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    [ -x "$PY" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }
    pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }
    if ! "$PY" -c "import torch" 2>/dev/null; then
        # The CPU-only wheel (about 200 MB) from PyTorch's index; where that index cannot be reached, a CPU
        # wheel from pip's configured find-links; failing both, PyPI's default wheel (CUDA-enabled, large).
        log "installing torch (CPU)"
        pip install --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null \
            || pip install --no-index torch 2>/dev/null \
            || pip install torch
    fi
    # sentencepiece: llama.cpp's converter tries it first for Qwen2 vocabularies and fails without the module.
    "$PY" -c "import transformers, safetensors, numpy, sentencepiece" 2>/dev/null \
        || { log "installing transformers, safetensors, numpy, sentencepiece"; pip install transformers safetensors numpy sentencepiece; }
fi

# --- The models and llama.cpp -------------------------------------------------------------------
"$PY" "$ROOT/scripts/make-bench-model.py" "$MODEL" "$SHAPE" >&2
if [ "$LLAMA" = 1 ]; then
    LLAMA_BIN=$("$ROOT/scripts/build-llamacpp.sh")
    LLAMA_SRC=$(dirname "$LLAMA_BIN")/src-$LLAMACPP_PYPI_VERSION
    # The source's own gguf-py matches its converter.
    export PYTHONPATH=$LLAMA_SRC/gguf-py${PYTHONPATH:+:$PYTHONPATH}
    if [ ! -s "$GGUF" ]; then
        log "converting the bf16 model to a BF16 GGUF"
        "$PY" "$LLAMA_SRC/convert_hf_to_gguf.py" "$MODEL" --outtype bf16 --outfile "$GGUF" >&2
    fi
    "$PY" "$ROOT/scripts/make-bench-gguf.py" "$BENCH_DIR" "$LLAMA_SRC/models/ggml-vocab-qwen2.gguf" \
        "$LLAMA_BIN/llama-quantize" "$SHAPE" >&2
fi

# --- Measurements, back to back -----------------------------------------------------------------
best() { sort -g | tail -1; }
RESULTS=$BENCH_DIR/results.tsv
ROUNDS=$BENCH_DIR/rounds.tsv
: > "$RESULTS"
: > "$ROUNDS"
# One row: weight type, name, weight bytes, prefill, decode, BATCH streams' decode (tok/s), peak RSS (bytes);
# "-" where not measured.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }
# One round's figures of one engine: bench_type call, round, weight type, engine (modeld or llama.cpp), prefill,
# decode, BATCH streams.
record_round() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROUNDS"; }
CALL=0

log "load before: $(uptime)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
measure_bandwidth() {
    "$PY" - "$THREADS" <<'EOF'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
data = torch.ones(256 * 1024 * 1024)
data.sum()
best = 0.0
for _ in range(5):
    start = time.perf_counter()
    data.sum()
    best = max(best, data.numel() * 4 / (time.perf_counter() - start) / 1e9)
print(f"{best:.1f}")
EOF
}
BANDWIDTHS=$(measure_bandwidth)
echo "memory read bandwidth (torch sum of 1 GiB f32, $THREADS threads): $BANDWIDTHS GB/s" >&2

# One round of modeld on a model directory or GGUF file: one stream (with its peak RSS), then BATCH streams.
M_PREFILL=() M_DECODE=() M_BATCHED=() M_RSS=-
modeld_round() {
    local name=$1 path=$2 amx=$3 line
    line=$(MODELD_ENGINE_THREADS=$THREADS MODELD_ENGINE_AMX=$amx /usr/bin/time -f "%M" -o "$BENCH_DIR/rss.txt" \
        "$MODELD" engine bench --model "$path" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS")
    echo "$name: $line" >&2
    [ "$M_RSS" = - ] && M_RSS=$(( $(tail -1 "$BENCH_DIR/rss.txt") * 1024 ))
    M_PREFILL+=("$(sed -E 's/^prefill [0-9]+ tokens: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
    M_DECODE+=("$(sed -E 's/.*x batch 1: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
    line=$(MODELD_ENGINE_THREADS=$THREADS MODELD_ENGINE_AMX=$amx "$MODELD" engine bench --model "$path" \
        --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --batch "$BATCH")
    echo "$name: $line" >&2
    M_BATCHED+=("$(sed -E 's/.*x batch [0-9]+: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
}

# One round of llama.cpp on a GGUF file: llama-bench's prefill (an empty context) and decode (after PROMPT_TOKENS of
# context, `-d`, as modeld's decode follows its prefill), and llama-batched-bench (BATCH streams of PROMPT_TOKENS +
# GEN_TOKENS: its decode figure, the aggregate).
L_PREFILL=() L_DECODE=() L_BATCHED=()
llama_round() {
    local file=$1 lp ld line
    { "$LLAMA_BIN/llama-bench" -m "$file" -p "$PROMPT_TOKENS" -n 0 -t "$THREADS" -r 1 -o jsonl
      "$LLAMA_BIN/llama-bench" -m "$file" -p 0 -n "$GEN_TOKENS" -d "$PROMPT_TOKENS" -t "$THREADS" -r 1 -o jsonl
    } > "$BENCH_DIR/llama-bench.jsonl" 2>/dev/null
    read -r lp ld < <("$PY" - "$BENCH_DIR/llama-bench.jsonl" <<'EOF'
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
pp = max(max(r["samples_ts"]) for r in runs if r["n_prompt"] > 0)
tg = max(max(r["samples_ts"]) for r in runs if r["n_gen"] > 0)
depth = next(r["n_depth"] for r in runs if r["n_gen"] > 0)
print(f"llama-bench: pp {pp:.1f} tg {tg:.1f} tok/s (tg at depth {depth})", file=sys.stderr)
print(pp, tg)
EOF
)
    L_PREFILL+=("$lp") L_DECODE+=("$ld")
    line=$("$LLAMA_BIN/llama-batched-bench" -m "$file" -c $((BATCH * (PROMPT_TOKENS + GEN_TOKENS) + 64)) \
        -b 2048 -ub 512 -npp "$PROMPT_TOKENS" -ntg "$GEN_TOKENS" -npl "$BATCH" -t "$THREADS" \
        --output-format jsonl 2>/dev/null | grep '^{' | tail -1)
    echo "llama-batched-bench: $line" >&2
    L_BATCHED+=("$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["speed_tg"])' "$line")")
}

# REPEATS rounds of modeld on `path` and, given a GGUF file, of llama.cpp on it, alternating, so that a drift in
# the machine's speed (a shared host's memory bandwidth moves by a third over minutes) reaches both; each figure
# is the best of its rounds.
bench_type() {
    local kind=$1 name=$2 path=$3 bytes=$4 amx=$5 gguf=${6:-}
    M_PREFILL=() M_DECODE=() M_BATCHED=() M_RSS=- L_PREFILL=() L_DECODE=() L_BATCHED=()
    CALL=$((CALL + 1))
    for round in $(seq "$REPEATS"); do
        # This round's decode ceiling: the bandwidth right before it.
        record_round "$CALL" "$round" "$kind" bandwidth "$(measure_bandwidth)" - -
        modeld_round "$name" "$path" "$amx"
        record_round "$CALL" "$round" "$kind" modeld "${M_PREFILL[-1]}" "${M_DECODE[-1]}" "${M_BATCHED[-1]}"
        if [ -n "$gguf" ]; then
            llama_round "$gguf"
            record_round "$CALL" "$round" "$kind" llama.cpp "${L_PREFILL[-1]}" "${L_DECODE[-1]}" "${L_BATCHED[-1]}"
        fi
    done
    record "$kind" "$name" "$bytes" "$(printf '%s\n' "${M_PREFILL[@]}" | best)" \
        "$(printf '%s\n' "${M_DECODE[@]}" | best)" "$(printf '%s\n' "${M_BATCHED[@]}" | best)" "$M_RSS"
    if [ -n "$gguf" ]; then
        record "$kind" "llama.cpp, $(basename "$gguf")" - "$(printf '%s\n' "${L_PREFILL[@]}" | best)" \
            "$(printf '%s\n' "${L_DECODE[@]}" | best)" "$(printf '%s\n' "${L_BATCHED[@]}" | best)" -
    fi
}

# The weight bytes a decode step reads: the bf16 model's safetensors, the whole GGUF file.
bf16_bytes=$(cat "$MODEL"/*.safetensors | wc -c)
if [ "$LLAMA" = 1 ]; then
    bench_type bf16 "modeld, bf16 safetensors" "$MODEL" "$bf16_bytes" "${MODELD_ENGINE_AMX:-1}" "$GGUF"
else
    bench_type bf16 "modeld, bf16 safetensors" "$MODEL" "$bf16_bytes" "${MODELD_ENGINE_AMX:-1}"
fi
# Without AMX on this CPU the first row already is the f32 kernels.
if grep -qw amx_bf16 /proc/cpuinfo; then
    bench_type bf16 "modeld, bf16, MODELD_ENGINE_AMX=0 (f32 kernels)" "$MODEL" "$bf16_bytes" 0
fi
if [ "$LLAMA" = 1 ]; then
    for type in q8_0 q4_k_m; do
        file=$BENCH_DIR/$PREFIX$type.gguf
        bench_type "$type" "modeld, $(basename "$file")" "$file" "$(stat -c %s "$file")" "${MODELD_ENGINE_AMX:-1}" "$file"
    done
fi
# The bandwidth again at the end: the ceiling is the higher figure.
BANDWIDTHS="$BANDWIDTHS $(measure_bandwidth)"
echo "memory read bandwidth, before and after: $BANDWIDTHS GB/s" >&2
BANDWIDTH=$(tr ' ' '\n' <<<"$BANDWIDTHS" | best)

if [ "$TORCH" = 1 ]; then
    for dtype in bf16 f32; do
        prefill=(); decode=()
        for _ in $(seq "$TORCH_REPEATS"); do
            out=$("$PY" "$ROOT/scripts/bench-transformers.py" "$MODEL" --dtype $dtype --threads "$THREADS" \
                --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" 2>/dev/null | tail -1)
            echo "transformers: $out" >&2
            read -r tps_prefill tps_decode transformers_version torch_version < <("$PY" -c '
import json, sys
r = json.load(sys.stdin)
print(r["prefill_tps"], r["decode_tps"], r["transformers"], r["torch"])' <<<"$out")
            prefill+=("$tps_prefill"); decode+=("$tps_decode")
        done
        record bf16 "transformers $transformers_version $dtype (PyTorch $torch_version, eager)" - \
            "$(printf '%s\n' "${prefill[@]}" | best)" "$(printf '%s\n' "${decode[@]}" | best)" - -
    done
fi
log "load after: $(uptime)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Report -------------------------------------------------------------------------------------
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
"$PY" - "$RESULTS" "$ROUNDS" "$PROMPT_TOKENS" "$GEN_TOKENS" "$THREADS" "$BATCH" "$REPEATS" "$TORCH_REPEATS" "$BANDWIDTHS" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$CPU" "$SHAPE" <<'EOF'
import datetime, statistics, sys
path, rounds_path, prompt, gen, threads, batch, repeats, torch_repeats, bandwidths, load_before, load_after, cpu, shape = sys.argv[1:]
bandwidth = max(map(float, bandwidths.split()))
rows = [line.rstrip("\n").split("\t") for line in open(path)]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"{now}, {cpu}, {threads} threads; load average {load_before} before, {load_after} after.")
widened = " (the GGUF models with hidden size 1024)" if shape == "0.5b" else ""
print(f"Qwen2.5-{shape.upper()} shape{widened}, random weights; prefill {prompt} tokens, decode "
      f"{gen} tokens with 1 stream and with {batch} (aggregate); best of {repeats} rounds, modeld's and llama.cpp's "
      f"alternating (transformers: {torch_repeats}).")
print(f"Memory read bandwidth {' and '.join(bandwidths.split())} GB/s before and after; a model's decode ceiling is "
      f"{bandwidth} GB/s over its weight bytes.")
print()


def number(text):
    return None if text == "-" else float(text)


def figure(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a, b):
    return "" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


print(f"| weights | engine | prefill tok/s | decode tok/s | decode ceiling tok/s | decode / ceiling | {batch} streams tok/s "
      f"| peak RSS / weights | prefill / llama.cpp | decode / llama.cpp | {batch} streams / llama.cpp |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for kind, name, size, prefill, decode, batched, rss in rows:
    size, prefill, decode, batched, rss = map(number, (size, prefill, decode, batched, rss))
    peer = next((r for r in rows if r[0] == kind and r[1].startswith("llama.cpp")), None)
    lp, ld, lb = (number(peer[3]), number(peer[4]), number(peer[5])) if peer and name.startswith("modeld") else (None,) * 3
    ceiling = float(bandwidth) * 1e9 / size if size else None
    print(f"| {kind} | {name} | {figure(prefill)} | {figure(decode)} | {figure(ceiling)} | {ratio(decode, ceiling)} | "
          f"{figure(batched)} | {ratio(rss, size)} | {ratio(prefill, lp)} | {ratio(decode, ld)} | {ratio(batched, lb)} |")

# Each modeld round against the llama.cpp round right after it, and its decode against the bandwidth measured right
# before it: the machine's speed drifts, and a best-of-N figure takes each engine's luckiest minute, so the paired
# ratios' medians are the steadier comparison.
sizes = {r[0]: number(r[2]) for r in rows if r[1].startswith("modeld") and number(r[2])}
pairs = {}
for call, round_, kind, engine, *figures in (line.rstrip("\n").split("\t") for line in open(rounds_path)):
    pairs.setdefault((call, round_), {})[engine] = (kind, [number(f) for f in figures])
by_kind = {}
for pair in pairs.values():
    if "modeld" not in pair:
        continue
    kind, ours = pair["modeld"]
    entry = by_kind.setdefault(kind, {"ceiling": [], "peer": []})
    if "bandwidth" in pair and kind in sizes:
        entry["ceiling"].append(ours[1] / (pair["bandwidth"][1][0] * 1e9 / sizes[kind]))
    if "llama.cpp" in pair:
        entry["peer"].append([a / b for a, b in zip(ours, pair["llama.cpp"][1])])


def spread(values):
    return f"{statistics.median(values):.2f}x ({min(values):.2f}–{max(values):.2f})" if values else ""


print()
print("Paired rounds: modeld's decode over the ceiling measured right before it, and each modeld figure over the "
      "llama.cpp round right after it; median (lowest–highest).")
print()
print(f"| weights | decode / ceiling | prefill / llama.cpp | decode / llama.cpp | {batch} streams / llama.cpp |")
print("|---|---|---|---|---|")
for kind, entry in by_kind.items():
    peer = [spread(list(c)) for c in zip(*entry["peer"])] if entry["peer"] else ["", "", ""]
    print(f"| {kind} | {spread(entry['ceiling'])} | " + " | ".join(peer) + " |")
EOF
