// The built-in engine's prefill matrix multiply with bf16 weights on AVX-512 BF16 (`vdpbf16ps`), for CPUs that
// have it but no AMX (AMD Zen 4 and 5): each instruction multiplies 32 bf16 weights by 32 bf16 activations and
// adds the pairs' sums to 16 f32 lanes, twice the products of an f32 FMA. Activations come converted by
// amx_bf16_pack_activations (rounded to bf16, or split into two bf16 parts whose products are summed).
//
// Four weight rows against six tokens at a time (the last 1-5 tokens in one tile), 24 accumulators of dot products
// along the columns, over blocks of columns so that the four rows' block stays in L1 while every token group passes
// and the tokens' block in L2 while the rows pass; the first tile of four rows prefetches the next four rows' block.
// A tile's four rows are reduced together (``sum4``) and stored as one vector per token; later blocks add their
// partial sums to `y`. The loops over whole steps of 32 columns load without masks, and the one-part and two-part
// kernels are separate copies. scripts/bench-kernels.sh measures it beside the peak of `vdpbf16ps`
// (docs/benchmarks.md: about 85 % of it on one Zen 4 thread at 128 tokens).

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

/// Columns per block: 4 rows x 2048 bf16 (16 KB) in L1; 128 tokens x 2048 (512 KB) in L2 (1 MB on Zen 4). Blocks
/// of 1024 were slower (twice the reductions and stores of partial sums), 4096 no faster.
#define BLOCK 2048

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

/// One step of 32 columns from `k` of a tile: rows `w_rows[0..R]` against tokens `a_rows[0..T]` (and their low
/// parts `low_offset` elements on, with `parts` 2), weights loaded under `mask`; with `ahead`, the same columns of
/// the rows `ahead` elements on are prefetched.
BF16_TARGET INLINE void step(
    const uint16_t *const *w_rows, int R, const uint16_t *const *a_rows, int T, int parts, ptrdiff_t low_offset,
    ptrdiff_t k, __mmask32 mask, __m512 acc[4][6], ptrdiff_t ahead)
{
    if (ahead)
        for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w_rows[r] + ahead + k), _MM_HINT_T0);
    __m512bh weights[4];
    for (int r = 0; r < R; r++) weights[r] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w_rows[r] + k);
    for (int t = 0; t < T; t++) {
        const __m512bh high = (__m512bh)_mm512_loadu_si512(a_rows[t] + k);
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], weights[r], high);
        if (parts == 2) {
            const __m512bh low = (__m512bh)_mm512_loadu_si512(a_rows[t] + low_offset + k);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], weights[r], low);
        }
    }
}

/// Rows `row..row+R` against tokens `token..token+T` over columns `k0..<k1` (R, T and `parts` constants after
/// inlining); activation rows are `padded` apart, with `parts` 2 the low parts `low_offset` elements after the
/// high ones. With `ahead`, the whole steps prefetch the rows `ahead` elements on (the next tile's rows).
BF16_TARGET INLINE void tile(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row, int R, const uint16_t *a, ptrdiff_t padded, int parts,
    ptrdiff_t low_offset, ptrdiff_t token, int T, ptrdiff_t k0, ptrdiff_t k1, int first,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate, ptrdiff_t ahead)
{
    __m512 acc[4][6];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const uint16_t *w_rows[4], *a_rows[6];
    for (int r = 0; r < R; r++) w_rows[r] = w + (row + r) * columns;
    for (int t = 0; t < T; t++) a_rows[t] = a + (token + t) * padded;
    ptrdiff_t k = k0;
    for (; k + 32 <= k1; k += 32) step(w_rows, R, a_rows, T, parts, low_offset, k, 0xFFFFFFFFu, acc, ahead);
    // Weight rows end at `columns` (a multiple of 2); the activations are padded with zeros to 32.
    if (k < k1) step(w_rows, R, a_rows, T, parts, low_offset, k, (__mmask32)((1ull << (k1 - k)) - 1), acc, 0);
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
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row, int R, const uint16_t *a, ptrdiff_t padded, int parts,
    ptrdiff_t low_offset, ptrdiff_t tokens, ptrdiff_t k0, ptrdiff_t k1, float *y, ptrdiff_t y_stride,
    const float *bias, int accumulate)
{
    const int first = k0 == 0;
    ptrdiff_t t = 0;
    // The first tile of four rows brings the next four rows' block into the cache as it goes, so that the rows
    // of a matrix larger than the caches arrive before they are needed.
    const ptrdiff_t ahead = R == 4 ? 4 * columns : 0;
    for (; t + 6 <= tokens; t += 6)
        tile(w, columns, row, R, a, padded, parts, low_offset, t, 6, k0, k1, first, y, y_stride, bias, accumulate,
            t == 0 ? ahead : 0);
    // The last 1-5 tokens in one tile, so that the rows are read once more, not once per token.
    const ptrdiff_t last_ahead = t == 0 ? ahead : 0;
#define LAST_TILE(T) \
    tile(w, columns, row, R, a, padded, parts, low_offset, t, T, k0, k1, first, y, y_stride, bias, accumulate, last_ahead)
    switch (tokens - t) {
    case 5: LAST_TILE(5); break;
    case 4: LAST_TILE(4); break;
    case 3: LAST_TILE(3); break;
    case 2: LAST_TILE(2); break;
    case 1: LAST_TILE(1); break;
    default: break;
    }
#undef LAST_TILE
}

/// The rows in blocks of columns (`parts` a constant after inlining).
BF16_TARGET INLINE void dot_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end, const uint16_t *a,
    ptrdiff_t tokens, int parts, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    const ptrdiff_t padded = round_up(columns, AMX_BF16_COLUMN_BLOCK);
    const ptrdiff_t low_offset = parts == 2 ? round_up(tokens, AMX_BF16_TOKEN_BLOCK) * padded : 0;
    for (ptrdiff_t k0 = 0; k0 < columns; k0 += BLOCK) {
        const ptrdiff_t k1 = k0 + BLOCK < columns ? k0 + BLOCK : columns;
        ptrdiff_t row = row_start;
        for (; row + 4 <= row_end; row += 4)
            rows_all_tokens(w, columns, row, 4, a, padded, parts, low_offset, tokens, k0, k1, y, y_stride, bias, accumulate);
        for (; row < row_end; row++)
            rows_all_tokens(w, columns, row, 1, a, padded, parts, low_offset, tokens, k0, k1, y, y_stride, bias, accumulate);
    }
}

BF16_TARGET void engine_bf16_dot_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    if (parts == 2) dot_matmul(w, columns, row_start, row_end, a, tokens, 2, y, y_stride, bias, accumulate);
    else dot_matmul(w, columns, row_start, row_end, a, tokens, 1, y, y_stride, bias, accumulate);
}

#endif
