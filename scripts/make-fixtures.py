#!/usr/bin/env python3
"""Builds the tiny random models the engine tests compare against transformers.

Each model gets a byte-level BPE tokenizer trained on a small built-in corpus, the real chat
template of its family, weights stored in the dtype and layout the test wants to cover, and an
`expected.json` holding transformers' float32 logits for every prompt position, a greedy
continuation and the chat prompt ids. For the mixture-of-experts model it also holds greedy continuations of
more prompts and the continuation with the config's `norm_topk_prob` flipped.

    pip install torch transformers tokenizers safetensors jinja2
    python3 scripts/make-fixtures.py [--templates DIR] [--only NAME]

DIR holds the llama.cpp `models/templates/*.jinja` files; without it the script fetches the
llama-cpp-python source archive from PyPI (it ships them under vendor/llama.cpp/models/templates/).
Everything is seeded, so reruns give the same files.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "BuiltinEngineTests" / "Fixtures" / "models"

QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Mixed prose, code, numbers, CJK and emoji so merges cover every branch of the split regexes.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog didn't care; it's been lazy all day.",
    "Large language models predict the next token. A tokenizer splits text into tokens, and the model "
    "turns tokens into logits. Sampling picks one token, and the loop goes on until a stop token.",
    "def forward(self, x):\n    h = self.norm(x)\n    return x + self.mlp(h)\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
    "let logits = model.forward(tokens: [1, 2, 3], cache: &cache)\nprint(logits.max() ?? 0)\n",
    "SELECT id, name FROM models WHERE size < 1000000 ORDER BY name;",
    "In 2024, 12345 people paid $67.89 each; 3.14159 is pi and 2.71828 is e. Call 555-0100!",
    "我们今天去公园散步，天气很好。人工智能正在改变世界。你好，世界！",
    "東京は日本の首都です。こんにちは、元気ですか？",
    "안녕하세요, 반갑습니다. 오늘 날씨가 좋네요.",
    "Emoji time: 🙂 😀 🚀 🎉 👍🏽 ❤️ 🇫🇷 — fun, right?",
    "Whitespace   runs,\ttabs\t\tand\r\nnew lines\n\n\nare all tokens too.   ",
    "You are a helpful assistant. What is the capital of France? The capital of France is Paris.",
    "Hello! How can I help you today? Please explain how attention works in transformers.",
    "Rotary position embeddings rotate pairs of dimensions by an angle that grows with position.",
    "RMSNorm divides by the root mean square; SiLU is x * sigmoid(x); softmax exponentiates and sums.",
    "Ünïcödé àccents: café, naïve, résumé, Straße, Ångström, façade, coöperate.",
    "JSON: {\"name\": \"modeld\", \"version\": 1, \"tags\": [\"llm\", \"cpu\"], \"ok\": true}",
]


def train_tokenizer(family: str, vocab_size: int, specials, extra_tokens) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=(family == "llama")))
    if family != "llama":
        tok.normalizer = normalizers.NFC()
    split = LLAMA_SPLIT if family == "llama" else QWEN_SPLIT
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if extra_tokens:
        tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in extra_tokens])
    return tok


def find_templates(arg):
    if arg:
        return Path(arg)
    tmp = Path(tempfile.mkdtemp(prefix="llcpp-"))
    subprocess.run(
        # Only the archive itself as source: `:all:` would also build cmake from source.
        [sys.executable, "-m", "pip", "download", "--no-binary", "llama-cpp-python", "--no-deps",
         "llama-cpp-python==0.3.36", "-d", str(tmp)],
        check=True,
    )
    archive = next(tmp.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/models/templates/" in m.name]
        tar.extractall(tmp, members=members)
    return next(tmp.glob("*/vendor/llama.cpp/models/templates"))


MESSAGES = [
    {"role": "user", "content": "Hi! Can you say hello in Chinese? 你好 🙂"},
    {"role": "assistant", "content": "Sure: 你好，世界！"},
    {"role": "user", "content": "Thanks. Now explain RMSNorm in one line."},
]

PROMPT = "The capital of France is Paris. 我们今天去公园 🙂 def forward(x): return x * 2"

# More prompts whose greedy continuations are recorded too (short and long, prose, code, CJK).
MORE_PROMPTS = [
    "Hello! How can I help you today?",
    "def forward(self, x):\n    h = self.norm(x)\n",
    "人工智能正在改变世界。Rotary position embeddings rotate pairs of dimensions by an angle.",
]

SPECS = [
    {
        "name": "qwen2-tiny",
        "family": "qwen2",
        "template": "Qwen-Qwen2.5-7B-Instruct.jinja",
        "vocab": 600,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "extra": [],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "gen_eos": ["<|im_end|>", "<|endoftext|>"],
        "dtype": torch.float32,
        "shard": None,
        "classic_config": True,
        "config": dict(
            architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            rope_theta=1000000.0, max_position_embeddings=512, tie_word_embeddings=True,
            use_sliding_window=False, hidden_act="silu",
        ),
    },
    {
        "name": "qwen3-tiny",
        "family": "qwen3",
        "template": "Qwen-Qwen3-0.6B.jinja",
        "vocab": 700,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "extra": ["<think>", "</think>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "gen_eos": ["<|im_end|>", "<|endoftext|>"],
        "dtype": torch.bfloat16,
        "shard": "150KB",
        "classic_config": False,
        "config": dict(
            architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=64, intermediate_size=160,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
            rope_theta=1000000.0, max_position_embeddings=512, tie_word_embeddings=False,
            attention_bias=False, use_sliding_window=False, hidden_act="silu",
        ),
    },
    {
        "name": "llama3-tiny",
        "family": "llama",
        "template": "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "vocab": 800,
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"],
        "extra": [],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": None,
        "gen_eos": ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
        "dtype": torch.float16,
        "shard": None,
        "classic_config": True,
        "config": dict(
            architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=96, intermediate_size=192,
            num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False, hidden_act="silu",
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        ),
    },
    {
        "name": "mistral-tiny",
        "family": "llama",
        "template": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        "vocab": 700,
        "specials": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        "extra": [],
        "bos": "<s>",
        "eos": "</s>",
        "pad": None,
        "gen_eos": ["</s>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # A window shorter than the prompt, so the sliding-window mask decides every later position;
        # head_dim is not hidden_size / heads, as in Mistral Nemo.
        "config": dict(
            architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=64, intermediate_size=160,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=24, rms_norm_eps=1e-5,
            rope_theta=1000000.0, max_position_embeddings=512, tie_word_embeddings=False, sliding_window=8,
            hidden_act="silu",
        ),
    },
    {
        "name": "smollm2-tiny",
        "family": "qwen2",
        "template": "Qwen-Qwen2.5-7B-Instruct.jinja",
        "vocab": 600,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "extra": [],
        "bos": "<|im_start|>",
        "eos": "<|im_end|>",
        "pad": "<|im_end|>",
        "gen_eos": ["<|im_end|>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # SmolLM2's shape in small: Llama with tied embeddings and no rope scaling.
        "config": dict(
            architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=160,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_theta=100000.0, max_position_embeddings=512, tie_word_embeddings=True,
            attention_bias=False, mlp_bias=False, hidden_act="silu",
        ),
    },
    {
        "name": "phi3-tiny",
        "family": "llama",
        "template": "microsoft-Phi-3.5-mini-instruct.jinja",
        "vocab": 700,
        "specials": ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        "extra": [],
        "bos": None,
        "eos": "<|end|>",
        "pad": "<|endoftext|>",
        "gen_eos": ["<|end|>", "<|endoftext|>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # Fused qkv_proj and gate_up_proj; a sliding window as Phi-3-mini-4k has one.
        "config": dict(
            architectures=["Phi3ForCausalLM"], model_type="phi3", hidden_size=64, intermediate_size=128,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_theta=10000.0, max_position_embeddings=512, original_max_position_embeddings=512,
            tie_word_embeddings=False, sliding_window=12, hidden_act="silu",
        ),
    },
    {
        "name": "gemma3-tiny",
        "family": "llama",
        "template": "google-gemma-2-2b-it.jinja",
        "vocab": 700,
        "specials": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "extra": [],
        "bos": "<bos>",
        "eos": "<end_of_turn>",
        "pad": "<pad>",
        "gen_eos": ["<end_of_turn>", "<eos>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # Alternating sliding (local RoPE base) and global layers, linear RoPE scaling on the global ones,
        # query_pre_attn_scalar unlike head_dim, final logit soft-capping, GeGLU, tied embeddings.
        "config": dict(
            architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_size=64, intermediate_size=128,
            num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
            rope_theta=1000000.0, rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
            max_position_embeddings=512, tie_word_embeddings=True, sliding_window=6, sliding_window_pattern=2,
            query_pre_attn_scalar=24, final_logit_softcapping=3.0, attn_logit_softcapping=None,
            hidden_activation="gelu_pytorch_tanh",
        ),
    },
    {
        "name": "phi4mini-tiny",
        "family": "llama",
        "template": "microsoft-Phi-3.5-mini-instruct.jinja",
        "vocab": 700,
        "specials": ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        "extra": [],
        "bos": None,
        "eos": "<|end|>",
        "pad": "<|endoftext|>",
        "gen_eos": ["<|end|>", "<|endoftext|>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # Phi-4-mini's RoPE in small: 3/4 of each head rotated, longrope with long factors unlike the short ones,
        # and an original_max_position_embeddings of 16: the main prompt passes it (long factors from the first
        # token), the shorter prompts cross it while generating. max / original = 32 gives an attention factor of 1.5.
        "config": dict(
            architectures=["Phi3ForCausalLM"], model_type="phi3", hidden_size=64, intermediate_size=128,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_theta=10000.0, max_position_embeddings=512, original_max_position_embeddings=16,
            partial_rotary_factor=0.75, tie_word_embeddings=True, hidden_act="silu",
            rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.05, 1.2, 1.5, 2.0, 2.5],
                          "long_factor": [1.0, 1.5, 3.0, 6.0, 12.0, 20.0]},
        ),
    },
    {
        "name": "gemma3-gguf-tiny",
        "family": "llama",
        "template": "google-gemma-2-2b-it.jinja",
        "vocab": 700,
        "specials": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "extra": [],
        "bos": "<bos>",
        "eos": "<end_of_turn>",
        "pad": "<pad>",
        "gen_eos": ["<end_of_turn>", "<eos>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": True,
        # Gemma 3 as a GGUF file can describe it: the default layer pattern (five sliding layers, then a global
        # one), query_pre_attn_scalar equal to head_dim (llama.cpp's converter keeps neither), otherwise as
        # gemma3-tiny: local RoPE base, linear scaling on the global layer, soft-capping, GeGLU, tied embeddings.
        "config": dict(
            architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_size=64, intermediate_size=128,
            num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
            rope_theta=1000000.0, rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
            max_position_embeddings=512, tie_word_embeddings=True, sliding_window=6,
            query_pre_attn_scalar=32, final_logit_softcapping=3.0, attn_logit_softcapping=None,
            hidden_activation="gelu_pytorch_tanh",
        ),
    },
    {
        "name": "qwen3moe-tiny",
        "family": "qwen3",
        "template": "Qwen-Qwen3-0.6B.jinja",
        "vocab": 700,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "extra": ["<think>", "</think>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "gen_eos": ["<|im_end|>", "<|endoftext|>"],
        "dtype": torch.bfloat16,
        "shard": None,
        "classic_config": False,
        # Layer 1 is dense (mlp_only_layers), layers 0 and 2 route each token to 4 of 16 experts.
        "config": dict(
            architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_size=64, intermediate_size=96,
            moe_intermediate_size=32, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[1], num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=512,
            tie_word_embeddings=False, attention_bias=False, use_sliding_window=False, hidden_act="silu",
        ),
        "extra_prompts": [
            "Hello! How can I help you today?",
            "SELECT id, name FROM models WHERE size < 1000000 ORDER BY name;",
            "東京は日本の首都です。Rotary position embeddings rotate pairs.",
        ],
    },
]


class RouterWatch:
    """The smallest gap, over every token routed while it is installed, between the k-th and the (k+1)-th
    largest router probability: a near tie could send a token to another expert under float rounding."""

    def __init__(self, model):
        self.gap = float("inf")
        for module in model.modules():
            if type(module).__name__ == "Qwen3MoeTopKRouter":
                module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        probabilities = torch.softmax(output[0].float(), dim=-1)
        top = torch.topk(probabilities, module.top_k + 1, dim=-1).values
        self.gap = min(self.gap, float((top[:, -2] - top[:, -1]).min()))


def flip_norm_topk_prob(model):
    for module in model.modules():
        if type(module).__name__ == "Qwen3MoeTopKRouter":
            module.norm_topk_prob = not module.norm_topk_prob


def randomize(model, seed):
    """Replaces every parameter, biases and norm weights included, so each code path matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                # Gemma's RMSNorm scales by (1 + weight).
                offset = 0.0 if model.config.model_type == "gemma3_text" else 1.0
                p.copy_(offset + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "q_proj" in name or "k_proj" in name or "qkv_proj" in name:
                # Large enough that attention is peaked and a RoPE mistake changes the logits.
                p.copy_(0.12 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "lm_head" in name:
                # Small enough that logits stay O(1), where an absolute 1e-3 tolerance is meaningful
                # next to the f16 KV cache's rounding (~2^-11 relative).
                p.copy_(0.04 * torch.randn(p.shape, generator=g))
            else:
                # Layers outweigh the embedding in the residual stream, or a tied model just
                # repeats its input token.
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def greedy(model, ids, steps):
    """Greedy continuation without a KV cache (full recompute), ignoring eos; returns tokens and margins."""
    seq = list(ids)
    out, margins = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            seq.append(out[-1])
    return out, margins


def build(spec, templates: Path):
    name = spec["name"]
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    tok = train_tokenizer(spec["family"], spec["vocab"], spec["specials"], spec["extra"])
    tok.save(str(out / "tokenizer.json"))
    vocab_size = tok.get_vocab_size()
    template = (templates / spec["template"]).read_text()
    added = {}
    for s in spec["specials"] + spec["extra"]:
        added[str(tok.token_to_id(s))] = {
            "content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": s in spec["specials"],
        }
    tokenizer_config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec["config"]["max_position_embeddings"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")

    eos_ids = [tok.token_to_id(s) for s in spec["gen_eos"]]
    bos_id = tok.token_to_id(spec["bos"]) if spec["bos"] else None
    pad_id = tok.token_to_id(spec["pad"]) if spec["pad"] else None

    # Try seeds until every greedy step has a clear winner, so float rounding cannot flip a token.
    for attempt in range(200 if "extra_prompts" in spec else 60):
        seed = 1234 + attempt
        torch.manual_seed(seed)
        cfg = AutoConfig.for_model(
            **spec["config"], vocab_size=vocab_size, bos_token_id=bos_id, eos_token_id=eos_ids[0], pad_token_id=pad_id,
            torch_dtype="float32",
        )
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
        randomize(model, seed)
        # Round the parameters (not the RoPE buffers, which transformers computes in f32 at load)
        # to the storage dtype, so the float32 reference sees exactly the stored weights.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(spec["dtype"]).float())
        hf_tok = AutoTokenizer.from_pretrained(str(out))
        prompt_ids = hf_tok.encode(PROMPT, add_special_tokens=False)
        if bos_id is not None:
            prompt_ids = [bos_id] + prompt_ids
        watch = RouterWatch(model)
        continuation, margins = greedy(model, prompt_ids, 48)
        more = []
        # The mixture-of-experts fixture records its own extra_prompts instead.
        for text in MORE_PROMPTS if "extra_prompts" not in spec else []:
            ids = ([bos_id] if bos_id is not None else []) + hf_tok.encode(text, add_special_tokens=False)
            tokens, extra_margins = greedy(model, ids, 24)
            more.append({"prompt": text, "prompt_ids": ids, "greedy_ids": tokens})
            margins += extra_margins
        extra = []
        for text in spec.get("extra_prompts", []):
            ids = hf_tok.encode(text, add_special_tokens=False)
            ids_continuation, ids_margins = greedy(model, ids, 16)
            extra.append({"prompt_ids": ids, "greedy_ids": ids_continuation})
            margins += ids_margins
        flipped = None
        if "norm_topk_prob" in spec["config"]:
            # The same weights with the chosen experts' probabilities normalised the other way.
            flip_norm_topk_prob(model)
            flipped, flipped_margins = greedy(model, prompt_ids, 32)
            flip_norm_topk_prob(model)
            margins += flipped_margins if flipped != continuation[:32] else [0.0]
        if watch.gap > 1e-5 and min(margins) > 3e-3 and len(set(continuation)) >= 3:
            break
        print(f"{name}: seed {seed} rejected: margin {min(margins):.4f}, router gap {watch.gap:.2e}, "
              f"{len(set(continuation))} distinct tokens")
    else:
        raise SystemExit(f"{name}: no seed gave clear greedy margins")

    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0].float()

    save_kwargs = {"safe_serialization": True}
    if spec["shard"]:
        save_kwargs["max_shard_size"] = spec["shard"]
    model.to(spec["dtype"]).save_pretrained(str(out), **save_kwargs)
    config = json.loads((out / "config.json").read_text())
    config["torch_dtype"] = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[spec["dtype"]]
    if spec["classic_config"]:
        # Checkpoints on the Hub (Qwen2.5, Llama 3.x) predate transformers 5's `rope_parameters`:
        # write their `rope_theta` / `rope_scaling` form; qwen3-tiny keeps the new form.
        rope = dict(config.pop("rope_parameters"))
        if "full_attention" in rope:
            # Gemma 3 keeps one set per layer type: the global layers' as usual, the local base apart.
            config["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
            rope = dict(rope["full_attention"])
        config["rope_theta"] = rope.pop("rope_theta")
        if rope.get("rope_type") == "longrope":
            # Phi-3.5 and Phi-4-mini keep these beside rope_scaling, not in it.
            for key in ("partial_rotary_factor", "original_max_position_embeddings"):
                if key in rope:
                    config[key] = rope.pop(key)
        config["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
        config.pop("dtype", None)
        config.pop("_sliding_window_pattern", None)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation_config = {
        "bos_token_id": bos_id if bos_id is not None else eos_ids[-1],
        "eos_token_id": eos_ids,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }
    (out / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
    jinja = out / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()

    hf_tok = AutoTokenizer.from_pretrained(str(out))
    chat_text = hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    chat_ids = hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "input_ids"):
        chat_ids = chat_ids["input_ids"]
    expected = {
        "seed": seed,
        "architecture": spec["config"]["architectures"][0],
        "storage_dtype": config["torch_dtype"],
        "vocab_size": vocab_size,
        "prompt": PROMPT,
        "prompt_ids": prompt_ids,
        "logits": [[round(float(v), 6) for v in row] for row in logits],
        "greedy_ids": continuation,
        "greedy_min_margin": min(margins),
        "more_prompts": more,
        "eos_token_ids": eos_ids,
        "messages": MESSAGES,
        "chat_text": chat_text,
        "chat_prompt_ids": list(chat_ids),
        "router_min_gap": None if watch.gap == float("inf") else watch.gap,
        "extra_prompts": extra,
        "greedy_ids_flipped_norm_topk_prob": flipped,
        "tokenizer_merges": len(json.loads((out / "tokenizer.json").read_text())["model"]["merges"]),
    }
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n")
    files = sorted(p.name for p in out.iterdir())
    print(f"{name}: seed {seed}, vocab {vocab_size}, {len(prompt_ids)} prompt ids, margin {min(margins):.4f}, {files}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", help="directory of llama.cpp chat templates (*.jinja)")
    parser.add_argument("--only", nargs="*", help="build only these models (by name)")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    templates = find_templates(args.templates)
    for spec in SPECS:
        if not args.only or spec["name"] in args.only:
            build(spec, templates)


if __name__ == "__main__":
    main()
