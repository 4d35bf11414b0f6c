#!/usr/bin/env bash
# Decode (and prefill) tokens/s of the built-in engine beside llama.cpp on one mixture-of-experts model: Qwen3-30B-A3B
# scaled down (docs/benchmarks.md records the figures). Same expert count (128) and experts per token (8); hidden 1024,
# 16 heads of 64 and 2 KV heads, expert width 256, 4 layers, every layer sparse, the tiny fixture vocabulary (705 tokens,
# so the output head is negligible and decode is the experts and attention). Seeded random bf16 weights: 414 M
# parameters (0.83 GB), about 36 M of them (72 MB) read per decoded token.
#
#   scripts/bench-moe.sh            # after `swift build -c release` and scripts/build-llamacpp.sh
#
# Writes, once, under $BENCH_DIR (default .build/bench-moe; nothing of it is committed): the Hugging Face model
# directory and its BF16 GGUF made by llama.cpp's converter (scripts/convert-hf-gguf.py). Then measures back to back:
# `modeld engine bench` on the GGUF and on the safetensors directory, and `llama-bench` on the GGUF; each figure is
# the best of REPEATS runs. Environment: PROMPT_TOKENS (64), GEN_TOKENS (64), THREADS (2), REPEATS (3), BENCH_DIR,
# MODELD (the binary: .build/release/modeld).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/.build/bench-moe}
PROMPT_TOKENS=${PROMPT_TOKENS:-64}
GEN_TOKENS=${GEN_TOKENS:-64}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
MODELD=${MODELD:-$ROOT/.build/release/modeld}
MODEL=$BENCH_DIR/qwen3moe-a128-k8
GGUF=$BENCH_DIR/qwen3moe-a128-k8-bf16.gguf

log() { echo "== $*" >&2; }
[ -x "$MODELD" ] || { echo "build modeld first: swift build -c release" >&2; exit 1; }
BIN=$("$ROOT/scripts/build-llamacpp.sh")
SRC=$(ls -d "$ROOT"/.build/llama.cpp/src-* | tail -1)
mkdir -p "$BENCH_DIR"

if [ ! -f "$MODEL/model.safetensors" ]; then
    log "writing $MODEL"
    python3 - "$ROOT/Tests/BuiltinEngineTests/Fixtures/models/qwen3moe-tiny" "$MODEL" <<'EOF'
import json, shutil, sys
from pathlib import Path
import torch
from safetensors.torch import save_file

fixture, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
    shutil.copyfile(fixture / name, out / name)
config = json.loads((fixture / "config.json").read_text())
config.update(hidden_size=1024, intermediate_size=3072, moe_intermediate_size=256, num_experts=128, num_experts_per_tok=8,
              norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=4, num_attention_heads=16,
              num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, layer_types=["full_attention"] * 4,
              torch_dtype="bfloat16")
config.pop("num_local_experts", None)
(out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
g = torch.Generator().manual_seed(0)
H, E, W, V = 1024, 128, 256, config["vocab_size"]
def normal(*shape):
    return (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
tensors = {"model.embed_tokens.weight": normal(V, H), "lm_head.weight": normal(V, H),
           "model.norm.weight": torch.ones(H, dtype=torch.bfloat16)}
for i in range(4):
    p = f"model.layers.{i}."
    tensors[p + "input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[p + "post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[p + "self_attn.q_norm.weight"] = torch.ones(64, dtype=torch.bfloat16)
    tensors[p + "self_attn.k_norm.weight"] = torch.ones(64, dtype=torch.bfloat16)
    tensors[p + "self_attn.q_proj.weight"] = normal(16 * 64, H)
    tensors[p + "self_attn.k_proj.weight"] = normal(2 * 64, H)
    tensors[p + "self_attn.v_proj.weight"] = normal(2 * 64, H)
    tensors[p + "self_attn.o_proj.weight"] = normal(H, 16 * 64)
    # A router with spread-out scores, so tokens go to many different experts as in a trained model.
    tensors[p + "mlp.gate.weight"] = (torch.randn((E, H), generator=g)).to(torch.bfloat16)
    for e in range(E):
        tensors[p + f"mlp.experts.{e}.gate_proj.weight"] = normal(W, H)
        tensors[p + f"mlp.experts.{e}.up_proj.weight"] = normal(W, H)
        tensors[p + f"mlp.experts.{e}.down_proj.weight"] = normal(H, W)
save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
EOF
fi
if [ ! -s "$GGUF" ]; then
    log "converting to a BF16 GGUF"
    python3 "$ROOT/scripts/convert-hf-gguf.py" "$SRC" qwen2 "$MODEL" --outtype bf16 --outfile "$GGUF.part" >/dev/null 2>&1
    mv "$GGUF.part" "$GGUF"
fi

RESULTS=$BENCH_DIR/results.tsv
: > "$RESULTS"
best() { sort -g | tail -1; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
bench_modeld() {
    local name=$1 model=$2 line
    local prefill=() decode=()
    for _ in $(seq "$REPEATS"); do
        line=$(MODELD_ENGINE_THREADS=$THREADS "$MODELD" engine bench --model "$model" --prompt-tokens "$PROMPT_TOKENS" \
            --gen-tokens "$GEN_TOKENS")
        echo "$name: $line" >&2
        prefill+=("$(sed -E 's/^prefill [0-9]+ tokens: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
        decode+=("$(sed -E 's/.*x batch 1: ([0-9.]+) tok\/s.*/\1/' <<<"$line")")
    done
    printf '%s\t%s\t%s\n' "$name" "$(printf '%s\n' "${prefill[@]}" | best)" "$(printf '%s\n' "${decode[@]}" | best)" >> "$RESULTS"
}
bench_modeld "modeld, BF16 GGUF" "$GGUF"
bench_modeld "modeld, bf16 safetensors" "$MODEL"
"$BIN/llama-bench" -m "$GGUF" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -t "$THREADS" -r "$REPEATS" -o json \
    > "$BENCH_DIR/llama-bench.json" 2>/dev/null
python3 - "$BENCH_DIR/llama-bench.json" >> "$RESULTS" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))
for r in runs:
    print(f"llama-bench: pp{r['n_prompt']} tg{r['n_gen']}: runs {[round(x, 1) for x in r['samples_ts']]} tok/s", file=sys.stderr)
pp = max(max(r["samples_ts"]) for r in runs if r["n_prompt"] > 0)
tg = max(max(r["samples_ts"]) for r in runs if r["n_gen"] > 0)
print(f"llama.cpp (llama-bench, BF16 GGUF)\t{pp}\t{tg}")
EOF
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
python3 - "$RESULTS" "$PROMPT_TOKENS" "$GEN_TOKENS" "$THREADS" "$REPEATS" "$LOAD_BEFORE" "$LOAD_AFTER" "$CPU" <<'EOF'
import datetime, sys
path, prompt, gen, threads, repeats, before, after, cpu = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(path)]
llama = rows[-1]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"{now}, {cpu}, {threads} threads; load average {before} before, {after} after.")
print(f"Qwen3-MoE, 128 experts, 8 per token, random bf16 weights; prefill {prompt} tokens, decode {gen} (batch 1); best of {repeats}.")
print()
print("| engine | prefill tok/s | decode tok/s | decode / llama.cpp's |")
print("|---|---|---|---|")
for name, prefill, decode in rows:
    print(f"| {name} | {float(prefill):.1f} | {float(decode):.1f} | {float(decode) / float(llama[2]):.2f}x |")
EOF
