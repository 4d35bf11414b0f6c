#!/usr/bin/env python3
"""Writes a random-weight GGUF model for the engine benchmark, then its Q8_0 and Q4_K_M quantizations.

    make-bench-gguf.py OUT_DIR VOCAB_GGUF LLAMA_QUANTIZE [0.5b|1.5b]

The shape is Qwen2.5-0.5B's with the hidden size widened from 896 to 1024 (so every row is whole 256-element
k-quant blocks; with 896 llama-quantize replaces Q4_K by Q5_0): 24 layers, 16 heads of 64, 2 KV heads,
intermediate 4864, the Qwen2 vocabulary (151936, tied embedding). Weights are seeded normal(0, 0.02) in F16;
the tokenizer keys are copied from VOCAB_GGUF (llama.cpp's models/ggml-vocab-qwen2.gguf). Writes
OUT_DIR/bench-f16.gguf, bench-q8_0.gguf and bench-q4_k_m.gguf; skips files that exist. With 1.5b, Qwen2.5-1.5B's
own shape (hidden 1536, already whole k-quant blocks; 28 layers, 12 heads of 128, 2 KV heads, intermediate 8960) in
bench-1.5b-*.gguf.
"""

import os
import subprocess
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

VOCAB = 151936
# hidden, intermediate, layers, heads, KV heads, head size; the files' name prefix.
SHAPES = {"0.5b": ((1024, 4864, 24, 16, 2, 64), "bench-"), "1.5b": ((1536, 8960, 28, 12, 2, 128), "bench-1.5b-")}


def write_f16(path, vocab_path, shape):
    HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = shape
    rng = np.random.default_rng(0)
    writer = GGUFWriter(path, "qwen2")
    writer.add_block_count(LAYERS)
    writer.add_context_length(32768)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    vocab = GGUFReader(vocab_path)
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre"]:
        writer.add_string(key, vocab.fields[key].contents())
    writer.add_array("tokenizer.ggml.tokens", vocab.fields["tokenizer.ggml.tokens"].contents())
    writer.add_array("tokenizer.ggml.token_type", vocab.fields["tokenizer.ggml.token_type"].contents())
    writer.add_array("tokenizer.ggml.merges", vocab.fields["tokenizer.ggml.merges"].contents())
    writer.add_uint32("tokenizer.ggml.eos_token_id", 151645)

    def matrix(rows, columns):
        return (rng.standard_normal((rows, columns), dtype=np.float32) * 0.02).astype(np.float16)

    writer.add_tensor("token_embd.weight", matrix(VOCAB, HIDDEN))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    for i in range(LAYERS):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        for name, rows in [("q", HEADS * HEAD_DIM), ("k", KV_HEADS * HEAD_DIM), ("v", KV_HEADS * HEAD_DIM)]:
            writer.add_tensor(p + f"attn_{name}.weight", matrix(rows, HIDDEN))
            writer.add_tensor(p + f"attn_{name}.bias", (rng.standard_normal(rows) * 0.02).astype(np.float32))
        writer.add_tensor(p + "attn_output.weight", matrix(HIDDEN, HEADS * HEAD_DIM))
        writer.add_tensor(p + "ffn_gate.weight", matrix(INTERMEDIATE, HIDDEN))
        writer.add_tensor(p + "ffn_up.weight", matrix(INTERMEDIATE, HIDDEN))
        writer.add_tensor(p + "ffn_down.weight", matrix(HIDDEN, INTERMEDIATE))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    out, vocab, quantize = sys.argv[1:4]
    shape, prefix = SHAPES[sys.argv[4] if len(sys.argv) > 4 else "0.5b"]
    os.makedirs(out, exist_ok=True)
    f16 = os.path.join(out, f"{prefix}f16.gguf")
    if not os.path.exists(f16):
        write_f16(f16 + ".part", vocab, shape)
        os.rename(f16 + ".part", f16)
    for kind in ["Q8_0", "Q4_K_M"]:
        target = os.path.join(out, f"{prefix}{kind.lower()}.gguf")
        if not os.path.exists(target):
            subprocess.check_call([quantize, f16, target + ".part", kind], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.rename(target + ".part", target)


if __name__ == "__main__":
    main()
