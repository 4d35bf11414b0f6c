#!/usr/bin/env python3
"""Builds the text-side fixtures of the built-in engine's tests (Tests/BuiltinEngineTests/Fixtures/text/).

What it writes, and where each answer comes from:
  qwen2/tokenizer.json, llama3/tokenizer.json   real vocabularies and merges taken from llama.cpp's
      ggml-vocab-qwen2.gguf and ggml-vocab-llama-bpe.gguf, wrapped in the exact normalizer/pre-tokenizer/
      decoder configuration of the Hugging Face originals (docs/builtin-engine.md, Tokenizer). Qwen2's merges are written
      as "a b" strings, Llama 3's as ["a", "b"] pairs, so both formats are exercised on real vocabularies.
  small/tokenizer.json   a small BPE trained here with `tokenizers` (pair merges, added tokens).
  corpus.json            the test strings (hand-written hard cases, llama.cpp's .inp vectors, seeded fuzz).
  encodings.json         golden ids from the `tokenizers` package for every (tokenizer, string).
  big.txt, big-ids.json  a larger text for exactness at scale and for the speed figure.
  templates/*.jinja      the real chat templates (from llama.cpp's models/templates).
  templates.json         conversations, the text transformers' own renderer produces for them, and its ids.
  jinja-cases.json       small templates, one Jinja feature each, rendered the same way.
  all-templates.json     every template under llama.cpp's models/templates, for one plain conversation.

Usage:
  pip install tokenizers jinja2 transformers gguf
  python3 scripts/make-text-goldens.py --src PATH   # PATH: llama_cpp_python-0.3.36 sdist (dir or .tar.gz)
Without --src the sdist is fetched with `pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36`.
"""

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from gguf import GGUFReader
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import AddedToken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "BuiltinEngineTests", "Fixtures", "text")

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5's added tokens beyond the three control tokens the GGUF carries (its slots hold [PADn] fillers
# there). `<tool_call>` and `</tool_call>` are not special in Qwen2.5: that exercises `special: false`.
QWEN25_EXTRA = [
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
    "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
    "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]


def models_dir(src):
    if src is None:
        tmp = tempfile.mkdtemp()
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                               "-d", tmp, "llama-cpp-python==0.3.36"])
        src = os.path.join(tmp, "llama_cpp_python-0.3.36.tar.gz")
    if src.endswith(".tar.gz"):
        tmp = tempfile.mkdtemp()
        with tarfile.open(src) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, "llama_cpp_python-0.3.36")
    return os.path.join(src, "vendor", "llama.cpp", "models")


def gguf_vocab(path):
    reader = GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    return tokens, types, merges


def byte_level_tokenizer(tokens, types, merges, regex, nfc, ignore_merges, added):
    """A BPE tokenizer over the GGUF's normal tokens (type 1) plus `added` [(id, content, special)]."""
    vocab = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 1}
    pairs = [tuple(m.split(" ")) for m in merges]
    bpe = models.BPE(vocab=vocab, merges=pairs, byte_fallback=False, ignore_merges=ignore_merges)
    tok = Tokenizer(bpe)
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    for token_id, content, special in sorted(added):
        got = tok.add_tokens([AddedToken(content, special=special, normalized=False)]) if not special \
            else tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        assert got == 1 and tok.token_to_id(content) == token_id, (content, token_id, tok.token_to_id(content))
    return tok


def write_json(path, value, indent=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def save_tokenizer(tok, path, string_merges):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = json.loads(tok.to_str())
    if string_merges:
        assert all(" " not in a and " " not in b for a, b in data["model"]["merges"])
        data["model"]["merges"] = [a + " " + b for a, b in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    # The saved file must load back in `tokenizers` and encode like the original.
    back = Tokenizer.from_file(path)
    probe = "Hello wörld 123 <|im_start|> 🤗"
    assert back.encode(probe, add_special_tokens=False).ids == tok.encode(probe, add_special_tokens=False).ids
    return back


HAND_CORPUS = [
    "Hello world",
    " Hello world",
    "Hello World! How are you doing today?",
    "中文字符测试：你好，世界！这是一个分词器的测试。",
    "日本語のテキスト、カタカナとひらがな。한국어 문장도 있습니다.",
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷 🤗🤗🤗",
    "skin tones 👋🏻👋🏼👋🏽👋🏾👋🏿 and ZWJ 🧑‍💻 👩🏽‍🚀",
    "def main():\n    print(\"hi\")\n\treturn 0\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "   leading spaces and trailing spaces   ",
    "tabs\t\tand\ttabs\t",
    "windows\r\nline\r\nendings\r\n\r\n",
    "many\n\n\n\nnewlines\n \n  \n",
    "digits 1 12 123 1234 12345 123456789 3.14159 1,000,000",
    "٣٤٥ Arabic-Indic digits, Ⅻ roman, ½ fraction, ² superscript",
    "combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 and precomposed é ä ñ",
    "NFC matters: Å vs A\u030a, Ω vs \u2126, ﬁ ligature",
    "I'M sure it'S THEY'LL we'D you'Re I've they'VE don't",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>\u0301 a special token followed by a combining mark",
    "mixed: abc123def 456ghi —dash– “quotes” «guillemets» …",
    "Ünïcödé wörds: naïve café résumé Straße",
    "Ελληνικά και русский текст и עברית וערבית عربي",
    "\u00a0non-breaking\u00a0space\u2003em space\u3000ideographic space",
    "\u200bzero\u200bwidth\u200cjoiner\u200d",
    "URL https://example.com/path?q=1&r=two#frag and email a.b@c.de",
    "!!! ??? ... --- *** ### $$$ %%% ^^^",
    "a",
    " ",
    "\n",
    "\t",
    "x \n y",
    "trailing newline\n",
    "  \n\n  \t  multiple kinds of whitespace \r\n\t ",
    "'s 's 'S 'll 'LL '",
    "🤗",
    "\u0301",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛",
    "line\u2028separator\u2029paragraph\u0085next\x0bvt\x0cff",
    "lone\rcarriage\r return \r\r\n",
    "don't 'twas '' 'x 's' ' s 'Ss ſ 'ſ",
    " \u00a0word \u3000字 \tword",
    "123abc abc123 1a2b3c ①②③ 10½",
    "a\u0301\u0301\u0301 \u0301\u0301 !\u0301 1\u0301",
    "\ufeffBOM and \ufffd replacement and \U0001F600\U0001F3FD",
]


def fuzz_corpus(count=300, seed=1234):
    """Random strings over the characters and tokens the pre-tokenizer treats differently."""
    import random
    rng = random.Random(seed)
    pool = [" ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b",
            "a", "Z", "é", "中", "ç", "٣", "½", "1", "9", "07", "'", "s", "S", "l", "L", "t", "re", "VE", "d", "m",
            "!", ".", ",", "-", "_", "\u0301", "\u200d", "😀", "🏽", "👨‍👩‍👧", "<|im_start|>", "<tool_call>",
            "<|eot_id|>", "<|endoftext|>", "<", "|", ">"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def load_inp_cases(models):
    """llama.cpp's test strings: cases separated by a marker line, the file ending with one."""
    with open(os.path.join(models, "ggml-vocab-qwen2.gguf.inp"), encoding="utf-8") as f:
        chunks = f.read().split("\n__ggml_vocab_test__\n")
    assert chunks[-1] == "", "unexpected .inp layout"
    return chunks[:-1]


def load_out_ids(path):
    """The matching .out file: one line of ids per case."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def small_tokenizer(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(corpus[:200] * 3, trainer=trainer)
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                    AddedToken("</tool_call>", special=False, normalized=False)])
    return tok


def big_text(models):
    """About 250 kB of real prose, code and mixed scripts from the sdist plus the corpus."""
    root = os.path.dirname(models)
    parts = []
    for rel in ["README.md", "src/llama-vocab.cpp", "docs/build.md", "common/chat.cpp"]:
        p = os.path.join(root, rel)
        if os.path.exists(p):
            with open(p, encoding="utf-8", errors="replace") as f:
                parts.append(f.read()[:70000])
    parts.append("\n".join(HAND_CORPUS) * 20)
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- templates

PINNED_NOW = _dt.datetime(2026, 3, 7, 9, 5, 0)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — température incluse.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "exact": {"type": "boolean"},
                                                         "limit": {"type": ["integer", "null"]}, "score": {"type": "number", "default": 0.5}},
                       "required": ["query"]},
    },
}

SYSTEM_MULTI = [
    {"role": "system", "content": "You are a helpful assistant.  "},
    {"role": "user", "content": "Hello! Wie geht's? 你好 👋"},
    {"role": "assistant", "content": "Hi there, I'm fine.\n"},
    {"role": "user", "content": "  Tell me a joke with \"quotes\" and a {brace}.  "},
]
NO_SYSTEM = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
]
TOOLS_MAPPING = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "What's the weather in Zürich?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius", "days": 2}}}]},
    {"role": "tool", "content": "{\"temperature\": 21, \"sky\": \"☀️\"}"},
    {"role": "assistant", "content": "It is 21 °C and sunny."},
    {"role": "user", "content": "Thanks!"},
]
TOOLS_STRING_ARGS = [
    {"role": "user", "content": "Search for swift jinja"},
    {"role": "assistant", "content": "Let me search.", "tool_calls": [
        {"type": "function", "function": {"name": "search", "arguments": "{\"query\": \"swift jinja\"}"}}]},
    {"role": "tool", "content": "result one"},
]
TOOLS_PARALLEL = [
    {"role": "user", "content": "Weather in Paris and Tokyo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "東京"}}}]},
    {"role": "tool", "content": "15 °C"},
    {"role": "tool", "content": "22 °C"},
]
QWEN3_REASONING = [
    {"role": "system", "content": "Think carefully."},
    {"role": "user", "content": "Is 17 prime?"},
    {"role": "assistant", "content": "Yes, 17 is prime.", "reasoning_content": "\nCheck divisors 2, 3: none.\n"},
    {"role": "user", "content": "And 21?"},
    {"role": "assistant", "content": "<think>\n21 = 3 × 7.\n</think>\n\nNo, 21 = 3 × 7."},
]
QWEN3_THINK_IN_CONTENT = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>\nGreeting.\n</think>\n\nHello!"},
    {"role": "user", "content": "Bye"},
]
LLAMA_TOOL_OBJECT_RESULT = [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "content": {"temperature": -3, "unit": "celsius"}},
]

LLAMA_BUILTIN_CALL = [
    {"role": "system", "content": "  Use tools when needed.  "},
    {"role": "user", "content": "Search the weather in Paris"},
    {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "brave_search", "arguments": {"query": "weather Paris", "lang": "fr"}}}]},
    {"role": "ipython", "content": "Sunny, 18 °C"},
]


def template_cases():
    cases = []

    def add(template, name, messages, tools=None, agp=False, extra=None):
        cases.append({"template": template, "name": name, "messages": messages, "tools": tools,
                      "add_generation_prompt": agp, "extra": extra or {}})

    for t in ["qwen2.5", "qwen3", "llama3.1", "llama3.2"]:
        add(t, "system-multi-turn", SYSTEM_MULTI, agp=True)
        add(t, "system-multi-turn-no-prompt", SYSTEM_MULTI, agp=False)
        add(t, "no-system", NO_SYSTEM, agp=True)
        add(t, "tools-mapping-args", TOOLS_MAPPING, tools=[WEATHER_TOOL, SEARCH_TOOL], agp=True)
        add(t, "tools-string-args", TOOLS_STRING_ARGS, tools=[SEARCH_TOOL], agp=False)
    for t in ["qwen2.5", "qwen3"]:
        add(t, "tools-parallel", TOOLS_PARALLEL, tools=[WEATHER_TOOL], agp=True)
    add("qwen3", "reasoning", QWEN3_REASONING, agp=True)
    add("qwen3", "think-in-content", QWEN3_THINK_IN_CONTENT, agp=True)
    add("qwen3", "enable-thinking-false", NO_SYSTEM, agp=True, extra={"enable_thinking": False})
    add("qwen3", "enable-thinking-true", NO_SYSTEM, agp=True, extra={"enable_thinking": True})
    for t in ["llama3.1", "llama3.2"]:
        add(t, "tools-in-system", TOOLS_MAPPING, tools=[WEATHER_TOOL], agp=True,
            extra={"tools_in_user_message": False})
        add(t, "tool-object-result", LLAMA_TOOL_OBJECT_RESULT, tools=[WEATHER_TOOL], agp=True)
        add(t, "date-string", NO_SYSTEM, agp=True, extra={"date_string": "01 Jan 2030"})
    # Python fails on this one (an int argument concatenated to a str): the error is a golden too.
    add("llama3.1", "builtin-tools-int-argument", TOOLS_MAPPING, tools=[WEATHER_TOOL], agp=True,
        extra={"builtin_tools": ["code_interpreter", "brave_search", "get_weather"]})
    add("llama3.1", "builtin-tool-call", LLAMA_BUILTIN_CALL, tools=[WEATHER_TOOL], agp=True,
        extra={"builtin_tools": ["code_interpreter", "brave_search", "wolfram_alpha"]})
    return cases


TEMPLATE_FILES = {
    "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "llama3.2": "meta-llama-Llama-3.2-3B-Instruct.jinja",
}
SPECIAL_TOKENS = {
    "qwen2.5": {"bos_token": None, "eos_token": "<|im_end|>"},
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>"},
    "llama3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}


def render_templates(models, tokenizers=None):
    """Renders with transformers' own renderer (its sandboxed environment), with `strftime_now` pinned."""
    import copy
    import transformers.utils.chat_template_utils as ctu

    class PinnedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return PinnedDatetime(2026, 3, 7, 9, 5, 0)

    ctu.datetime = PinnedDatetime
    out_dir = os.path.join(OUT, "templates")
    os.makedirs(out_dir, exist_ok=True)
    sources = {}
    for key, fname in TEMPLATE_FILES.items():
        shutil.copyfile(os.path.join(models, "templates", fname), os.path.join(out_dir, key + ".jinja"))
        with open(os.path.join(models, "templates", fname), encoding="utf-8") as f:
            sources[key] = f.read()
    results = []
    for case in template_cases():
        kwargs = dict(SPECIAL_TOKENS[case["template"]])
        kwargs.update(case["extra"])
        try:
            rendered, _ = ctu.render_jinja_template(
                conversations=[copy.deepcopy(case["messages"])], tools=copy.deepcopy(case["tools"]),
                chat_template=sources[case["template"]], add_generation_prompt=case["add_generation_prompt"],
                **kwargs)
            case["expected"] = rendered[0]
        except Exception as error:  # noqa: BLE001 - a template's own raise_exception is a golden too
            case["error"] = str(error)
        if tokenizers is not None and "expected" in case:
            # The prompt ids transformers would feed the model (apply_chat_template tokenizes the
            # rendered text with add_special_tokens=False).
            vocabulary = tokenizers["qwen2" if case["template"].startswith("qwen") else "llama3"]
            case["ids"] = vocabulary.encode(case["expected"], add_special_tokens=False).ids
        case["bos_token"] = SPECIAL_TOKENS[case["template"]]["bos_token"]
        case["eos_token"] = SPECIAL_TOKENS[case["template"]]["eos_token"]
        results.append(case)
    write_json(os.path.join(OUT, "templates.json"),
               {"now": PINNED_NOW.strftime("%Y-%m-%dT%H:%M:%S"), "cases": results}, indent=1)
    return results



# Small templates for the interpreter's unit tests: each feature of the Jinja subset, alone. Expected text
# (or the error) comes from transformers' own environment, like the real templates.
UNIT_CASES = [
    ("whitespace: trim_blocks and lstrip_blocks", "a\n  {% if true %}\n    b\n  {% endif %}\nc\n", {}),
    ("whitespace: dash modifiers", "a   {{- ' b ' -}}   c\n\n{%- if true -%}\n  d  \n{%- endif -%}  e", {}),
    ("whitespace: plus disables lstrip", "x\n  {%+ if true %}y{% endif %}\n", {}),
    ("whitespace: comments", "a\n  {# note #}\nb{#- trimmed -#}  c {# keep #} d", {}),
    ("whitespace: variable tags keep newlines", "{{ 'a' }}\n{{ 'b' }}\n", {}),
    ("whitespace: trailing newline dropped once", "x\n\n", {}),
    ("loop variables", "{% for x in items %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}", {"items": ["a", "b", "c"]}),
    ("loop else and filter", "{% for x in items if x > 1 %}{{ x }}{% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}", {"items": [1, 2, 3]}),
    ("loop break continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop scope does not leak", "{% set v = 1 %}{% for x in [1,2] %}{% set v = x * 10 %}{{ v }}{% endfor %}{{ v }}", {}),
    ("namespace", "{% set ns = namespace(found=false, n=0) %}{% for x in [1,2,3] %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.found }} {{ ns.n }}", {}),
    ("tuple unpacking", "{% for k, v in d|items %}{{ k }}={{ v }},{% endfor %}{% set a, b = [1, 2] %}{{ b }}{{ a }}", {"d": {"z": 1, "a": [2, 3], "m": None}}),
    ("dict iteration and methods", "{% for k in d %}{{ k }}{% endfor %} {{ d.keys()|list }} {{ d.get('z') }} {{ d.get('q', 'dflt') }} {% for k, v in d.items() %}{{ v }}{% endfor %}", {"d": {"z": 1, "a": 2}}),
    ("slices", "{{ s[1:] }}|{{ s[::-1] }}|{{ s[:-2] }}|{{ l[1:3] }}|{{ l[::-1] }}|{{ l[-1] }}|{{ l[::2] }}", {"s": "héllo", "l": [1, 2, 3, 4]}),
    ("string methods", "{{ s.split('</think>')[-1].lstrip('\\n') }}|{{ s.startswith('<think>') }}|{{ s.endswith('x') }}|{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'a-b'.replace('-', '+') }}", {"s": "<think>\nreason\n</think>\n\nanswer"}),
    ("operators and precedence", "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 'a' ~ 1 ~ none }} {{ 'x' + s | trim + 'y' }} {{ not true or true }} {{ 1 < 2 <= 2 }}", {"s": "  mid  "}),
    ("comparisons and membership", "{{ 'b' in 'abc' }} {{ 'z' not in ['a'] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1, 2] == [1, 2] }} {{ 'a' < 'b' }} {{ undefined_name in 'x' if false else 'skip' }}", {}),
    ("tests", "{{ x is defined }}{{ y is defined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is number }}{{ 1.5 is number }}{{ 'a' is number }}{{ false is false }}{{ true is true }}{{ [1] is sequence }}{{ 3 is odd }}{{ 4 is even }}{{ x is not none }}{{ 1 is integer }}{{ 1.0 is float }}{{ x is boolean }}", {"x": True}),
    ("undefined attributes are falsy", "{% if m.tool_calls %}yes{% else %}no{% endif %}{% for t in m.tool_calls %}never{% endfor %}[{{ m.missing }}]{{ m.missing is defined }}{{ none.x is defined }}", {"m": {"role": "user"}}),
    ("filters", "{{ items|length }} {{ 'abc'|length }} {{ items|first }} {{ items|last }} {{ items|join('-') }} {{ ' x '|trim }} {{ 'Ab'|upper }}{{ 'Ab'|lower }} {{ u|default('d') }} {{ ''|default('e', true) }} {{ items|reject('equalto', 'b')|join }} {{ items|select('equalto', 'b')|list }} {{ items|reverse|join }} {{ [3,1,2]|unique|list }} {{ 'x'|list }}", {"items": ["a", "b", "c"]}),
    ("attribute filters", "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }} {{ ms|rejectattr('role', 'equalto', 'user')|list|length }} {{ ms|map(attribute='role')|list }}", {"ms": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
    ("tojson", "{{ v|tojson }}\n{{ v|tojson(indent=2) }}\n{{ 'é\"\\\\\\n\\t\u2028'|tojson }} {{ [] |tojson}} {{ {}|tojson(indent=4) }} {{ 1.5|tojson }} {{ 1e-7|tojson }} {{ none|tojson }}", {"v": {"b": 1, "a": [1, 2.5, "ü", None, True, {"x": {}}], "c": "\u0001 ctrl", "d": 3.0, "e": 100000000000000000000.0}}),
    ("python str of values", "{{ none }} {{ true }} {{ [1, 'a', none, 1.0] }} {{ {'k': 'v', 'n': [true]} }} {{ \"it's\" }} {{ ['it\\'s'] }} {{ 10 / 4 }} {{ 3.0 }}", {}),
    ("conditional expression", "{{ 'a' if x else 'b' }}{{ 'c' if not x else 'd' }}[{{ 'e' if false }}]", {"x": True}),
    ("set block and macro", "{% set greeting %}Hello {{ name }}{% endset %}{{ greeting|upper }}|{% macro tag(n, v='0') %}<{{ n }}={{ v }}>{% endmacro %}{{ tag('a') }}{{ tag('b', v='1') }}", {"name": "Ann"}),
    ("string escapes and literals", "{{ 'a\\'b' }}{{ \"c\\\"d\" }}{{ 'tab\\there' }}{{ '\\u00e9' }}{{ 'x' 'y' }}{{ [1, 2,] }}{{ (1, 2)|join }}", {}),
    ("raise_exception", "{% if x %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}", {"x": True}),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M %A %B %j') }}", {}),
    ("type error message", "{{ 'a' + 1 }}", {}),
    ("undefined in arithmetic", "{{ nothing + 'x' }}", {}),
    ("tojson options", "{{ v|tojson(ensure_ascii=true) }} {{ v|tojson(sort_keys=true) }} {{ v|tojson(separators=(',', ':')) }} {{ v|tojson(indent=2, sort_keys=true) }}", {"v": {"z": "é😀\u007f", "a": [1, {"y": 2, "b": None}]}}),
    ("dictsort min max", "{% for k, v in d|dictsort %}{{ k }}{{ v }}{% endfor %} {% for k, v in d|dictsort(by='value', reverse=true) %}{{ k }}{% endfor %} {% for k, v in d|dictsort(true) %}{{ k }}{% endfor %} {{ [3, 1, 2]|min }} {{ ['b', 'a']|max }}", {"d": {"b": 2, "A": 3, "c": 1, "a": 0}}),
    ("filter block and format", "{% filter upper %}a{{ 'b' }}c{% endfilter %} {{ 'x{}y{}'.format(1, 'z') }} {{ '{0}-{0}'.format('q') }}", {}),
    ("select and map on none", "{{ none|selectattr('a')|list }}{{ n|map(attribute='x')|list }}{{ none|reject('none')|list|length }}", {"n": None}),
    ("loop.cycle and previtem", "{% for x in 'abc' %}{{ loop.cycle('odd', 'even') }}{{ loop.previtem }}{% endfor %}", {}),
    ("sandbox range limit", "{{ range(200000)|length }}", {}),
    ("range", "{{ range(3)|list }}{{ range(1, 10, 3)|list }}{{ range(5, 0, -2)|list }}", {}),
    ("recursive macro", "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}", {}),
]


def render_unit_cases():
    import transformers.utils.chat_template_utils as ctu

    class PinnedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return PinnedDatetime(2026, 3, 7, 9, 5, 0)

    ctu.datetime = PinnedDatetime
    out = []
    for name, source, variables in UNIT_CASES:
        case = {"name": name, "source": source, "variables": variables}
        try:
            case["expected"] = ctu._compile_jinja_template(source).render(**variables)
        except Exception as error:  # noqa: BLE001 - errors are goldens too
            case["error"] = str(error)
        out.append(case)
    write_json(os.path.join(OUT, "jinja-cases.json"), out, indent=1)


BASIC_CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Tell me a joke"},
]


def render_all_templates(models):
    """Every template llama.cpp ships, rendered for a plain conversation, a tool conversation and one with
    reasoning: breadth beyond the four models the engine targets (macros, filter blocks, str.format,
    dictsort, tojson options, selectattr on none...)."""
    import copy
    import transformers.utils.chat_template_utils as ctu
    directory = os.path.join(models, "templates")
    conversations = [("plain", BASIC_CONVERSATION, None), ("tools", TOOLS_MAPPING, [WEATHER_TOOL, SEARCH_TOOL]),
                     ("reasoning", QWEN3_REASONING, None)]
    out = []
    sources = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            source = f.read()
        sources[name] = source
        for conversation, messages, tools in conversations:
            case = {"file": name, "conversation": conversation, "messages": messages, "tools": tools}
            try:
                rendered, _ = ctu.render_jinja_template(
                    conversations=[copy.deepcopy(messages)], tools=copy.deepcopy(tools), chat_template=source,
                    add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
                case["expected"] = rendered[0]
            except Exception as error:  # noqa: BLE001 - a template refusing the conversation is a golden too
                case["error"] = str(error)
            out.append(case)
    write_json(os.path.join(OUT, "all-templates.json"), {"sources": sources, "cases": out})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", help="llama_cpp_python-0.3.36 sdist: extracted directory or .tar.gz")
    args = parser.parse_args()
    models = models_dir(args.src)

    q_tokens, q_types, q_merges = gguf_vocab(os.path.join(models, "ggml-vocab-qwen2.gguf"))
    l_tokens, l_types, l_merges = gguf_vocab(os.path.join(models, "ggml-vocab-llama-bpe.gguf"))

    qwen_added = [(i, t, True) for i, (t, ty) in enumerate(zip(q_tokens, q_types)) if ty == 3]
    qwen_added += [(151646 + k, t, not t.endswith("tool_call>")) for k, t in enumerate(QWEN25_EXTRA)]
    llama_added = [(i, t, True) for i, (t, ty) in enumerate(zip(l_tokens, l_types)) if ty == 3]

    qwen = byte_level_tokenizer(q_tokens, q_types, q_merges, QWEN2_REGEX, True, False, qwen_added)
    llama = byte_level_tokenizer(l_tokens, l_types, l_merges, LLAMA3_REGEX, False, True, llama_added)
    qwen = save_tokenizer(qwen, os.path.join(OUT, "qwen2", "tokenizer.json"), string_merges=True)
    llama = save_tokenizer(llama, os.path.join(OUT, "llama3", "tokenizer.json"), string_merges=False)

    corpus = HAND_CORPUS + load_inp_cases(models) + fuzz_corpus()
    small = small_tokenizer(HAND_CORPUS + load_inp_cases(models))
    small = save_tokenizer(small, os.path.join(OUT, "small", "tokenizer.json"), string_merges=False)

    tokenizers = {"qwen2": qwen, "llama3": llama, "small": small}
    counts = {"qwen2": len(q_merges), "llama3": len(l_merges),
              "small": len(json.loads(small.to_str())["model"]["merges"])}
    encodings = {}
    for name, tok in tokenizers.items():
        encodings[name] = {
            "merges": counts[name],
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "ids": [tok.encode(text, add_special_tokens=False).ids for text in corpus],
            "decoded_skip_special": [tok.decode(tok.encode(t, add_special_tokens=False).ids,
                                                skip_special_tokens=True) for t in corpus],
        }
    write_json(os.path.join(OUT, "corpus.json"), corpus, indent=1)
    write_json(os.path.join(OUT, "encodings.json"), encodings)

    # llama.cpp's own expected ids for its .inp cases: a second, independent check of the Qwen2/Llama 3 builds.
    inp = load_inp_cases(models)
    for name, vocab_file in [("qwen2", "ggml-vocab-qwen2.gguf.out"), ("llama3", "ggml-vocab-llama-bpe.gguf.out")]:
        outs = load_out_ids(os.path.join(models, vocab_file))
        assert len(outs) == len(inp), (len(outs), len(inp))
        bad = sum(tokenizers[name].encode(t, add_special_tokens=False).ids != want for t, want in zip(inp, outs))
        print(f"{name}: {bad} of {len(inp)} llama.cpp .out vectors differ from tokenizers", file=sys.stderr)

    big = big_text(models)
    with open(os.path.join(OUT, "big.txt"), "w", encoding="utf-8") as f:
        f.write(big)
    write_json(os.path.join(OUT, "big-ids.json"), {n: tokenizers[n].encode(big, add_special_tokens=False).ids
                                                   for n in ["qwen2", "llama3"]})

    results = render_templates(models, tokenizers)
    render_unit_cases()
    render_all_templates(models)
    print(f"{len(corpus)} corpus strings, {len(results)} template cases "
          f"({sum('error' in r for r in results)} expected errors)", file=sys.stderr)


if __name__ == "__main__":
    main()
