// The built-in engine's products of GGUF block-quantized weights (Q8_0, Q4_K, Q6_K) with activations quantized
// to int8 per block of 32, on AVX-512 VNNI: `vpdpbusd` multiplies 64 unsigned weight bytes by 64 signed
// activation bytes and sums each four into an int32 lane, so one instruction covers two 32-element blocks.
// Each lane group is then converted to f32 and scaled by its weight and activation block scales.
//
// Each weight row is read once for a group of up to four tokens (decode of one stream reads it for one token,
// batched decode for several), with software prefetch ahead of the loads: single-token decode is bound by reading
// the weights from memory (see DecodeMatVec.c for why prefetching helps on 4 KB pages). Prefill (many tokens)
// goes to the register-blocked kernel of QuantizedPrefill.c instead.

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include "BlockFormats.h"

/// Tokens multiplied per pass over a weight row: four accumulators per token kind stay in registers.
#define GROUP 4
/// How far ahead of the loads the kernels prefetch, in bytes of weights.
#define PREFETCH_AHEAD 4096

/// Lanes 0-7 take `pair[0]`, lanes 8-15 `pair[1]`.
VNNI_TARGET INLINE __m512 spread_pair(__m128 pair) {
    const __m512i index = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(index, _mm512_castps128_ps512(pair));
}

VNNI_TARGET INLINE __m128 load_pair(const float *p) {
    return _mm_castpd_ps(_mm_load_sd((const double *)p));
}

VNNI_TARGET INLINE void store(float value, ptrdiff_t row, float *y, const float *bias, int accumulate) {
    value += bias ? bias[row] : 0.0f;
    if (accumulate) *y += value; else *y = value;
}

// --- Q8_0: 34-byte blocks of an f16 scale and 32 int8 weights ------------------------------------------------

/// Weights are signed, so their sign moves to the activations and their magnitudes are the unsigned operand.
/// `count` tokens (1-4, a constant after inlining) against row `w`; blocks `nb`, an even number of them
/// through the 512-bit loop and a last odd one with the upper half zero.
VNNI_TARGET INLINE void q8_0_row(
    const uint8_t *w, ptrdiff_t nb, const int8_t *q, const float *d, ptrdiff_t columns, int count, float *out)
{
    __m512 acc[GROUP];
    for (int t = 0; t < count; t++) acc[t] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (ptrdiff_t b = 0; b < nb; b += 2) {
        const uint8_t *p = w + b * 34;
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD), _MM_HINT_T0);
        const int whole = b + 2 <= nb;
        __m512i weights = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
        weights = whole ? _mm512_inserti64x4(weights, _mm256_loadu_si256((const __m256i *)(p + 36)), 1)
                        : _mm512_zextsi256_si512(_mm512_castsi512_si256(weights));
        const __m512i magnitudes = _mm512_abs_epi8(weights);
        const __mmask64 negative = _mm512_movepi8_mask(weights);
        const __m128 scales = _mm_set_ps(0, 0, whole ? half_at(p + 34) : 0, half_at(p));
        for (int t = 0; t < count; t++) {
            const int8_t *a = q + t * columns + b * 32;
            __m512i values = whole ? _mm512_loadu_si512(a) : _mm512_maskz_loadu_epi8(0xFFFFFFFFull, a);
            values = _mm512_mask_sub_epi8(values, negative, zero, values);
            const __m512i dot = _mm512_dpbusd_epi32(zero, magnitudes, values);
            const __m128 ad = whole ? load_pair(d + t * nb + b) : _mm_set_ss(d[t * nb + b]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), spread_pair(_mm_mul_ps(scales, ad)), acc[t]);
        }
    }
    for (int t = 0; t < count; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// --- Q4_K: 144-byte blocks of 256 elements (f16 d and dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles) --

/// Per 32 bytes of nibbles, sub-blocks 2p (low nibbles) and 2p+1 (high) against 64 activation bytes; the mins
/// are taken off with the activation blocks' sums.
VNNI_TARGET INLINE void q4_K_row(
    const uint8_t *w, ptrdiff_t nb, const int8_t *q, const float *d, const float *s, ptrdiff_t columns, int count,
    float *out)
{
    __m512 acc[GROUP];
    __m256 mins[GROUP];
    for (int t = 0; t < count; t++) {
        acc[t] = _mm512_setzero_ps();
        mins[t] = _mm256_setzero_ps();
    }
    const __m512i zero = _mm512_setzero_si512();
    const __m256i mask = _mm256_set1_epi8(0x0F);
    for (ptrdiff_t i = 0; i < nb / 8; i++) {
        const uint8_t *p = w + i * 144;
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD + 128), _MM_HINT_T0);
        const float dw = half_at(p), dmin = half_at(p + 2);
        float sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            uint8_t scale, min;
            q4_K_scale_min(p + 4, j, &scale, &min);
            sc[j] = dw * (float)scale;
            mn[j] = dmin * (float)min;
        }
        const __m256 scales = _mm256_loadu_ps(sc), minimums = _mm256_loadu_ps(mn);
        __m256 token_scales[GROUP];
        for (int t = 0; t < count; t++) {
            token_scales[t] = _mm256_mul_ps(scales, _mm256_loadu_ps(d + t * nb + i * 8));
            mins[t] = _mm256_fmadd_ps(minimums, _mm256_loadu_ps(s + t * nb + i * 8), mins[t]);
        }
        for (int pair = 0; pair < 4; pair++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(p + 16 + pair * 32));
            const __m512i weights = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_and_si256(raw, mask)), _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask), 1);
            const __m512i index = _mm512_set_epi32(
                2 * pair + 1, 2 * pair + 1, 2 * pair + 1, 2 * pair + 1, 2 * pair + 1, 2 * pair + 1, 2 * pair + 1,
                2 * pair + 1, 2 * pair, 2 * pair, 2 * pair, 2 * pair, 2 * pair, 2 * pair, 2 * pair, 2 * pair);
            for (int t = 0; t < count; t++) {
                const __m512i values = _mm512_loadu_si512(q + t * columns + i * 256 + pair * 64);
                const __m512i dot = _mm512_dpbusd_epi32(zero, weights, values);
                const __m512 lane_scales = _mm512_permutexvar_ps(index, _mm512_castps256_ps512(token_scales[t]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), lane_scales, acc[t]);
            }
        }
    }
    for (int t = 0; t < count; t++) {
        const __m128 m = _mm_add_ps(_mm256_castps256_ps128(mins[t]), _mm256_extractf128_ps(mins[t], 1));
        float m4[4];
        _mm_storeu_ps(m4, m);
        out[t] = _mm512_reduce_add_ps(acc[t]) - ((m4[0] + m4[1]) + (m4[2] + m4[3]));
    }
}

// --- Q6_K: 210-byte blocks of 256 elements (128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales,
// f16 d), values 0-63 with an offset of 32 -------------------------------------------------------------------

/// Per half of 128 elements, chunks (t, t+1) of 32 as one 512-bit product: chunks 0 and 1 take the low nibbles
/// of the half's 64 bytes, chunks 2 and 3 the high ones, and chunk t bits 2t-2t+1 of the 32 high bytes. The
/// offset is taken off with a second product of the activations with 32. Each chunk has two scales, for lanes
/// 0-3 and 4-7 of its eight.
VNNI_TARGET INLINE void q6_K_row(
    const uint8_t *w, ptrdiff_t nb, const int8_t *q, const float *d, ptrdiff_t columns, int count, float *out)
{
    __m512 acc[GROUP];
    for (int t = 0; t < count; t++) acc[t] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512i low_mask = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3), offset = _mm512_set1_epi8(32);
    const __m512i quarters = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (ptrdiff_t i = 0; i < nb / 8; i++) {
        const uint8_t *p = w + i * 210;
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PREFETCH_AHEAD + 192), _MM_HINT_T0);
        const float dw = half_at(p + 208);
        for (int h = 0; h < 2; h++) {
            const __m512i low_bytes = _mm512_loadu_si512(p + h * 64);
            const __m256i high_raw = _mm256_loadu_si256((const __m256i *)(p + 128 + h * 32));
            for (int c = 0; c < 2; c++) {
                // Chunks 2c and 2c+1 of this half.
                const __m512i low = c == 0 ? _mm512_and_si512(low_bytes, low_mask)
                                           : _mm512_and_si512(_mm512_srli_epi16(low_bytes, 4), low_mask);
                const __m512i high_pair = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_srli_epi16(high_raw, 4 * c)), _mm256_srli_epi16(high_raw, 4 * c + 2), 1);
                const __m512i weights = _mm512_or_si512(low, _mm512_slli_epi16(_mm512_and_si512(high_pair, three), 4));
                // The four int8 scales of chunks 2c and 2c+1, times d, each over four lanes.
                int32_t packed;
                __builtin_memcpy(&packed, p + 192 + h * 8 + c * 4, 4);
                const __m128 scales = _mm_mul_ps(_mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(packed))), _mm_set1_ps(dw));
                const __m512 lane_scales = _mm512_permutexvar_ps(quarters, _mm512_castps128_ps512(scales));
                const ptrdiff_t x = i * 8 + h * 4 + c * 2;
                for (int t = 0; t < count; t++) {
                    const __m512i values = _mm512_loadu_si512(q + t * columns + x * 32);
                    const __m512i dot = _mm512_sub_epi32(
                        _mm512_dpbusd_epi32(zero, weights, values), _mm512_dpbusd_epi32(zero, offset, values));
                    const __m512 ad = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(load_pair(d + t * nb + x)));
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(lane_scales, ad), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < count; t++) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// --- The row and token loops ---------------------------------------------------------------------------------

/// One kernel call: `count` tokens from `first` against weight row `row`, written to `y`.
VNNI_TARGET INLINE void row_group(
    int type, const uint8_t *w, ptrdiff_t columns, ptrdiff_t row, const int8_t *q, const float *d, const float *s,
    ptrdiff_t first, int count, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    const ptrdiff_t nb = columns / 32;
    float out[GROUP];
    const int8_t *qt = q + first * columns;
    const float *dt = d + first * nb, *st = s + first * nb;
    switch (type) {
    case ENGINE_QUANT_Q8_0: q8_0_row(w + row * nb * 34, nb, qt, dt, columns, count, out); break;
    case ENGINE_QUANT_Q4_K: q4_K_row(w + row * (nb / 8) * 144, nb, qt, dt, st, columns, count, out); break;
    default: q6_K_row(w + row * (nb / 8) * 210, nb, qt, dt, columns, count, out); break;
    }
    for (int t = 0; t < count; t++) store(out[t], row, y + (first + t) * y_stride + row, bias, accumulate);
}

/// Every token group against one row, with the group size a constant in each call so the loops over tokens
/// unroll.
VNNI_TARGET static void row_all_tokens(
    int type, const uint8_t *w, ptrdiff_t columns, ptrdiff_t row, const int8_t *q, const float *d, const float *s,
    ptrdiff_t tokens, float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    ptrdiff_t t = 0;
    for (; t + GROUP <= tokens; t += GROUP) row_group(type, w, columns, row, q, d, s, t, GROUP, y, y_stride, bias, accumulate);
    switch (tokens - t) {
    case 3: row_group(type, w, columns, row, q, d, s, t, 3, y, y_stride, bias, accumulate); break;
    case 2: row_group(type, w, columns, row, q, d, s, t, 2, y, y_stride, bias, accumulate); break;
    case 1: row_group(type, w, columns, row, q, d, s, t, 1, y, y_stride, bias, accumulate); break;
    default: break;
    }
}

VNNI_TARGET void engine_quantized_matmul_vnni(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const int8_t *q, const float *d, const float *s, ptrdiff_t tokens,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    for (ptrdiff_t row = row_start; row < row_end; row++)
        row_all_tokens(type, (const uint8_t *)w, columns, row, q, d, s, tokens, y, y_stride, bias, accumulate);
}

#endif
