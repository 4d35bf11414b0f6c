#!/usr/bin/env python3
"""Runs llama.cpp's converter (convert_hf_to_gguf.py) on a Hugging Face model directory, naming its pre-tokenizer.

    convert-hf-gguf.py LLAMACPP_SRC PRE_TOKENIZER MODEL_DIR [CONVERTER ARGUMENTS...]

The converter recognises a BPE pre-tokenizer by hashing a known vocabulary's encoding of a test text; a test
fixture's tiny vocabulary has no known hash, so PRE_TOKENIZER (qwen2, llama-bpe) names it instead. The remaining
arguments go to the converter (`--outtype f32 --outfile OUT.gguf`).

Needs: pip install gguf torch transformers safetensors numpy.
"""

import sys

src, pre = sys.argv[1:3]
sys.path.insert(0, src)
from conversion.base import TextModel  # noqa: E402

TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
import convert_hf_to_gguf  # noqa: E402

sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[3:]
convert_hf_to_gguf.main()
