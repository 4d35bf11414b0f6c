#!/usr/bin/env python3
"""Times transformers + PyTorch (CPU, eager) on a model directory the way `modeld engine bench` does.

    python3 scripts/bench-transformers.py MODEL_DIR --dtype bf16|f32 [--prompt-tokens 128] [--gen-tokens 64] [--threads 2]

Prefill: one forward pass over a random prompt. Decode: greedy steps, one token each, through the
KV cache. Prints one JSON object: {"prefill_tps": ..., "decode_tps": ..., ...}, with the transformers
and torch versions.
"""

import argparse
import json
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    model.eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(7)
    prompt = torch.randint(0, vocab, (1, args.prompt_tokens), generator=generator)

    with torch.inference_mode():
        # Warm-up: touch every weight once, as the other benchmarks do.
        model(prompt[:, :8], use_cache=True)

        start = time.perf_counter()
        out = model(prompt, use_cache=True)
        prefill = time.perf_counter() - start

        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(args.gen_tokens):
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
        decode = time.perf_counter() - start

    print(json.dumps({
        "engine": f"transformers {args.dtype}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "prefill_tps": args.prompt_tokens / prefill,
        "decode_tps": args.gen_tokens / decode,
    }))


if __name__ == "__main__":
    main()
