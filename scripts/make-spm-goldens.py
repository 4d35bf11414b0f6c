#!/usr/bin/env python3
"""Builds the SentencePiece-style BPE fixtures of the built-in engine's tokenizer tests
(Tests/BuiltinEngineTests/Fixtures/text/spm/).

What it writes:
  spm/tokenizer.json   Llama 2's real vocabulary (32,000 pieces with `<0xNN>` byte-fallback tokens), converted
      from llama.cpp's ggml-vocab-llama-spm.gguf by transformers' GGUF converter (merges from the piece
      scores), with `unk_token` set as in the Hugging Face original.
  spm/ggml-vocab-llama-spm.gguf   the GGUF file itself (vocabulary, scores and token types only), for the
      engine's GGUF tokenizer, which derives the merges from the scores.
  spm/goldens.json     for each text-pipeline variant below (the normalizer, pre-tokenizer and decoder a
      model's tokenizer.json carries around the same vocabulary): the variant's JSON, and the ids, the decoded
      text and the decoded text without special tokens that the `tokenizers` package gives for every string
      of the corpus (the byte-level corpus plus SentencePiece cases).

Variants: "legacy" (Llama 2 and Mistral: Prepend + Replace normalizers, no pre-tokenizer, decoder Replace,
ByteFallback, Fuse, Strip), "metaspace" (transformers' conversion: Metaspace prepend_scheme first),
"metaspace-split" (Metaspace always + split, Metaspace decoder), "gemma" (Replace normalizer only, no
Strip in the decoder).

Usage:
  pip install tokenizers transformers gguf
  python3 scripts/make-spm-goldens.py --src PATH   # PATH: llama_cpp_python-0.3.36 sdist (dir or .tar.gz)
"""

import argparse
import importlib.util
import json
import os
import shutil
import tempfile

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "BuiltinEngineTests", "Fixtures", "text", "spm")

spec = importlib.util.spec_from_file_location("text_goldens", os.path.join(ROOT, "scripts", "make-text-goldens.py"))
text_goldens = importlib.util.module_from_spec(spec)
spec.loader.exec_module(text_goldens)

SPACE = "\u2581"
DECODER_STRIP = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}

VARIANTS = {
    "legacy": {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "decoder": DECODER_STRIP,
    },
    "metaspace": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False},
        "decoder": DECODER_STRIP,
    },
    "metaspace-split": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True},
    },
    "gemma": {
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
    },
}

SPM_CORPUS = [
    "<s>Hello</s> world",
    "<s> [INST] What is 2+2? [/INST] 4</s><s> [INST] And 3+3? [/INST]",
    "Hello<s>world</s>",
    "  double  spaces  and a tab\t",
    f"{SPACE}literal{SPACE}meta{SPACE}space{SPACE}",
    "<0x41> is not a byte token in text",
    "rare: \U0001d518\U0001d52b \u2603\ufe0f \U0001f9ec \u0d9a\u0dca\u200d\u0dbb",
    "\u0000nul and \u007fdel",
    "     ",
    "a  b   c    d",
    "\n\n\n",
]


def inp_cases(models):
    with open(os.path.join(models, "ggml-vocab-llama-spm.gguf.inp"), encoding="utf-8") as f:
        chunks = f.read().split("\n__ggml_vocab_test__\n")
    assert chunks[-1] == ""
    return chunks[:-1]


def base_tokenizer(models):
    """Llama 2's vocabulary as transformers converts it from the GGUF file."""
    from transformers import AutoTokenizer
    converted = AutoTokenizer.from_pretrained(models, gguf_file="ggml-vocab-llama-spm.gguf")
    tmp = tempfile.mkdtemp()
    converted.save_pretrained(tmp)
    with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
        data = json.load(f)
    shutil.rmtree(tmp)
    assert data["model"]["byte_fallback"] and data["model"]["fuse_unk"]
    data["model"]["unk_token"] = "<unk>"
    data["post_processor"] = None
    return data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", help="llama_cpp_python-0.3.36 sdist: extracted directory or .tar.gz")
    args = parser.parse_args()
    models = text_goldens.models_dir(args.src)

    base = base_tokenizer(models)
    # The variant's keys go last, so that a test can swap them in the text: parsing the file into a dictionary
    # and writing it back would merge canonically equivalent pieces of the vocabulary.
    for key, value in VARIANTS["legacy"].items():
        base.pop(key, None)
        base[key] = value
    os.makedirs(OUT, exist_ok=True)
    shutil.copy(os.path.join(models, "ggml-vocab-llama-spm.gguf"), OUT)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(base, f, ensure_ascii=False, separators=(",", ":"))

    corpus = text_goldens.HAND_CORPUS + SPM_CORPUS + inp_cases(models) + text_goldens.fuzz_corpus(count=150, seed=99)
    goldens = {"corpus": corpus, "merges": len(base["model"]["merges"]), "variants": {}}
    for name, variant in VARIANTS.items():
        tok = Tokenizer.from_str(json.dumps({**base, **variant}))
        encodings = [tok.encode(text, add_special_tokens=False).ids for text in corpus]
        goldens["variants"][name] = {
            **variant,
            "ids": encodings,
            "decoded": [tok.decode(ids, skip_special_tokens=False) for ids in encodings],
            "decoded_skip_special": [tok.decode(ids, skip_special_tokens=True) for ids in encodings],
        }
    with open(os.path.join(OUT, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False)
        f.write("\n")
    # llama.cpp's own ids for its .inp strings (its .out file): an independent check of the Llama 2 pipeline.
    with open(os.path.join(models, "ggml-vocab-llama-spm.gguf.out"), encoding="utf-8") as f:
        outs = [[int(x) for x in line.split()] for line in f.read().split("\n")[:-1]]
    legacy = goldens["variants"]["legacy"]["ids"]
    differ = sum(legacy[corpus.index(text)] != want for text, want in zip(inp_cases(models), outs))
    assert differ == 0, f"{differ} llama.cpp .out vectors differ from the legacy pipeline"
    fallback = sum(any(3 <= i < 259 for i in ids) for ids in goldens["variants"]["legacy"]["ids"])
    print(f"{len(corpus)} strings, {fallback} of them with byte-fallback tokens")


if __name__ == "__main__":
    main()
