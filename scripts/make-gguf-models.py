#!/usr/bin/env python3
"""Builds the tiny GGUF models of the built-in engine's GGUF tests with llama.cpp's own tools.

    make-gguf-models.py OUT LLAMACPP_SRC LLAMA_QUANTIZE

For the Qwen2 and Llama 3 fixtures (Tests/BuiltinEngineTests/Fixtures/models/{qwen2,llama3}-tiny: their
tokenizer, template and configuration), widened so every row is a whole number of 256-element k-quant blocks
(hidden 256, intermediate 512, 2 layers, heads of 64, untied output head), with seeded random f32 weights, it
writes:
  OUT/NAME/             the Hugging Face model directory (config.json, tokenizer files, model.safetensors)
  OUT/NAME-f32.gguf     llama.cpp's converter (convert_hf_to_gguf.py, --outtype f32)
  OUT/NAME-q8_0.gguf    llama-quantize Q8_0
  OUT/NAME-q4_k_m.gguf  llama-quantize Q4_K_M (Q4_K and Q6_K tensors)
The converter runs through scripts/convert-hf-gguf.py, which names the tiny vocabulary's pre-tokenizer
(qwen2, llama-bpe).

Needs: pip install gguf torch transformers safetensors numpy.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "BuiltinEngineTests", "Fixtures", "models")
MODELS = {"qwen2": "qwen2", "llama3": "llama-bpe"}
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 256, 512, 2, 4, 2, 64


def weights(config, seed):
    """Random layers that perturb a residual stream of unit scale, and an output head with a planted next-token
    map (token `i` predicts `π(i)`) plus noise: the logits are peaked, as a trained model's mostly are, so top-1
    agreement measures quantization error rather than the ties of flat random logits."""
    rng = np.random.default_rng(seed)

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    vocab = config["vocab_size"]
    embedding = normal((vocab, HIDDEN), 1.0)
    planted = embedding[np.argsort(rng.permutation(vocab))] / np.sqrt(HIDDEN)
    tensors = {"model.embed_tokens.weight": embedding,
               "lm_head.weight": (planted * 1.2 + normal((vocab, HIDDEN), 0.06)).astype(np.float32),
               "model.norm.weight": 1 + normal((HIDDEN,), 0.1)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = 1 + normal((HIDDEN,), 0.1)
        tensors[p + "post_attention_layernorm.weight"] = 1 + normal((HIDDEN,), 0.1)
        for name, rows in [("q", HEADS * HEAD_DIM), ("k", KV_HEADS * HEAD_DIM), ("v", KV_HEADS * HEAD_DIM)]:
            tensors[p + f"self_attn.{name}_proj.weight"] = normal((rows, HIDDEN), 0.08)
            if config["model_type"] == "qwen2":
                tensors[p + f"self_attn.{name}_proj.bias"] = normal((rows,), 0.1)
        tensors[p + "self_attn.o_proj.weight"] = normal((HIDDEN, HEADS * HEAD_DIM), 0.05)
        tensors[p + "mlp.gate_proj.weight"] = normal((INTERMEDIATE, HIDDEN), 0.08)
        tensors[p + "mlp.up_proj.weight"] = normal((INTERMEDIATE, HIDDEN), 0.08)
        tensors[p + "mlp.down_proj.weight"] = normal((HIDDEN, INTERMEDIATE), 0.05)
    return tensors


def hf_model(name, out, seed):
    source = os.path.join(FIXTURES, f"{name}-tiny")
    target = os.path.join(out, name)
    os.makedirs(target, exist_ok=True)
    for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copyfile(os.path.join(source, file), os.path.join(target, file))
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    # Untied: the planted output head differs from the embedding.
    config.update(tie_word_embeddings=False, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, torch_dtype="float32")
    if "layer_types" in config:
        config["layer_types"] = ["full_attention"] * LAYERS
    with open(os.path.join(target, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(weights(config, seed), os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
    return target


CONVERT = os.path.join(ROOT, "scripts", "convert-hf-gguf.py")


def main():
    out, src, quantize = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    for seed, (name, pre) in enumerate(MODELS.items()):
        model = hf_model(name, out, seed + 7)
        f32 = os.path.join(out, f"{name}-f32.gguf")
        subprocess.check_call([sys.executable, CONVERT, src, pre, model, "--outtype", "f32", "--outfile", f32],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for kind in ["Q8_0", "Q4_K_M"]:
            subprocess.check_call([quantize, f32, os.path.join(out, f"{name}-{kind.lower()}.gguf"), kind],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
