#!/usr/bin/env python3
"""Writes a small Qwen2 Hugging Face model directory as one GGUF file, its weights quantized by the `gguf` package.

    make-tiny-gguf.py MODEL_DIR OUT.gguf TYPE

MODEL_DIR holds config.json, generation_config.json, tokenizer.json, tokenizer_config.json and model.safetensors
(the tests use Tests/BuiltinEngineTests/Fixtures/models/qwen2-tiny); TYPE is Q8_0, Q4_0 or F32 (matrices only:
norms and biases stay F32). The tokenizer is written as llama.cpp's converter writes a Qwen2 one (`gpt2` with the
`qwen2` pre-tokenizer), and the tensors under llama.cpp's names (docs/design/gguf.md, Tensors).

Needs: pip install gguf numpy safetensors.
"""

import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, quants
from safetensors.numpy import load_file

NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    _, _, layer, rest = name.split(".", 3)
    return f"blk.{layer}.{NAMES[rest]}"


def main(directory, out, type_name):
    qtype = GGMLQuantizationType[type_name.upper()]
    def read(name):
        with open(os.path.join(directory, name)) as f:
            return json.load(f)
    config, generation = read("config.json"), read("generation_config.json")
    tokenizer, tokenizer_config = read("tokenizer.json"), read("tokenizer_config.json")
    writer = GGUFWriter(out, "qwen2")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])

    vocab = dict(tokenizer["model"]["vocab"])
    special = {token["content"]: token["special"] for token in tokenizer["added_tokens"]}
    for token in tokenizer["added_tokens"]:
        vocab[token["content"]] = token["id"]
    tokens = [text for text, _ in sorted(vocab.items(), key=lambda item: item[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "token ids must be dense"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([(3 if special[t] else 4) if t in special else 1 for t in tokens])
    writer.add_token_merges(merges)
    eos = generation["eos_token_id"]
    writer.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    if generation.get("bos_token_id") is not None:
        writer.add_bos_token_id(generation["bos_token_id"])
    writer.add_chat_template(tokenizer_config["chat_template"])

    for name, array in sorted(load_file(os.path.join(directory, "model.safetensors")).items()):
        values = array.astype(np.float32)
        if values.ndim == 2 and qtype != GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name(name), quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name(name), values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
