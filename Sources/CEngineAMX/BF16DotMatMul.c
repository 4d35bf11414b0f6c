// The built-in engine's prefill matrix multiply with bf16 weights on AVX-512 BF16 (`vdpbf16ps`), for CPUs that
// have it but no AMX (AMD Zen 4 and 5): each instruction multiplies 32 bf16 weights by 32 bf16 activations and
// adds the pairs' sums to 16 f32 lanes, twice the products of an f32 FMA. Activations come converted by
// amx_bf16_pack_activations (rounded to bf16, or split into two bf16 parts whose products are summed).
//
// Four weight rows against six tokens at a time (then four, then one), 24 accumulators of dot products along the
// columns, over blocks of columns so that the four rows' block stays in L1 while every token group passes and the
// tokens' block in L2 while the rows pass. A tile's four rows are reduced together (``sum4``) and stored as one
// vector per token; later blocks add their partial sums to `y`. On Zen 4 this runs near one `vdpbf16ps` per cycle.

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

/// Columns per block: 4 rows x 1024 bf16 (8 KB) in L1; 128 tokens x 1024 x 2 parts (512 KB) in L2.
#define BLOCK 1024

static inline ptrdiff_t round_up(ptrdiff_t value, ptrdiff_t multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

/// The sums of the lanes of `a`, `b`, `c` and `d`, in that order: a tree of shuffles and adds, about a third of the
/// work of four horizontal reductions.
BF16_TARGET INLINE __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    // Per 128-bit chunk: [a0+a2, a1+a3, b0+b2, b1+b3] and the same for c and d.
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    // One chunk per vector: [a, b, c, d], four partial sums each.
    __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
    const __m512i firsts = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(firsts, v));
}

/// Rows `row..row+R` against tokens `token..token+T` over columns `k0..<k1` (R, T constants after inlining);
/// activation rows are `padded` apart, the low parts `low_offset` elements after the high ones (0: one part).
BF16_TARGET INLINE void tile(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row, int R, const uint16_t *a, ptrdiff_t padded,
    ptrdiff_t low_offset, ptrdiff_t token, int T, ptrdiff_t k0, ptrdiff_t k1, int first,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (ptrdiff_t k = k0; k < k1; k += 32) {
        // Weight rows end at `columns` (a multiple of 2); the activations are padded with zeros to 32.
        const __mmask32 mask = k + 32 <= columns ? 0xFFFFFFFFu : (__mmask32)((1ull << (columns - k)) - 1);
        __m512bh weights[4];
        for (int r = 0; r < R; r++)
            weights[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + (row + r) * columns + k);
        for (int t = 0; t < T; t++) {
            const uint16_t *at = a + (token + t) * padded + k;
            const __m512bh high = (__m512bh)_mm512_loadu_si512(at);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], weights[r], high);
            if (low_offset) {
                const __m512bh low = (__m512bh)_mm512_loadu_si512(at + low_offset);
                for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], weights[r], low);
            }
        }
    }
    if (R == 4) {
        // Each token's four rows are consecutive in `y`: their sums as one vector.
        const __m128 b = bias && first ? _mm_loadu_ps(bias + row) : _mm_setzero_ps();
        for (int t = 0; t < T; t++) {
            float *target = y + (token + t) * y_stride + row;
            const __m128 value = _mm_add_ps(sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), b);
            _mm_storeu_ps(target, !first || accumulate ? _mm_add_ps(_mm_loadu_ps(target), value) : value);
        }
        return;
    }
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            float value = _mm512_reduce_add_ps(acc[r][t]);
            float *target = y + (token + t) * y_stride + row + r;
            if (!first) {
                *target += value;
            } else {
                value += bias ? bias[row + r] : 0.0f;
                if (accumulate) *target += value; else *target = value;
            }
        }
    }
}

/// Every token against rows `row..row+R`, four at a time, then the rest.
BF16_TARGET INLINE void rows_all_tokens(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row, int R, const uint16_t *a, ptrdiff_t padded,
    ptrdiff_t low_offset, ptrdiff_t tokens, ptrdiff_t k0, ptrdiff_t k1, float *y, ptrdiff_t y_stride,
    const float *bias, int accumulate)
{
    const int first = k0 == 0;
    ptrdiff_t t = 0;
    for (; t + 6 <= tokens; t += 6)
        tile(w, columns, row, R, a, padded, low_offset, t, 6, k0, k1, first, y, y_stride, bias, accumulate);
    for (; t + 4 <= tokens; t += 4)
        tile(w, columns, row, R, a, padded, low_offset, t, 4, k0, k1, first, y, y_stride, bias, accumulate);
    for (; t < tokens; t++)
        tile(w, columns, row, R, a, padded, low_offset, t, 1, k0, k1, first, y, y_stride, bias, accumulate);
}

BF16_TARGET void engine_bf16_dot_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    const ptrdiff_t padded = round_up(columns, AMX_BF16_COLUMN_BLOCK);
    const ptrdiff_t low_offset = parts == 2 ? round_up(tokens, AMX_BF16_TOKEN_BLOCK) * padded : 0;
    for (ptrdiff_t k0 = 0; k0 < columns; k0 += BLOCK) {
        const ptrdiff_t k1 = k0 + BLOCK < columns ? k0 + BLOCK : columns;
        ptrdiff_t row = row_start;
        for (; row + 4 <= row_end; row += 4)
            rows_all_tokens(w, columns, row, 4, a, padded, low_offset, tokens, k0, k1, y, y_stride, bias, accumulate);
        for (; row < row_end; row++)
            rows_all_tokens(w, columns, row, 1, a, padded, low_offset, tokens, k0, k1, y, y_stride, bias, accumulate);
    }
}

#endif
