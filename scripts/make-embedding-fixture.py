#!/usr/bin/env python3
"""Builds the tiny random embedding model the engine's embeddings tests compare against sentence-transformers
(Tests/BuiltinEngineTests/Fixtures/models/qwen3-embedding-tiny/).

It has the layout of Qwen3-Embedding: a Qwen3 base model saved without the language-model head (tensor names
without `model.`), a tokenizer whose post-processor appends `<|endoftext|>`, left padding, and the files
sentence-transformers writes (modules.json, 1_Pooling/config.json with pooling mode lasttoken, a Normalize
module); config.json says `is_matryoshka`. expected.json holds the texts, the ids `tokenizer(text)` gives and
sentence-transformers' embeddings, computed as one padded batch (and checked against one text at a time).

    pip install torch transformers tokenizers sentence-transformers
    python3 scripts/make-embedding-fixture.py
"""

import importlib.util
import json
import shutil
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as st_models
from tokenizers import processors
from transformers import AutoConfig, AutoModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "BuiltinEngineTests" / "Fixtures" / "models" / "qwen3-embedding-tiny"

spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make-fixtures.py")
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "The capital of France is Paris.",
    "Paris is the capital of France",
    "我们今天去公园散步",
    "def forward(x): return x * 2",
    "Emoji 🙂 and whitespace   runs\t\n",
    "a",
    "Rotary position embeddings rotate pairs of dimensions by an angle that grows with position; "
    "RMSNorm divides by the root mean square. " * 3,
]
MATRYOSHKA = 32


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    tok = fixtures.train_tokenizer("qwen3", 700, SPECIALS, [])
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", eos)])
    tok.save(str(OUT / "tokenizer.json"))
    added = {str(tok.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True} for s in SPECIALS}
    (OUT / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": added, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "padding_side": "left", "model_max_length": 512, "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False}, indent=2) + "\n")

    seed = 4321
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(
        model_type="qwen3", hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=512,
        tie_word_embeddings=True, attention_bias=False, use_sliding_window=False, hidden_act="silu",
        vocab_size=tok.get_vocab_size(), eos_token_id=eos)
    model = AutoModel.from_config(cfg, attn_implementation="eager").float().eval()
    fixtures.randomize(model, seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    model.save_pretrained(str(OUT), safe_serialization=True)
    transformer = st_models.Transformer(str(OUT), model_kwargs={"dtype": torch.float32, "attn_implementation": "eager"})
    pooling = st_models.Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
    SentenceTransformer(modules=[transformer, pooling, st_models.Normalize()]).save(str(OUT))
    for extra in ["README.md", "config_sentence_transformers.json"]:
        (OUT / extra).unlink(missing_ok=True)
    # sentence-transformers saved the weights as it loaded them (f32): store them in bf16 as Qwen3-Embedding
    # does (the values are bf16-exact already), with its config.json.
    model.to(torch.bfloat16).save_pretrained(str(OUT), safe_serialization=True)
    config = json.loads((OUT / "config.json").read_text())
    config["architectures"] = ["Qwen3ForCausalLM"]
    config["dtype"] = "bfloat16"
    config["is_matryoshka"] = True
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    st = SentenceTransformer(str(OUT), device="cpu", model_kwargs={"dtype": torch.float32, "attn_implementation": "eager"})
    batched = st.encode(TEXTS, batch_size=len(TEXTS), convert_to_tensor=True)
    single = torch.stack([st.encode([t], convert_to_tensor=True)[0] for t in TEXTS])
    agreement = torch.nn.functional.cosine_similarity(batched, single).min().item()
    assert agreement > 1 - 1e-5, agreement
    truncated = torch.nn.functional.normalize(batched[:, :MATRYOSHKA], dim=-1)
    expected = {
        "seed": seed,
        "texts": TEXTS,
        "ids": [st.tokenizer(t)["input_ids"] for t in TEXTS],
        "embeddings": [[round(float(v), 7) for v in row] for row in batched],
        "matryoshka_dimensions": MATRYOSHKA,
        "truncated": [[round(float(v), 7) for v in row] for row in truncated],
    }
    assert all(ids[-1] == eos for ids in expected["ids"])
    (OUT / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n")
    print(f"{OUT.name}: vocab {tok.get_vocab_size()}, files {sorted(p.name for p in OUT.iterdir())}, "
          f"batched vs single cosine {agreement:.8f}")


if __name__ == "__main__":
    main()
