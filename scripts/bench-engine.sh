#!/usr/bin/env bash
# The built-in engine beside llama.cpp and transformers, in one run, on the same random-weight model of
# Qwen2.5-0.5B's exact shape in bf16 (docs/benchmarks.md records the figures).
#
#   scripts/bench-engine.sh            # after `swift build -c release`
#
# Sets up, once, under $BENCH_DIR (default .build/bench-engine; nothing of it is committed):
#   - a Python venv with torch (CPU), transformers, safetensors, numpy, sentencepiece and cmake;
#   - the model directory (scripts/make-bench-model.py: real config, random bf16 weights, real Qwen2 tokenizer);
#   - llama.cpp's llama-bench, compiled natively from the llama-cpp-python source archive on PyPI
#     (its vendor/llama.cpp), and the model converted to a BF16 GGUF by that archive's convert_hf_to_gguf.py.
# Then measures, back to back: modeld engine bench (as configured, then with MODELD_ENGINE_AMX=0, the f32
# kernels), llama-bench, transformers bf16 and f32; prints a table with each one's prefill and decode
# tok/s and our ratio to each.
#
# Also prints the memory read bandwidth PyTorch reaches summing 1 GiB on the same threads: decode reads
# every weight once per token, so bandwidth / 988 MB is the decode ceiling for bf16.
#
# Environment: PROMPT_TOKENS (128), GEN_TOKENS (64), THREADS (2), LLAMA_CPP_PYTHON (0.3.36), BENCH_DIR,
# REPEATS (3: each figure is the best of that many runs, to damp a shared machine's noise), TORCH_REPEATS
# (1: transformers' runs are the longest; its decode measured 10.6 tok/s here idle, about 1 tok/s under load),
# LLAMA (1; 0 skips llama.cpp: no source download, no compile, no row), MODELD (the binary: .build/release/modeld).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/.build/bench-engine}
PROMPT_TOKENS=${PROMPT_TOKENS:-128}
GEN_TOKENS=${GEN_TOKENS:-64}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
TORCH_REPEATS=${TORCH_REPEATS:-1}
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-0.3.36}
LLAMA=${LLAMA:-1}
MODELD=${MODELD:-$ROOT/.build/release/modeld}
VENV=$BENCH_DIR/venv
PY=$VENV/bin/python
MODEL=$BENCH_DIR/qwen2.5-0.5b-random
GGUF=$BENCH_DIR/qwen2.5-0.5b-random-bf16.gguf
LLAMA_SRC=$BENCH_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON
LLAMA_BENCH=$LLAMA_SRC/build/bin/llama-bench

log() { echo "== $*" >&2; }

[ -x "$MODELD" ] || { echo "build modeld first: swift build -c release" >&2; exit 1; }
mkdir -p "$BENCH_DIR"

# --- Python peers -------------------------------------------------------------------------------
if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }
if ! "$PY" -c "import torch" 2>/dev/null; then
    # The CPU-only wheel (about 200 MB) from PyTorch's index; where that index cannot be reached, a CPU
    # wheel from pip's configured find-links; failing both, PyPI's default wheel (CUDA-enabled, large).
    log "installing torch (CPU)"
    pip install --index-url https://download.pytorch.org/whl/cpu torch 2>/dev/null \
        || pip install --no-index torch 2>/dev/null \
        || pip install torch
fi
"$PY" -c "import transformers, safetensors, numpy, sentencepiece, cmake" 2>/dev/null \
    || { log "installing transformers, safetensors, numpy, sentencepiece, cmake"; \
         pip install transformers safetensors numpy sentencepiece cmake; }

# --- The model ----------------------------------------------------------------------------------
"$PY" "$ROOT/scripts/make-bench-model.py" "$MODEL" >&2

# --- llama.cpp ----------------------------------------------------------------------------------
if [ "$LLAMA" = 1 ] && [ ! -x "$LLAMA_BENCH" ]; then
    log "fetching the llama-cpp-python $LLAMA_CPP_PYTHON source archive"
    # Only llama-cpp-python as source: `:all:` would also build its build dependencies (cmake) from source.
    pip download --no-deps --no-binary llama-cpp-python -d "$BENCH_DIR" "llama-cpp-python==$LLAMA_CPP_PYTHON"
    tar -xzf "$BENCH_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" -C "$BENCH_DIR"
    log "compiling llama-bench (native, a few minutes)"
    CMAKE=$VENV/bin/cmake
    "$CMAKE" -S "$LLAMA_SRC/vendor/llama.cpp" -B "$LLAMA_SRC/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF >&2
    "$CMAKE" --build "$LLAMA_SRC/build" --target llama-bench -j "$(nproc)" >&2
fi
if [ "$LLAMA" = 1 ] && [ ! -s "$GGUF" ]; then
    log "converting the model to a BF16 GGUF"
    # The archive's own gguf-py (the script puts it on sys.path) matches its converter.
    "$PY" "$LLAMA_SRC/vendor/llama.cpp/convert_hf_to_gguf.py" "$MODEL" --outtype bf16 --outfile "$GGUF" >&2
fi

# --- Measurements, back to back -----------------------------------------------------------------
best() { sort -g | tail -1; }
RESULTS=$BENCH_DIR/results.tsv
: > "$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }

log "load before: $(uptime)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BANDWIDTH=$("$PY" - "$THREADS" <<'EOF'
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
)
echo "memory read bandwidth (torch sum of 1 GiB f32, $THREADS threads): $BANDWIDTH GB/s" >&2
# modeld as configured (AMX-BF16 prefill where the CPU has it), then with the f32 kernels only.
bench_modeld() {
    local name=$1 amx=$2 line
    prefill=(); decode=()
    for _ in $(seq "$REPEATS"); do
        line=$(MODELD_ENGINE_THREADS=$THREADS MODELD_ENGINE_AMX=$amx "$MODELD" engine bench --model "$MODEL" \
            --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS")
        echo "$name: $line" >&2
        prefill+=("$(sed -E 's/^prefill [0-9]+ tokens: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
        decode+=("$(sed -E 's/.*x batch 1: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
    done
    record "$name" "$(printf '%s\n' "${prefill[@]}" | best)" "$(printf '%s\n' "${decode[@]}" | best)"
}
bench_modeld modeld "${MODELD_ENGINE_AMX:-1}"
# Without AMX on this CPU the first row already is the f32 kernels.
if grep -qw amx_bf16 /proc/cpuinfo; then bench_modeld "modeld, MODELD_ENGINE_AMX=0 (f32 kernels)" 0; fi

if [ "$LLAMA" = 1 ]; then
"$LLAMA_BENCH" -m "$GGUF" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -t "$THREADS" -r "$REPEATS" -o json \
    > "$BENCH_DIR/llama-bench.json" 2>/dev/null
read -r lp ld < <("$PY" - "$BENCH_DIR/llama-bench.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))
for r in runs:
    samples = [round(x, 1) for x in r["samples_ts"]]
    print(f"llama-bench: pp{r['n_prompt']} tg{r['n_gen']}: runs {samples} tok/s", file=sys.stderr)
# The best run, as for the others (the average mixes in runs that a busy machine slowed).
pp = max(max(r["samples_ts"]) for r in runs if r["n_prompt"] > 0)
tg = max(max(r["samples_ts"]) for r in runs if r["n_gen"] > 0)
print(pp, tg)
EOF
)
record "llama.cpp (llama-bench, BF16 GGUF)" "$lp" "$ld"
fi

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
    record "transformers $transformers_version $dtype (PyTorch $torch_version, eager)" \
        "$(printf '%s\n' "${prefill[@]}" | best)" "$(printf '%s\n' "${decode[@]}" | best)"
done
log "load after: $(uptime)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Report -------------------------------------------------------------------------------------
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
"$PY" - "$RESULTS" "$PROMPT_TOKENS" "$GEN_TOKENS" "$THREADS" "$REPEATS" "$TORCH_REPEATS" "$BANDWIDTH" \
    "$LOAD_BEFORE" "$LOAD_AFTER" "$CPU" <<'EOF'
import datetime, sys
path, prompt, gen, threads, repeats, torch_repeats, bandwidth, load_before, load_after, cpu = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(path)]
ours = rows[0]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"{now}, {cpu}, {threads} threads; load average {load_before} before, {load_after} after.")
print(f"Qwen2.5-0.5B shape, random bf16 weights; prefill {prompt} tokens, decode {gen} tokens (batch 1); "
      f"best of {repeats} (transformers: {torch_repeats}).")
print(f"Memory read bandwidth {bandwidth} GB/s: a bf16 decode ceiling of {float(bandwidth) / 0.988:.0f} tok/s.")
print()
print("| engine | prefill tok/s | decode tok/s | modeld prefill / this | modeld decode / this |")
print("|---|---|---|---|---|")
for name, prefill, decode in rows:
    p, d = float(prefill), float(decode)
    print(f"| {name} | {p:.1f} | {d:.1f} | {float(ours[1]) / p:.2f}x | {float(ours[2]) / d:.2f}x |")
EOF
