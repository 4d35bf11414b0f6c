#!/usr/bin/env python3
"""Writes a Hugging Face model directory of Qwen2.5-0.5B-Instruct's (or 1.5B's) exact shape with random bf16 weights.

    python3 scripts/make-bench-model.py OUT_DIR [0.5b|1.5b]

The config.json and generation_config.json values are the real model's; the weights are seeded
normal(0, 0.02) in bf16 (norm weights 1, biases 0.02 * normal), so every engine benchmarked on
the directory reads the same 494 M parameters (988 MB; 1.5B: 1.54 G parameters, 3.1 GB). The tokenizer is the real Qwen2
vocabulary committed for the tokenizer tests (Tests/BuiltinEngineTests/Fixtures/text/qwen2): only the
GGUF conversion needs it. Needs torch and safetensors; writes nothing when OUT_DIR is complete.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

# What Qwen2.5-1.5B-Instruct's config.json changes (the vocabulary, rope and norms are the same).
SHAPES = {
    "0.5b": {},
    "1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_attention_heads": 12, "num_hidden_layers": 28},
}

GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.1,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
}

TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": None,
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "unk_token": None,
    "model_max_length": 131072,
    "clean_up_tokenization_spaces": False,
    "errors": "replace",
    "split_special_tokens": False,
    "tokenizer_class": "Qwen2Tokenizer",
}


def shapes(c: dict) -> dict:
    hidden, inter = c["hidden_size"], c["intermediate_size"]
    head_dim = hidden // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * head_dim, c["num_key_value_heads"] * head_dim
    result = {"model.embed_tokens.weight": (c["vocab_size"], hidden), "model.norm.weight": (hidden,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        result.update({
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (q, hidden),
            p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (hidden, q),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
    return result


def main() -> None:
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in SHAPES):
        sys.exit("usage: make-bench-model.py OUT_DIR [0.5b|1.5b]")
    out = Path(sys.argv[1])
    config = {**CONFIG, **SHAPES[sys.argv[2] if len(sys.argv) == 3 else "0.5b"]}
    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        print(f"{out}: already there")
        return
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(20261121)
    tensors = {}
    for name, shape in shapes(config).items():
        if name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensors[name] = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    shutil.copy(ROOT / "Tests" / "BuiltinEngineTests" / "Fixtures" / "text" / "qwen2" / "tokenizer.json", out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    count = sum(t.numel() for t in tensors.values())
    print(f"{out}: {count / 1e6:.1f} M parameters in bf16")


if __name__ == "__main__":
    main()
