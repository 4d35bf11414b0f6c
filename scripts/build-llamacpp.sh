#!/usr/bin/env bash
# Builds llama.cpp's programs (llama-server, llama-quantize, llama-bench, llama-batched-bench) from the llama-cpp-python source archive
# on PyPI (its vendor/llama.cpp), into .build/llama.cpp/bin, for the tests and benchmarks that run llama.cpp beside
# modeld: the `llamacpp` engine's end-to-end test, GGUF fixtures (converter and quantizer), `llama-bench`.
#
# Reused while .build/llama.cpp/bin holds the programs of the pinned version; cmake comes from pip when missing.
# Prints the bin directory. LLAMACPP_PYPI_VERSION pins the archive (default below); JOBS sets the build's
# parallelism (default: the number of CPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${LLAMACPP_PYPI_VERSION:-0.3.36}
root=$PWD/.build/llama.cpp
bin=$root/bin
stamp=$bin/.version
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -x "$bin/llama-server" ] && [ -x "$bin/llama-quantize" ] && [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$root"
archive=$root/llama_cpp_python-$version.tar.gz
if [ ! -f "$archive" ]; then
    # The source archive's address from PyPI's JSON API (relative addresses are resolved against the API's).
    api=https://pypi.org/pypi/llama-cpp-python/json
    url=$(curl -sSfL "$api" | python3 -c '
import json, sys, urllib.parse
data = json.load(sys.stdin)
sdist = [u for u in data["releases"][sys.argv[2]] if u["packagetype"] == "sdist"][0]
print(urllib.parse.urljoin(sys.argv[1], sdist["url"]), sdist["digests"]["sha256"])
' "$api" "$version")
    set -- $url
    curl -sSfL -o "$archive.part" "$1"
    echo "$2  $archive.part" | sha256sum -c --quiet -
    mv "$archive.part" "$archive"
fi
src=$root/src-$version
if [ ! -f "$src/CMakeLists.txt" ]; then
    rm -rf "$src" && mkdir -p "$src"
    tar -xzf "$archive" -C "$src" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
fi
if ! command -v cmake >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check cmake >&2
fi
cmake -S "$src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON >&2
cmake --build "$root/build" -j "${JOBS:-$(nproc)}" --target llama-server llama-quantize llama-bench llama-batched-bench >&2
mkdir -p "$bin"
for program in llama-server llama-quantize llama-bench llama-batched-bench; do
    cp "$root/build/bin/$program" "$bin/"
done
echo "$version" > "$stamp"
echo "$bin"
