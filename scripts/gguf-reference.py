#!/usr/bin/env python3
"""Reference answers for the built-in engine's GGUF tests, from the `gguf` Python package (pip install gguf).

    gguf-reference.py random OUT.gguf SEED
        Writes a GGUF file holding, for every supported tensor type, random blocks `<TYPE>` (rows of 512
        elements; f16 scale fields finite, every other byte random) and `<TYPE>.reference`, the package's F32
        dequantization of them; plus `Q8_0.quantized` / `Q4_0.quantized`: a real-valued matrix quantized by the
        package, with its dequantization beside it.
    gguf-reference.py dequantize IN.gguf OUT.gguf
        Writes every tensor of IN as F32, dequantized by the package, under the same names.
    gguf-reference.py quantize OUT.gguf SEED
        Writes `F32`, random rows of 512 elements with the blocks that test the rounding (zeros, halves, ties of
        magnitude, values whose scale overflows, is subnormal or underflows in f16), `BF16`, the same values rounded to bf16, and for each of them and
        Q8_0 and Q4_0, `<F32|BF16>.<TYPE>`: the package's quantization of its values.
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter, quants

ROWS, COLUMNS = 8, 512

# Byte offsets of the f16 fields in each block type (docs/design/gguf.md, Tensor types).
HALF_FIELDS = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def random_halves(rng, count):
    """Finite f16 values over the whole range: normal, subnormal, zero, both signs."""
    magnitudes = np.exp2(rng.uniform(-26, 15, count)).astype(np.float16)
    values = np.where(rng.random(count) < 0.5, -magnitudes, magnitudes)
    values[rng.random(count) < 0.02] = 0
    return values.astype(np.float16)


def random_blocks(rng, qtype):
    block, size = quants.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (ROWS * COLUMNS // block, size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        blocks[:, offset:offset + 2] = random_halves(rng, len(blocks)).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(ROWS, COLUMNS // block * size)


def write_random(path, seed):
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(path, "reference")
    for qtype in HALF_FIELDS:
        blocks = random_blocks(rng, qtype)
        writer.add_tensor(qtype.name, blocks, raw_dtype=qtype)
        writer.add_tensor(f"{qtype.name}.reference", quants.dequantize(blocks, qtype).astype(np.float32))
    bits = rng.integers(0, 1 << 16, (ROWS, COLUMNS), dtype=np.uint16)
    f16 = bits.view(np.float16)
    bits[np.isnan(f16)] = 0x3C00  # NaN payloads are not compared
    writer.add_tensor("F16", bits.view(np.uint8), raw_dtype=T.F16)
    writer.add_tensor("F16.reference", quants.dequantize(bits.view(np.uint8), T.F16).astype(np.float32))
    bits = rng.integers(0, 1 << 16, (ROWS, COLUMNS), dtype=np.uint16)
    writer.add_tensor("BF16", bits.view(np.uint8), raw_dtype=T.BF16)
    writer.add_tensor("BF16.reference", quants.dequantize(bits.view(np.uint8), T.BF16).astype(np.float32))
    values = rng.standard_normal((ROWS, COLUMNS)).astype(np.float32)
    writer.add_tensor("F32", values)
    writer.add_tensor("F32.reference", values)
    for qtype in (T.Q8_0, T.Q4_0):
        quantized = quants.quantize(values, qtype)
        writer.add_tensor(f"{qtype.name}.quantized", quantized, raw_dtype=qtype)
        writer.add_tensor(f"{qtype.name}.quantized.reference", quants.dequantize(quantized, qtype).astype(np.float32))
    finish(writer)


def edge_blocks():
    """Blocks (32 values each) where a quantizer's rounding and choice of scale show."""
    ramp = np.arange(32, dtype=np.float32)
    return np.stack([
        np.zeros(32, np.float32),                                  # d = 0
        (ramp - 16) * 0.5,                                          # halves: exact ties in Q8_0 when amax = 127·k/2
        np.where(ramp % 2 == 0, 127.0, -63.5).astype(np.float32),  # q = ±63.5 → away from zero
        np.where(ramp == 5, -8.0, np.where(ramp == 9, 8.0, ramp / 4)).astype(np.float32),  # |max| tie: the first wins
        np.where(ramp == 0, 3.0e38, 1.0).astype(np.float32),        # d overflows f16
        np.full(32, 1.0e-6, np.float32) * (ramp - 12),              # d subnormal in f16
        np.full(32, 1.0e-30, np.float32) * (ramp - 12),             # d underflows f16 to 0
        ramp - 8.5,                                                 # Q4_0 at x/d + 8.5 = whole numbers
    ]).astype(np.float32)


def write_quantized(path, seed):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((ROWS, COLUMNS)) * np.exp2(rng.integers(-8, 8, (ROWS, 1)))).astype(np.float32)
    edges = edge_blocks().reshape(-1)
    values[0, :len(edges)] = edges
    bf16 = quants.quantize(values, T.BF16)
    writer = GGUFWriter(path, "reference")
    writer.add_tensor("F32", values)
    writer.add_tensor("BF16", bf16, raw_dtype=T.BF16)
    for name, source in [("F32", values), ("BF16", quants.dequantize(bf16, T.BF16).astype(np.float32))]:
        for qtype in (T.Q8_0, T.Q4_0):
            writer.add_tensor(f"{name}.{qtype.name}", quants.quantize(source, qtype), raw_dtype=qtype)
    finish(writer)


def write_dequantized(source, path):
    reader = GGUFReader(source)
    writer = GGUFWriter(path, "reference")
    for tensor in reader.tensors:
        values = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        shape = tuple(int(n) for n in reversed(tensor.shape))
        writer.add_tensor(tensor.name, values.reshape(shape))
    finish(writer)


def finish(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if sys.argv[1] == "random":
        write_random(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "quantize":
        write_quantized(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "dequantize":
        write_dequantized(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
