// The built-in engine's single-token (decode) products of Q4_K and Q6_K weights, on AVX-512 VNNI.
//
// The token's activations are quantized per block of 256, one f32 scale each, with the sum of every 16 int8
// values (as llama.cpp's Q8_K does), so that inside a weight block every sub-block scale applies in integer:
// `vpmaddubsw` multiplies 64 unsigned weight bytes by 64 signed activation bytes into 16-bit pair sums, and
// `vpdpwssd` multiplies those by the sub-block scales and adds them into int32 lanes. A 256-element block then
// costs one int32 to f32 conversion and one FMA; Q4_K's mins and Q6_K's offset of 32 come off with the
// activation sums, also in integer. The kernels with one f32 product per 32 or 64 elements were bound by their
// instructions, not by reading the weights.
//
// Four rows are read at once, each from its own quarter of the range, with software prefetch ahead of the loads:
// four independent accumulator chains, and four streams of memory requests in flight (see DecodeMatVec.c).

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include "BlockFormats.h"

/// Rows read at once, each from its own part of the range.
#define STREAMS 4
/// How far ahead of the loads the kernels prefetch, in bytes of weights.
#define PREFETCH_AHEAD 4096
/// Elements per weight block and per activation scale.
#define SUPER_BLOCK 256

VNNI_TARGET INLINE void prefetch_block(const uint8_t *p, int bytes) {
    for (int offset = 0; offset < bytes; offset += 64) _mm_prefetch((const char *)(p + PREFETCH_AHEAD + offset), _MM_HINT_T0);
}

VNNI_TARGET INLINE void store(float value, ptrdiff_t row, float *y, const float *bias, int accumulate) {
    value += bias ? bias[row] : 0.0f;
    if (accumulate) y[row] += value; else y[row] = value;
}

VNNI_TARGET void engine_quantize_super_blocks(const float *x, ptrdiff_t columns, int8_t *q, float *d, int16_t *sums) {
    for (ptrdiff_t b = 0; b < columns / SUPER_BLOCK; b++) {
        const float *xb = x + b * SUPER_BLOCK;
        __m512 maximum = _mm512_setzero_ps();
        for (int i = 0; i < SUPER_BLOCK; i += 16) maximum = _mm512_max_ps(maximum, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
        const float largest = _mm512_reduce_max_ps(maximum);
        const float scale = largest / 127.0f;
        const __m512 inverse = _mm512_set1_ps(largest == 0.0f ? 0.0f : 127.0f / largest);
        d[b] = scale;
        for (int i = 0; i < SUPER_BLOCK; i += 16) {
            const __m512i values = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + i), inverse));
            _mm_storeu_si128((__m128i *)(q + b * SUPER_BLOCK + i), _mm512_cvtsepi32_epi8(values));
            sums[b * 16 + i / 16] = (int16_t)_mm512_reduce_add_epi32(values);
        }
    }
}

/// The activations of one super-block, shared by the rows of a pass, in the order its weight format reads them.
typedef struct {
    /// Q6_K: the 256 values in order, 64 to a register. Q4_K: values 0-31 and 64-95, 32-63 and 96-127, 128-159 and
    /// 192-223, 160-191 and 224-255 (the sub-blocks that one 64-byte load of nibbles holds, low and high).
    __m512i values[4];
    /// Q6_K: the sums of every 16 values.
    __m256i sums;
    /// Q4_K: the sums of every 32 values (one per sub-block), as 16-bit words.
    __m128i pairs;
    float scale;
} Activations;

VNNI_TARGET INLINE Activations load_activations(int type, const int8_t *q, const float *d, const int16_t *sums, ptrdiff_t b) {
    Activations a;
    for (int g = 0; g < 4; g++) a.values[g] = _mm512_loadu_si512(q + b * SUPER_BLOCK + g * 64);
    a.sums = _mm256_loadu_si256((const __m256i *)(sums + b * 16));
    a.scale = d[b];
    if (type == ENGINE_QUANT_Q4_K) {
        const __m512i first = a.values[0], second = a.values[1], third = a.values[2], fourth = a.values[3];
        a.values[0] = _mm512_shuffle_i64x2(first, second, 0x44);
        a.values[1] = _mm512_shuffle_i64x2(first, second, 0xEE);
        a.values[2] = _mm512_shuffle_i64x2(third, fourth, 0x44);
        a.values[3] = _mm512_shuffle_i64x2(third, fourth, 0xEE);
        a.pairs = _mm256_cvtepi32_epi16(_mm256_madd_epi16(a.sums, _mm256_set1_epi16(1)));
    }
    return a;
}

// --- Q4_K: 144-byte blocks of 256 elements (f16 d and dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles) --

/// A `vpshufb` index that spreads scale byte `low` (as a 16-bit word) over the lower half of a register and
/// byte `high` over the upper half.
VNNI_TARGET INLINE __m512i spread_index(int low, int high) {
    return _mm512_inserti64x4(
        _mm512_set1_epi16((short)(0x8000 | low)), _mm256_set1_epi16((short)(0x8000 | high)), 1);
}

/// One Q4_K block `p` of one row against the activations: the scaled integer sum into `acc`, the mins' part
/// into `mins`. Each 64 bytes of nibbles hold four sub-blocks: the low nibbles of the first 32 bytes sub-block
/// 4h, the high ones 4h+1, those of the next 32 bytes 4h+2 and 4h+3. The low nibbles of a 64-byte load then go
/// against sub-blocks 4h and 4h+2 of the activations, the high ones against 4h+1 and 4h+3, each 16-bit pair sum
/// multiplied by its sub-block's scale (spread by `vpshufb` from the eight scale bytes) as it is added.
VNNI_TARGET INLINE void q4_K_block(const uint8_t *p, const Activations *a, __m512 *acc, __m128 *mins) {
    const __m512i low_mask = _mm512_set1_epi8(0x0F);
    // The eight 6-bit scales and mins (the layout of Dequantize.scaleMin), four to a 32-bit word.
    uint32_t packed[3];
    __builtin_memcpy(packed, p + 4, 12);
    const uint32_t scales_low = packed[0] & 0x3F3F3F3Fu;
    const uint32_t scales_high = (packed[2] & 0x0F0F0F0Fu) | (((packed[0] >> 6) & 0x03030303u) << 4);
    const uint32_t mins_low = packed[1] & 0x3F3F3F3Fu;
    const uint32_t mins_high = ((packed[2] >> 4) & 0x0F0F0F0Fu) | (((packed[1] >> 6) & 0x03030303u) << 4);
    const __m512i scales = _mm512_set1_epi64((long long)((uint64_t)scales_high << 32 | scales_low));
    const __m512i first = _mm512_loadu_si512(p + 16), second = _mm512_loadu_si512(p + 80);
    const __m512i weights[4] = {
        _mm512_and_si512(first, low_mask), _mm512_and_si512(_mm512_srli_epi16(first, 4), low_mask),
        _mm512_and_si512(second, low_mask), _mm512_and_si512(_mm512_srli_epi16(second, 4), low_mask),
    };
    __m512i sum = _mm512_madd_epi16(
        _mm512_maddubs_epi16(weights[0], a->values[0]), _mm512_shuffle_epi8(scales, spread_index(0, 2)));
    sum = _mm512_dpwssd_epi32(
        sum, _mm512_maddubs_epi16(weights[1], a->values[1]), _mm512_shuffle_epi8(scales, spread_index(1, 3)));
    sum = _mm512_dpwssd_epi32(
        sum, _mm512_maddubs_epi16(weights[2], a->values[2]), _mm512_shuffle_epi8(scales, spread_index(4, 6)));
    sum = _mm512_dpwssd_epi32(
        sum, _mm512_maddubs_epi16(weights[3], a->values[3]), _mm512_shuffle_epi8(scales, spread_index(5, 7)));
    // d and dmin, each times the activations' scale.
    uint32_t halves;
    __builtin_memcpy(&halves, p, 4);
    const __m128 factors = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)halves)), _mm_set1_ps(a->scale));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(factors), *acc);
    const __m128i minimums = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)((uint64_t)mins_high << 32 | mins_low)));
    *mins = _mm_fmadd_ps(
        _mm_cvtepi32_ps(_mm_madd_epi16(minimums, a->pairs)), _mm_permute_ps(factors, 0x55), *mins);
}

// --- Q6_K: 210-byte blocks of 256 elements (128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales,
// f16 d), values 0-63 with an offset of 32 -------------------------------------------------------------------

/// One Q6_K block `p` of one row against the activations, into `acc`. Per half of 128 elements, elements 0-63
/// take the low nibbles of the half's 64 bytes, 64-127 the high ones, and elements 32c..32c+31 bits 2c-2c+1 of
/// the half's 32 high bytes (loaded into both halves of a register and shifted into bits 4-5 per half). Each
/// 16 elements have a scale, which the offset of 32 times the activations' sums also takes.
VNNI_TARGET INLINE void q6_K_block(const uint8_t *p, const Activations *a, __m512 *acc) {
    const __m512i low_mask = _mm512_set1_epi8(0x0F), high_mask = _mm512_set1_epi8(0x30);
    const __m512i left = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i right = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m256i scales = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p + 192)));
    const __m512i wide = _mm512_castsi256_si512(scales);
    __m512i sum = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        const __m512i low = _mm512_loadu_si512(p + h * 64);
        const __m512i high = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + 128 + h * 32)));
        // (A & B) | C: 0xEA.
        const __m512i first = _mm512_ternarylogic_epi32(
            low, low_mask, _mm512_and_si512(_mm512_sllv_epi16(high, left), high_mask), 0xEA);
        const __m512i second = _mm512_ternarylogic_epi32(
            _mm512_srli_epi16(low, 4), low_mask, _mm512_and_si512(_mm512_srlv_epi16(high, right), high_mask), 0xEA);
        for (int c = 0; c < 2; c++) {
            // Scales 8h+4c .. 8h+4c+3, one per 128-bit lane.
            const int k = 8 * h + 4 * c;
            const __m512i index = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_set1_epi16((short)k)), _mm_set1_epi16((short)(k + 1)), 1)),
                _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)(k + 2))), _mm_set1_epi16((short)(k + 3)), 1),
                1);
            const __m512i pairs = _mm512_maddubs_epi16(c == 0 ? first : second, a->values[2 * h + c]);
            sum = _mm512_dpwssd_epi32(sum, pairs, _mm512_permutexvar_epi16(index, wide));
        }
    }
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(scales, a->sums), 5);
    sum = _mm512_sub_epi32(sum, _mm512_zextsi256_si512(offset));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(half_at(p + 208) * a->scale), *acc);
}

// --- The rows ------------------------------------------------------------------------------------------------

/// `count` rows (1 to STREAMS, a constant after inlining), row `k` at `rows[k]`, against every super-block.
VNNI_TARGET INLINE void rows_pass(
    int type, const uint8_t *const *rows, int count, ptrdiff_t blocks, const int8_t *q, const float *d,
    const int16_t *sums, float *out)
{
    const int bytes = type == ENGINE_QUANT_Q4_K ? 144 : 210;
    __m512 acc[STREAMS];
    __m128 mins[STREAMS];
    for (int k = 0; k < count; k++) {
        acc[k] = _mm512_setzero_ps();
        mins[k] = _mm_setzero_ps();
    }
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const Activations a = load_activations(type, q, d, sums, b);
        // Unrolled, so that the accumulators stay in registers.
#pragma clang loop unroll(full)
        for (int k = 0; k < count; k++) {
            const uint8_t *p = rows[k] + b * bytes;
            prefetch_block(p, bytes);
            if (type == ENGINE_QUANT_Q4_K) q4_K_block(p, &a, &acc[k], &mins[k]);
            else q6_K_block(p, &a, &acc[k]);
        }
    }
    for (int k = 0; k < count; k++) {
        const __m128 m4 = mins[k];
        const __m128 m2 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
        out[k] = _mm512_reduce_add_ps(acc[k]) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
    }
}

VNNI_TARGET INLINE void decode_rows(
    int type, const uint8_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end, const int8_t *q,
    const float *d, const int16_t *sums, float *y, const float *bias, int accumulate)
{
    const ptrdiff_t blocks = columns / SUPER_BLOCK;
    const ptrdiff_t row_bytes = blocks * (type == ENGINE_QUANT_Q4_K ? 144 : 210);
    // The rows in STREAMS equal parts, one row of each at a time; the rows left over one by one.
    const ptrdiff_t part = (row_end - row_start) / STREAMS;
    float out[STREAMS];
    for (ptrdiff_t row = row_start; row < row_start + part; row++) {
        const uint8_t *rows[STREAMS];
        for (int k = 0; k < STREAMS; k++) rows[k] = w + (row + k * part) * row_bytes;
        rows_pass(type, rows, STREAMS, blocks, q, d, sums, out);
        for (int k = 0; k < STREAMS; k++) store(out[k], row + k * part, y, bias, accumulate);
    }
    for (ptrdiff_t row = row_start + STREAMS * part; row < row_end; row++) {
        const uint8_t *rows[1] = {w + row * row_bytes};
        rows_pass(type, rows, 1, blocks, q, d, sums, out);
        store(out[0], row, y, bias, accumulate);
    }
}

VNNI_TARGET void engine_decode_quantized(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end, const int8_t *q,
    const float *d, const int16_t *sums, float *y, const float *bias, int accumulate)
{
    // Each format its own copy of the loops.
    if (type == ENGINE_QUANT_Q4_K)
        decode_rows(ENGINE_QUANT_Q4_K, (const uint8_t *)w, columns, row_start, row_end, q, d, sums, y, bias, accumulate);
    else
        decode_rows(ENGINE_QUANT_Q6_K, (const uint8_t *)w, columns, row_start, row_end, q, d, sums, y, bias, accumulate);
}

#endif
