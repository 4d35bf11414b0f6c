#ifndef CENGINEAMX_H
#define CENGINEAMX_H

#include <stddef.h>
#include <stdint.h>

/// The built-in engine's AMX-BF16 matrix multiply (Intel Advanced Matrix Extensions: 8 tile
/// registers of 16 rows x 64 bytes; TDPBF16PS multiplies bf16 pairs and accumulates in f32).
///
/// Activations are converted to bf16 (``amx_bf16_pack_activations``) once per matrix multiply and
/// read by every thread; each thread packs 16 weight rows at a time into the tile layout and
/// multiplies them with every 16-token tile. An activation is either rounded to bf16 (one part:
/// 8 significant bits) or split into that and its rounded remainder (two parts: about 16 bits, at
/// twice the tile work), whose two products are summed in f32. Every function is safe on any thread: each call loads its tile
/// configuration and releases the tiles before it returns.

#ifdef __cplusplus
extern "C" {
#endif

/// Activation columns are padded to a multiple of this (one tile row: 32 bf16).
#define AMX_BF16_COLUMN_BLOCK 32
/// Tokens are padded to a multiple of this (one tile: 16 rows).
#define AMX_BF16_TOKEN_BLOCK 16

/// 1 when this process may use AMX-BF16: the CPU reports AMX-TILE, AMX-BF16 and AVX-512F, the
/// kernel enables their register state, and Linux granted the process the tile data permission
/// (arch_prctl ARCH_REQ_XCOMP_PERM, asked once per process); 0 otherwise. Thread-safe.
int amx_bf16_usable(void);

/// Rounds activation rows `row_start..<row_end` of `x` (rows `x_stride` floats apart, `columns`
/// floats each) to bf16, to nearest even, into rows of `out` `columns` rounded up to
/// ``AMX_BF16_COLUMN_BLOCK`` apart; the padding columns, and rows at or past `tokens`, are zeros.
/// With `parts` 2, each value's remainder `x - bf16(x)`, rounded to bf16, goes to row `P + t`,
/// where P is `tokens` rounded up to ``AMX_BF16_TOKEN_BLOCK``. Rows run to P (`parts` P rows in
/// all). Only after ``amx_bf16_usable`` returned 1, or for ``engine_bf16_dot_matmul`` on a CPU with AVX-512
/// (F, BW): it uses no tile instructions.
void amx_bf16_pack_activations(
    const float *x, ptrdiff_t x_stride, ptrdiff_t tokens, ptrdiff_t columns, int parts,
    ptrdiff_t row_start, ptrdiff_t row_end, uint16_t *out);

/// `y[t][n] (+)= bias[n] + sum_k a[t][k] * w[n][k]` for weight rows `row_start..<row_end` and
/// tokens `0..<tokens`, products in bf16 and sums in f32. Only after ``amx_bf16_usable`` returned 1.
///
/// - w: `[rows, columns]` bf16, row-major (read-only); `columns` a multiple of 2.
/// - a: activations from ``amx_bf16_pack_activations`` with the same `tokens`, `columns` and
///   `parts` (1 or 2).
/// - y: `tokens` rows of floats, `y_stride` apart; with `accumulate` the result is added to it.
/// - bias: one float per weight row, or NULL.
void amx_bf16_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate);

/// `y[n] (+)= bias[n] + sum_k x[k] * w[n][k]` for bf16 weight rows `row_start..<row_end` and one
/// token (decode): weights widened to f32, products and sums in f32, with software prefetch (the
/// product is bound by reading the weights). Needs AVX2 and FMA; `columns` a multiple of 8.
void engine_bf16_matvec(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const float *x, float *y, const float *bias, int accumulate);

/// `y[t][n] (+)= bias[n] + sum_k x[t][k] * w[n][k]` for bf16 weight rows `row_start..<row_end` and a few tokens
/// (batched decode: one per stream), `x` rows `x_stride` floats apart, `y` rows `y_stride` apart: each weight row is
/// read from memory once for every token (with software prefetch, as ``engine_bf16_matvec``), widened to f32, and
/// multiplied in f32. Needs AVX-512 (F, BW, DQ, VL); `columns` a multiple of 8.
void engine_bf16_matmul_few(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const float *x, ptrdiff_t x_stride, ptrdiff_t tokens, float *y, ptrdiff_t y_stride, const float *bias, int accumulate);

/// `y[t][n] (+)= bias[n] + sum_k a[t][k] * w[n][k]` for bf16 weight rows `row_start..<row_end` and tokens
/// `0..<tokens` with AVX-512 BF16's `vdpbf16ps` (products of bf16 pairs summed in f32), for CPUs without AMX.
/// The arguments are those of ``amx_bf16_matmul``, the activations from ``amx_bf16_pack_activations``, which
/// needs only AVX-512 (F, BW) for this. Needs AVX-512 (F, BW, DQ, VL) and AVX512_BF16.
void engine_bf16_dot_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate);

/// The block-quantized weight formats of ``engine_quantized_matmul_vnni``.
enum {
    ENGINE_QUANT_Q8_0 = 0,
    ENGINE_QUANT_Q4_K = 1,
    ENGINE_QUANT_Q6_K = 2,
    /// Only for ``engine_quantized_prefill_vnni``.
    ENGINE_QUANT_Q4_0 = 3,
    ENGINE_QUANT_Q5_K = 4,
};

/// `y[t][n] (+)= bias[n] + sum_k a[t][k] * w[n][k]` for GGUF block-quantized weight rows `row_start..<row_end`
/// (`type` one of the ENGINE_QUANT_ formats, rows of `columns` elements, `columns` a multiple of the format's
/// block) and tokens `0..<tokens`, with activations quantized per block of 32: `a = d * q`, `q` int8 (`tokens`
/// rows of `columns`), `d` one scale per block and `s` its `d * sum(q)` (both `tokens` rows of `columns / 32`).
/// Integer dot products with `vpdpbusd`, scaled and summed in f32. Needs AVX-512 (F, BW, DQ, VL) and VNNI.
void engine_quantized_matmul_vnni(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const int8_t *q, const float *d, const float *s, ptrdiff_t tokens,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate);

/// ``engine_quantized_matmul_vnni`` for many tokens (QuantizedPrefill.c), also for Q4_0 and Q5_K: weights
/// unpacked once per four rows and multiplied in register tiles of four rows by three tokens. Returns 0, having
/// done nothing, when its scratch memory cannot be allocated.
int engine_quantized_prefill_vnni(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const int8_t *q, const float *d, const float *s, ptrdiff_t tokens,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate);

/// Quantizes `blocks` consecutive blocks of 32 floats from `x` to int8 as ``QuantizedActivations`` does: per block
/// `d = max|x| / 127`, `q = x * (1 / d)` rounded half away from zero (0 where d is 0), `s = d * sum(q)`; `q` gets 32
/// values and `d` and `s` one per block. Needs AVX-512 (F, BW, DQ, VL).
void engine_quantize_blocks_avx512(const float *x, ptrdiff_t blocks, int8_t *q, float *d, float *s);
/// Quantizes one token's activations `x` (`columns` a multiple of 256) for ``engine_decode_quantized``: per block
/// of 256, `x = d * q` with `q` int8 (rounded to nearest even), `d = max|x| / 127`, and the sum of every 16
/// values of `q` in `sums` (`columns / 16` of them). Needs AVX-512 (F, BW, DQ, VL).
void engine_quantize_super_blocks(const float *x, ptrdiff_t columns, int8_t *q, float *d, int16_t *sums);

/// `y[n] (+)= bias[n] + sum_k a[k] * w[n][k]` for one token (decode) and Q4_K or Q6_K weight rows
/// `row_start..<row_end` (`type` ENGINE_QUANT_Q4_K or ENGINE_QUANT_Q6_K, rows of `columns` elements, a multiple
/// of 256), with the activations from ``engine_quantize_super_blocks``. Each block's sub-block scales apply to
/// integer dot products (`vpmaddubsw`, `vpdpwssd`); one f32 product per block of 256. Needs AVX-512 (F, BW,
/// DQ, VL) and VNNI.
void engine_decode_quantized(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end, const int8_t *q,
    const float *d, const int16_t *sums, float *y, const float *bias, int accumulate);

#ifdef __cplusplus
}
#endif

#endif
