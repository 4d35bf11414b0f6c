#!/usr/bin/env python3
"""Embeddings per second of the built-in engine beside transformers, in one run (docs/benchmarks.md).

    swift build -c release && python3 scripts/bench-embeddings.py

The model is Qwen3-Embedding-0.6B's exact shape with seeded random bf16 weights (written once under
$BENCH_DIR, default .build/bench-embeddings; nothing of it is committed), saved the way Qwen3-Embedding is
(base model without the head, sentence-transformers' modules.json, last-token pooling, Normalize) and the real
Qwen2 vocabulary of the tokenizer tests. The workload: 32 inputs of 128 token ids each (seeded), one request
to `modeld engine`'s /v1/embeddings (token arrays, so no tokenizer is timed), against transformers' AutoModel
forward in float32 (the engine sums in f32; its bf16 prefill rounds activations to bf16 where it uses `vdpbf16ps`) with the same last-token pooling and normalization on the same
threads. Each figure is the best of REPEATS runs after a warm-up on 8 tokens (which reads every weight once); the
vectors of both are compared (cosine).

Environment: THREADS (2), REPEATS (3), INPUTS (32), TOKENS (128), BENCH_DIR, MODELD (.build/release/modeld).
"""

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("BENCH_DIR", ROOT / ".build" / "bench-embeddings"))
MODELD = os.environ.get("MODELD", str(ROOT / ".build" / "release" / "modeld"))
THREADS = int(os.environ.get("THREADS", "2"))
REPEATS = int(os.environ.get("REPEATS", "3"))
INPUTS = int(os.environ.get("INPUTS", "32"))
TOKENS = int(os.environ.get("TOKENS", "128"))
MODEL = BENCH_DIR / "qwen3-embedding-0.6b-random"

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 32768, "max_window_layers": 28,
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": 151669,
}


def make_model():
    if (MODEL / "model.safetensors").exists():
        return
    print(f"== writing {MODEL}", file=sys.stderr)
    MODEL.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    c = CONFIG
    hidden, inter, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def normal(*shape):
        return (0.02 * torch.randn(*shape, generator=g)).to(torch.bfloat16)

    tensors = {"embed_tokens.weight": normal(c["vocab_size"], hidden), "norm.weight": torch.ones(hidden, dtype=torch.bfloat16)}
    for i in range(c["num_hidden_layers"]):
        p = f"layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "self_attn.q_norm.weight": torch.ones(hd, dtype=torch.bfloat16),
            p + "self_attn.k_norm.weight": torch.ones(hd, dtype=torch.bfloat16),
            p + "self_attn.q_proj.weight": normal(q, hidden), p + "self_attn.k_proj.weight": normal(kv, hidden),
            p + "self_attn.v_proj.weight": normal(kv, hidden), p + "self_attn.o_proj.weight": normal(hidden, q),
            p + "mlp.gate_proj.weight": normal(inter, hidden), p + "mlp.up_proj.weight": normal(inter, hidden),
            p + "mlp.down_proj.weight": normal(hidden, inter),
        })
    save_file(tensors, str(MODEL / "model.safetensors"), metadata={"format": "pt"})
    (MODEL / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    shutil.copy(ROOT / "Tests/BuiltinEngineTests/Fixtures/text/qwen2/tokenizer.json", MODEL / "tokenizer.json")
    (MODEL / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (MODEL / "1_Pooling").mkdir(exist_ok=True)
    (MODEL / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": True, "include_prompt": True}))


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 151643, (INPUTS, TOKENS), generator=g).tolist()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_modeld(ids):
    port = free_port()
    env = dict(os.environ, MODELD_ENGINE_THREADS=str(THREADS))
    engine = subprocess.Popen([MODELD, "engine", "--model", str(MODEL), "--port", str(port), "--served-model-name", "embed"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                if engine.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"modeld engine did not start: {engine.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        def call(inputs=ids):
            body = json.dumps({"model": "embed", "input": inputs}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=3600) as reply:
                return json.load(reply)

        call([ids[0][:8]])
        best, reply = float("inf"), None
        for _ in range(REPEATS):
            started = time.perf_counter()
            reply = call()
            best = min(best, time.perf_counter() - started)
        assert reply["usage"]["prompt_tokens"] == INPUTS * TOKENS
        return best, torch.tensor([item["embedding"] for item in reply["data"]])
    finally:
        engine.terminate()
        engine.wait()


def bench_transformers(ids):
    from transformers import AutoModel
    torch.set_num_threads(THREADS)
    model = AutoModel.from_pretrained(str(MODEL), dtype=torch.float32).eval()
    batch = torch.tensor(ids)

    def run(batch=batch):
        with torch.inference_mode():
            hidden = model(input_ids=batch).last_hidden_state[:, -1]
        return torch.nn.functional.normalize(hidden, dim=-1)

    run(batch[:1, :8])
    best, vectors = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        vectors = run()
        best = min(best, time.perf_counter() - started)
    return best, vectors


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    if not os.access(MODELD, os.X_OK):
        raise SystemExit("build modeld first: swift build -c release")
    make_model()
    ids = inputs()
    ours, ours_vectors = bench_modeld(ids)
    theirs, their_vectors = bench_transformers(ids)
    agreement = torch.nn.functional.cosine_similarity(ours_vectors, their_vectors.float()).min().item()
    print(f"CPU: {cpu_name()}, {THREADS} threads; {INPUTS} inputs x {TOKENS} tokens, best of {REPEATS}")
    print("| engine | seconds | embeddings/s | tokens/s |")
    print("|---|---|---|---|")
    for name, seconds in [("modeld engine (bf16 weights)", ours), ("transformers AutoModel, float32", theirs)]:
        print(f"| {name} | {seconds:.2f} | {INPUTS / seconds:.2f} | {INPUTS * TOKENS / seconds:.0f} |")
    print(f"modeld / transformers: {theirs / ours:.2f}x; lowest cosine between their vectors: {agreement:.6f}")


if __name__ == "__main__":
    main()
