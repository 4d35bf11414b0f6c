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
# Then measures per weight type (bf16, Q8_0, Q4_K_M), in REPEATS rounds that alternate the engines: the memory read
# bandwidth PyTorch reaches summing 1 GiB on the same threads (decode reads every weight once per token, so
# bandwidth / weight bytes is a model's decode ceiling), modeld engine bench with one stream (its peak RSS too) and
# with BATCH streams, llama-bench (pp, and tg after a context of PROMPT_TOKENS) and llama-batched-bench (BATCH
# streams, aggregate decode tok/s) on the same weights; for bf16 also with MODELD_ENGINE_AMX=0 where the CPU has
# AMX, and transformers bf16 and f32 (TORCH=0 leaves them out). Prints each engine's best round with our ratios to
# llama.cpp's, then the medians of the paired rounds' ratios.
#
# Environment: PROMPT_TOKENS (128), GEN_TOKENS (64), THREADS (2), BATCH (4), BENCH_DIR, REPEATS (3 rounds, to damp
# a shared machine's noise), TORCH (1), TORCH_REPEATS (1: transformers'
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

# --- Measurements, in rounds ---------------------------------------------------------------------
best() { sort -g | tail -1; }
RESULTS=$BENCH_DIR/results.tsv
ROUNDS=$BENCH_DIR/rounds.tsv
: > "$RESULTS"
: > "$ROUNDS"
# One row per engine configuration: weight type, name, weight bytes, prefill, decode, BATCH streams' decode (tok/s),
# peak RSS (bytes); "-" where not measured, and the figures of engines measured in rounds come from ROUNDS.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }
# One round's figures: bench_type call, round, weight type, name (a RESULTS row's, or "bandwidth"), prefill, decode,
# BATCH streams' decode (bandwidth: GB/s, -, -).
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

# One round of modeld on a model directory or GGUF file: one stream (its peak RSS into M_RSS), then BATCH streams.
M_RSS=-
modeld_round() {
    local kind=$1 name=$2 path=$3 amx=$4 round=$5 single batched
    single=$(MODELD_ENGINE_THREADS=$THREADS MODELD_ENGINE_AMX=$amx /usr/bin/time -f "%M" -o "$BENCH_DIR/rss.txt" \
        "$MODELD" engine bench --model "$path" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS")
    echo "$name: $single" >&2
    [ "$M_RSS" = - ] && M_RSS=$(( $(tail -1 "$BENCH_DIR/rss.txt") * 1024 ))
    batched=$(MODELD_ENGINE_THREADS=$THREADS MODELD_ENGINE_AMX=$amx "$MODELD" engine bench --model "$path" \
        --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --batch "$BATCH")
    echo "$name: $batched" >&2
    record_round "$CALL" "$round" "$kind" "$name" "$(sed -E 's/^prefill [0-9]+ tokens: ([0-9.]+) tok\/s.*/\1/' <<<"$single")" \
        "$(sed -E 's/.*x batch 1: ([0-9.]+) tok\/s.*/\1/' <<<"$single")" \
        "$(sed -E 's/.*x batch [0-9]+: ([0-9.]+) tok\/s.*/\1/' <<<"$batched")"
}

# One round of llama.cpp on a GGUF file: llama-bench's prefill (an empty context) and decode (after PROMPT_TOKENS of
# context, `-d`, as modeld's decode follows its prefill), and llama-batched-bench (BATCH streams of PROMPT_TOKENS +
# GEN_TOKENS: its decode figure, the aggregate).
llama_round() {
    local kind=$1 file=$2 round=$3 lp ld line
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
    line=$("$LLAMA_BIN/llama-batched-bench" -m "$file" -c $((BATCH * (PROMPT_TOKENS + GEN_TOKENS) + 64)) \
        -b 2048 -ub 512 -npp "$PROMPT_TOKENS" -ntg "$GEN_TOKENS" -npl "$BATCH" -t "$THREADS" \
        --output-format jsonl 2>/dev/null | grep '^{' | tail -1)
    echo "llama-batched-bench: $line" >&2
    record_round "$CALL" "$round" "$kind" "llama.cpp, $(basename "$file")" "$lp" "$ld" \
        "$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["speed_tg"])' "$line")"
}

# REPEATS rounds, each the bandwidth, then modeld on `path` and, given a GGUF file, llama.cpp on it, so that a drift
# in the machine's speed (a shared host's memory bandwidth moves by a third over minutes) reaches both.
bench_type() {
    local kind=$1 name=$2 path=$3 bytes=$4 amx=$5 gguf=${6:-} bandwidth
    M_RSS=-
    CALL=$((CALL + 1))
    for round in $(seq "$REPEATS"); do
        bandwidth=$(measure_bandwidth)
        echo "memory read bandwidth (torch sum of 1 GiB f32, $THREADS threads): $bandwidth GB/s" >&2
        record_round "$CALL" "$round" "$kind" bandwidth "$bandwidth" - -
        modeld_round "$kind" "$name" "$path" "$amx" "$round"
        [ -n "$gguf" ] && llama_round "$kind" "$gguf" "$round"
    done
    record "$kind" "$name" "$bytes" - - - "$M_RSS"
    [ -n "$gguf" ] && record "$kind" "llama.cpp, $(basename "$gguf")" - - - - -
    return 0
}

# The weight bytes a decode step reads: the bf16 model's safetensors, the whole GGUF file.
bf16_bytes=$(cat "$MODEL"/*.safetensors | wc -c)
bench_type bf16 "modeld, bf16 safetensors" "$MODEL" "$bf16_bytes" "${MODELD_ENGINE_AMX:-1}" "$([ "$LLAMA" = 1 ] && echo "$GGUF")"
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
"$PY" - "$RESULTS" "$ROUNDS" "$PROMPT_TOKENS" "$GEN_TOKENS" "$THREADS" "$BATCH" "$REPEATS" "$TORCH_REPEATS" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$CPU" "$SHAPE" <<'EOF'
import datetime, statistics, sys
path, rounds_path, prompt, gen, threads, batch, repeats, torch_repeats, load_before, load_after, cpu, shape = sys.argv[1:]


def number(text):
    return None if text == "-" else float(text)


rounds = [line.rstrip("\n").split("\t") for line in open(rounds_path)]
# Each engine's best round, figure by figure, into its row; the ceiling from the highest bandwidth of all rounds.
best = {}
for _, _, kind, name, *figures in rounds:
    previous = best.get((kind, name), [None] * 3)
    best[(kind, name)] = [max(filter(None, (a, number(b))), default=None) for a, b in zip(previous, figures)]
bandwidths = [number(r[4]) for r in rounds if r[3] == "bandwidth"]
bandwidth, lowest = max(bandwidths), min(bandwidths)
rows = []
for kind, name, size, *figures, rss in (line.rstrip("\n").split("\t") for line in open(path)):
    if (kind, name) in best:
        figures = [text if value is None else str(value) for text, value in zip(figures, best[(kind, name)])]
    rows.append([kind, name, size, *figures, rss])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"{now}, {cpu}, {threads} threads; load average {load_before} before, {load_after} after.")
widened = " (the GGUF models with hidden size 1024)" if shape == "0.5b" else ""
print(f"Qwen2.5-{shape.upper()} shape{widened}, random weights; prefill {prompt} tokens, decode "
      f"{gen} tokens with 1 stream and with {batch} (aggregate); best of {repeats} rounds, modeld's and llama.cpp's "
      f"alternating (transformers: {torch_repeats}).")
print(f"Memory read bandwidth {lowest}–{bandwidth} GB/s over the rounds; in the first table a model's decode ceiling is "
      f"{bandwidth} GB/s over its weight bytes.")
print()


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
for call, round_, kind, name, *figures in rounds:
    engine = "bandwidth" if name == "bandwidth" else "llama.cpp" if name.startswith("llama.cpp") else "modeld"
    pairs.setdefault((call, round_), {})[engine] = (kind, [number(f) for f in figures])
    if engine == "modeld":
        pairs[(call, round_)]["modeld name"] = name
by_kind = {}
for pair in pairs.values():
    kind, ours = pair["modeld"]
    entry = by_kind.setdefault((kind, pair["modeld name"]), {"ceiling": [], "peer": []})
    if kind in sizes:
        entry["ceiling"].append(ours[1] / (pair["bandwidth"][1][0] * 1e9 / sizes[kind]))
    if "llama.cpp" in pair:
        entry["peer"].append([a / b for a, b in zip(ours, pair["llama.cpp"][1])])

def spread(values):
    return f"{statistics.median(values):.2f}x ({min(values):.2f}–{max(values):.2f})" if values else ""


print()
print("Paired rounds: modeld's decode over the ceiling measured right before it, and each modeld figure over the "
      "llama.cpp round right after it; median (lowest–highest).")
print()
print(f"| weights | engine | decode / ceiling | prefill / llama.cpp | decode / llama.cpp | {batch} streams / llama.cpp |")
print("|---|---|---|---|---|---|")
for (kind, name), entry in by_kind.items():
    peer = [spread(list(c)) for c in zip(*entry["peer"])] if entry["peer"] else ["", "", ""]
    print(f"| {kind} | {name} | {spread(entry['ceiling'])} | " + " | ".join(peer) + " |")
EOF
