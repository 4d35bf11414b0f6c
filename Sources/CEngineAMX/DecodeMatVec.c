// The built-in engine's single-token (decode) product with bf16 weights: one token's activations
// against a range of weight rows, summed in f32 in exactly the order of the engine's Swift AVX2
// kernel for f16 and f32 weights, with software prefetch ahead of the loads.
//
// Decode reads every weight once per token, so its speed is the memory read bandwidth each core
// gets. The weights are mapped from the checkpoint in 4 KB pages, and the hardware prefetchers
// stop at every page boundary: prefetching 8 KB ahead keeps requests in flight across them.
// (Measured on the Qwen2.5-0.5B bench model: 1-2 KB ahead 17-19.5 tok/s, 4-8 KB 18-20.5, 16 KB no
// better; backing the weights with 2 MB pages instead gained nothing.) The Swift kernel this
// replaces had its widening compiled to an out-of-line call, which made decode compute-bound.

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define DECODE_TARGET __attribute__((target("avx2,fma")))

/// How far ahead of the loads the kernel prefetches, in bytes of weights.
#define PREFETCH_AHEAD 8192

/// Eight bf16 to f32 (exact): zero-extend and shift into the top half.
DECODE_TARGET static inline __m256 widen8(const uint16_t *w) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16));
}

DECODE_TARGET void engine_bf16_matvec(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const float *x, float *y, const float *bias, int accumulate)
{
    // Rows are consecutive, so the prefetch runs on past each row into the next.
    const ptrdiff_t ahead = PREFETCH_AHEAD / sizeof(uint16_t);
    for (ptrdiff_t row = row_start; row < row_end; row++) {
        const uint16_t *r = w + row * columns;
        // Four accumulators, each over every fourth group of 8 columns.
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        ptrdiff_t i = 0;
        for (; i + 32 <= columns; i += 32) {
            _mm_prefetch((const char *)(r + i + ahead), _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(widen8(r + i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(widen8(r + i + 8), _mm256_loadu_ps(x + i + 8), a1);
            a2 = _mm256_fmadd_ps(widen8(r + i + 16), _mm256_loadu_ps(x + i + 16), a2);
            a3 = _mm256_fmadd_ps(widen8(r + i + 24), _mm256_loadu_ps(x + i + 24), a3);
        }
        for (; i < columns; i += 8) a0 = _mm256_fmadd_ps(widen8(r + i), _mm256_loadu_ps(x + i), a0);
        // The lanes summed in order, as Swift's `SIMD8.sum()` does (no reassociation in C).
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        float sum = -0.0f;
        for (int lane = 0; lane < 8; lane++) sum += lanes[lane];
        float value = sum + (bias ? bias[row] : 0.0f);
        if (accumulate) y[row] += value; else y[row] = value;
    }
}

#endif
