// The built-in engine's single-token (decode) product with bf16 weights: one token's activations
// against a range of weight rows, summed in f32 in exactly the order of the engine's Swift AVX2
// kernel for f16 and f32 weights, with software prefetch ahead of the loads.
//
// Decode reads every weight once per token, so its speed is the memory read bandwidth each core
// gets. The weights are mapped from the checkpoint in 4 KB pages, and the hardware prefetchers
// stop at every page boundary: prefetching 8 KB ahead keeps requests in flight across them, and
// reading four rows at once, from four parts of the range, keeps more of them in flight.
// (Measured on the Qwen2.5-0.5B bench model with one stream: 1-2 KB ahead 17-19.5 tok/s, 4-8 KB
// 18-20.5, 16 KB no better; backing the weights with 2 MB pages instead gained nothing.) The Swift kernel this
// replaces had its widening compiled to an out-of-line call, which made decode compute-bound.

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define DECODE_TARGET __attribute__((target("avx2,fma")))

/// How far ahead of the loads the kernel prefetches, in bytes of weights.
#define PREFETCH_AHEAD 8192
/// Rows read at once, each from its own part of the range: more streams keep more requests in
/// flight per core (one 9.1-11.2 tok/s, two 11.6-14.1, four 12.2-15.5, eight 12.0-13.4, in
/// alternating runs on a loaded machine); the accumulators of four spill, at no measurable cost.
#define STREAMS 4

/// Eight bf16 to f32 (exact): zero-extend and shift into the top half.
DECODE_TARGET static inline __m256 widen8(const uint16_t *w) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16));
}

/// Four accumulators, each over every fourth group of 8 columns, the tail into the first.
typedef struct { __m256 a0, a1, a2, a3; } Sums;

DECODE_TARGET static inline void add32(Sums *s, const uint16_t *r, const float *x, ptrdiff_t i) {
    s->a0 = _mm256_fmadd_ps(widen8(r + i), _mm256_loadu_ps(x + i), s->a0);
    s->a1 = _mm256_fmadd_ps(widen8(r + i + 8), _mm256_loadu_ps(x + i + 8), s->a1);
    s->a2 = _mm256_fmadd_ps(widen8(r + i + 16), _mm256_loadu_ps(x + i + 16), s->a2);
    s->a3 = _mm256_fmadd_ps(widen8(r + i + 24), _mm256_loadu_ps(x + i + 24), s->a3);
}

/// Row `row`'s tail columns from `i` on, then its lanes summed in order, as Swift's `SIMD8.sum()`
/// does (no reassociation in C), stored with the bias.
DECODE_TARGET static inline void finish(
    Sums s, const uint16_t *r, const float *x, ptrdiff_t i, ptrdiff_t columns, ptrdiff_t row,
    float *y, const float *bias, int accumulate)
{
    for (; i < columns; i += 8) s.a0 = _mm256_fmadd_ps(widen8(r + i), _mm256_loadu_ps(x + i), s.a0);
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s.a0, s.a1), _mm256_add_ps(s.a2, s.a3)));
    float sum = -0.0f;
    for (int lane = 0; lane < 8; lane++) sum += lanes[lane];
    float value = sum + (bias ? bias[row] : 0.0f);
    if (accumulate) y[row] += value; else y[row] = value;
}

DECODE_TARGET void engine_bf16_matvec(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const float *x, float *y, const float *bias, int accumulate)
{
    // Rows are consecutive, so each stream's prefetch runs on past its row into its next one.
    const ptrdiff_t ahead = PREFETCH_AHEAD / sizeof(uint16_t);
    // The rows in STREAMS equal parts, one row of each at a time; the rows left over one by one.
    const ptrdiff_t part = (row_end - row_start) / STREAMS;
    for (ptrdiff_t row = row_start; row < row_start + part; row++) {
        const uint16_t *r[STREAMS];
        Sums s[STREAMS];
        for (int k = 0; k < STREAMS; k++) {
            r[k] = w + (row + k * part) * columns;
            s[k] = (Sums){_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        }
        ptrdiff_t i = 0;
        for (; i + 32 <= columns; i += 32) {
            for (int k = 0; k < STREAMS; k++) _mm_prefetch((const char *)(r[k] + i + ahead), _MM_HINT_T0);
            for (int k = 0; k < STREAMS; k++) add32(&s[k], r[k], x, i);
        }
        for (int k = 0; k < STREAMS; k++) finish(s[k], r[k], x, i, columns, row + k * part, y, bias, accumulate);
    }
    for (ptrdiff_t row = row_start + STREAMS * part; row < row_end; row++) {
        const uint16_t *r = w + row * columns;
        Sums s = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        ptrdiff_t i = 0;
        for (; i + 32 <= columns; i += 32) {
            _mm_prefetch((const char *)(r + i + ahead), _MM_HINT_T0);
            add32(&s, r, x, i);
        }
        finish(s, r, x, i, columns, row, y, bias, accumulate);
    }
}

// --- Batched decode: a few tokens (one per stream) against bf16 weights ---------------------------------------

#define FEW_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
/// Tokens per pass over a group of rows: 4 rows x 4 tokens of accumulators, 4 activation registers.
#define FEW_TOKENS 4

/// Sixteen bf16 to f32 (exact).
FEW_TARGET static inline __m512 widen16(const uint16_t *w) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)w)), 16));
}

/// Eight bf16 to f32 in the low half, zeros above.
FEW_TARGET static inline __m512 widen8_low(const uint16_t *w) {
    const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16);
    return _mm512_castsi512_ps(_mm512_zextsi256_si512(wide));
}

/// Rows `row[0..R)` against tokens `token..token+T` (R, T constants after inlining), every column: each widened
/// weight vector feeds T FMAs, each activation vector R.
FEW_TARGET static inline __attribute__((always_inline)) void few_tile(
    const uint16_t *w, ptrdiff_t columns, const ptrdiff_t *row, int R, const float *x, ptrdiff_t x_stride,
    ptrdiff_t token, int T, int prefetch, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    const ptrdiff_t ahead = PREFETCH_AHEAD / sizeof(uint16_t);
    __m512 acc[4][FEW_TOKENS];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= columns; i += 16) {
        __m512 a[FEW_TOKENS];
        for (int t = 0; t < T; t++) a[t] = _mm512_loadu_ps(x + (token + t) * x_stride + i);
        for (int r = 0; r < R; r++) {
            const uint16_t *p = w + row[r] * columns + i;
            if (prefetch && (i & 31) == 0) _mm_prefetch((const char *)(p + ahead), _MM_HINT_T0);
            const __m512 u = widen16(p);
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(u, a[t], acc[r][t]);
        }
    }
    if (i < columns) {  // columns are a multiple of 8
        __m512 a[FEW_TOKENS];
        for (int t = 0; t < T; t++)
            a[t] = _mm512_castsi512_ps(_mm512_zextsi256_si512(_mm256_castps_si256(_mm256_loadu_ps(x + (token + t) * x_stride + i))));
        for (int r = 0; r < R; r++) {
            const __m512 u = widen8_low(w + row[r] * columns + i);
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(u, a[t], acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < T; t++) {
            float value = _mm512_reduce_add_ps(acc[r][t]) + (bias ? bias[row[r]] : 0.0f);
            float *target = y + (token + t) * y_stride + row[r];
            if (accumulate) *target += value; else *target = value;
        }
    }
}

/// Every token against rows `row[0..R)`: the first group of tokens reads the rows from memory (prefetching, as
/// the single-token kernel does), later groups from cache.
FEW_TARGET static inline __attribute__((always_inline)) void few_rows(
    const uint16_t *w, ptrdiff_t columns, const ptrdiff_t *row, int R, const float *x, ptrdiff_t x_stride,
    ptrdiff_t tokens, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    ptrdiff_t t = 0;
    for (; t + FEW_TOKENS <= tokens; t += FEW_TOKENS)
        few_tile(w, columns, row, R, x, x_stride, t, FEW_TOKENS, t == 0, y, y_stride, bias, accumulate);
    switch (tokens - t) {
    case 3: few_tile(w, columns, row, R, x, x_stride, t, 3, t == 0, y, y_stride, bias, accumulate); break;
    case 2: few_tile(w, columns, row, R, x, x_stride, t, 2, t == 0, y, y_stride, bias, accumulate); break;
    case 1: few_tile(w, columns, row, R, x, x_stride, t, 1, t == 0, y, y_stride, bias, accumulate); break;
    default: break;
    }
}

FEW_TARGET void engine_bf16_matmul_few(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const float *x, ptrdiff_t x_stride, ptrdiff_t tokens, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    // As in engine_bf16_matvec: four streams of rows, one row from each of four equal parts at a time.
    const ptrdiff_t part = (row_end - row_start) / STREAMS;
    for (ptrdiff_t row = row_start; row < row_start + part; row++) {
        const ptrdiff_t rows[STREAMS] = {row, row + part, row + 2 * part, row + 3 * part};
        few_rows(w, columns, rows, STREAMS, x, x_stride, tokens, y, y_stride, bias, accumulate);
    }
    for (ptrdiff_t row = row_start + STREAMS * part; row < row_end; row++)
        few_rows(w, columns, &row, 1, x, x_stride, tokens, y, y_stride, bias, accumulate);
}

#endif
