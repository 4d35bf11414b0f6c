#!/usr/bin/env python3
"""Writes a Qwen2 model as small as the tiny test fixture but with 64-wide attention heads, which vLLM's CPU build
can run (its CPU attention has kernels for head sizes 32, 64, 80, ...; the tiny fixture's heads are 16 wide).

    python3 scripts/make-wide-heads-model.py SOURCE_DIR OUT_DIR

The weights are random from a fixed seed (float32); the tokenizer and generation config are copied from SOURCE_DIR
(the tiny fixture, Tests/BuiltinEngineTests/Fixtures/models/qwen2-tiny). Needs torch and transformers (vLLM's CPU
environment has both); writes nothing when OUT_DIR exists.
"""

import os
import shutil
import sys

import torch
import transformers

source, target = sys.argv[1:3]
if os.path.exists(target):
    sys.exit(0)
torch.manual_seed(0)
config = transformers.Qwen2Config(
    vocab_size=603, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=602,
    rope_theta=1000000.0, torch_dtype="float32")
transformers.Qwen2ForCausalLM(config).save_pretrained(target + ".part", safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(f"{source}/{name}", f"{target}.part/{name}")
shutil.move(target + ".part", target)
