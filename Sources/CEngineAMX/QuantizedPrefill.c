// The built-in engine's products of GGUF block-quantized weights (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) with many tokens
// (prefill) as register-blocked matrix-matrix products on AVX-512 VNNI.
//
// Every format is first brought to one form: unsigned int8 weights `u` with an f32 scale per block of 32 (Q8_0,
// Q4_0, Q4_K, Q5_K) or unit of 16 elements (Q6_K), and an offset taken off at the end: `w = scale * u - offset`
// per element, with Σ offset * a computed from the activations' block or unit sums (Q8_0: 0x80 added to the
// signed weights, offset 128 * d; Q4_0: the nibbles, offset 8 * d; Q4_K, Q5_K: the 4- or 5-bit values, offset the
// sub-block's min; Q6_K: the 6-bit values, offset 32 * scale).
//
// Weights and activations are then laid out in chunks of 16 blocks (512 elements, eight 64-byte steps) or 16
// units (256 elements, four steps) so that int32 lane `l` of every step of a chunk holds four elements of the
// same block or unit: the chunk's `vpdpbusd` sum it per block in int32, and one conversion, one product of the
// two scale vectors and one FMA per chunk and (row, token) pair apply the scales, where the row-by-row kernel
// of QuantizedMatMul.c needs them and a sign fix-up per 64 elements. The layout is an in-lane 4x4 transpose of
// dwords (see `lay_out`).
//
// The weights of four rows are unpacked once into a per-thread scratch and stay in L1 while every group of three
// tokens passes over them; the activations are laid out once per call for all tokens. Per step, the four rows'
// weights and one token's activations are loaded once for four products. The integer products are exact; only
// the order of the f32 sums differs from the row-by-row kernel.

#include "CEngineAMX.h"

#if defined(__x86_64__)

#include <stdlib.h>

#include "BlockFormats.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

/// 64-byte steps per chunk: Q8_0 and Q4_K chunks are 512 elements (16 blocks of 32), Q6_K chunks 256 (16 units of
/// 16, as its scales are per 16 elements). A laid-out chunk (a record) is its steps, then 16 f32 scales in lane
/// order.
#define WIDE 8
#define NARROW 4
#define RECORD(steps) (64 * (steps) + 64)
/// Weight rows and tokens of one register tile: ROWS x TOKENS int32 and f32 accumulators, the step of each row
/// and one of a token fit in the 32 vector registers, and each loaded step serves three or four products.
#define ROWS 4
#define TOKENS 3
/// The most bytes of laid-out activations (all tokens) per column block.
#define COLUMN_BLOCK_BYTES (256 * 1024)

/// In each 128-bit lane, a 4x4 transpose of dwords across four registers: lane `4c + e` of result `j` is dword `j`
/// of lane `c` of register `e`.
VNNI_TARGET INLINE void transpose4(__m512i *r) {
    const __m512i t0 = _mm512_unpacklo_epi32(r[0], r[1]), t1 = _mm512_unpacklo_epi32(r[2], r[3]);
    const __m512i t2 = _mm512_unpackhi_epi32(r[0], r[1]), t3 = _mm512_unpackhi_epi32(r[2], r[3]);
    r[0] = _mm512_unpacklo_epi64(t0, t1);
    r[1] = _mm512_unpackhi_epi64(t0, t1);
    r[2] = _mm512_unpacklo_epi64(t2, t3);
    r[3] = _mm512_unpackhi_epi64(t2, t3);
}

/// Natural order (registers of 64 consecutive elements) to the chunk layout, in place. Narrow: lane `4c + e`
/// holds unit `4e + c` (16 elements). Wide: after the two transposes lane `4c + e` holds block `2e + c/2` of the
/// first half (dwords 0-3 for even `c`, 4-7 for odd) and block `8 + 2e + c/2` of the second; swapping the odd
/// lanes' halves and then the 128-bit lanes of the second four steps gives lane `4c + e` block `2e + c/2` for even
/// `c` and `8 + 2e + c/2` for odd in all eight steps.
VNNI_TARGET INLINE void lay_out(__m512i *r, int steps) {
    transpose4(r);
    if (steps == NARROW) return;
    transpose4(r + 4);
    for (int j = 0; j < 4; j++) {
        const __m512i first = _mm512_mask_blend_epi32(0xF0F0, r[j], r[4 + j]);
        const __m512i second = _mm512_mask_blend_epi32(0xF0F0, r[4 + j], r[j]);
        r[j] = first;
        r[4 + j] = _mm512_shuffle_i32x4(second, second, _MM_SHUFFLE(2, 3, 0, 1));
    }
}

/// The 16 blocks' scales of a wide chunk in lane order.
VNNI_TARGET INLINE __m512 wide_lanes(__m512 blocks) {
    const __m512i index = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_permutexvar_ps(index, blocks);
}

/// The 8 blocks' scales of a narrow chunk in lane order (unit `u` is half of block `u / 2`).
VNNI_TARGET INLINE __m512 narrow_block_lanes(__m256 blocks) {
    const __m512i index = _mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 6, 4, 2, 0, 6, 4, 2, 0);
    return _mm512_permutexvar_ps(index, _mm512_castps256_ps512(blocks));
}

/// The 16 units' scales of a narrow chunk in lane order.
VNNI_TARGET INLINE __m512 narrow_unit_lanes(__m512 units) {
    const __m512i index = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(index, units);
}

VNNI_TARGET INLINE void store_record(uint8_t *record, __m512i *r, int steps, __m512 scales) {
    lay_out(r, steps);
    for (int j = 0; j < steps; j++) _mm512_store_si512(record + 64 * j, r[j]);
    _mm512_store_ps((float *)(record + 64 * steps), scales);
}

// --- Activations ---------------------------------------------------------------------------------------------

/// One token's activations as records (the tail past `columns` zero), and for narrow chunks (Q6_K) the factors
/// `d * Σq` of the units' offsets in lane order.
VNNI_TARGET INLINE void lay_out_token(
    const int8_t *q, const float *d, ptrdiff_t columns, ptrdiff_t chunks, int steps, uint8_t *records, float *unit_sums)
{
    const ptrdiff_t nb = columns / 32, size = 64 * steps, blocks_per_chunk = 2 * steps;
    const __m512i ones = _mm512_set1_epi8(1);
    for (ptrdiff_t c = 0; c < chunks; c++) {
        const ptrdiff_t first = c * size;
        __m512i r[WIDE];
        for (int j = 0; j < steps; j++) {
            const ptrdiff_t n = columns - first - 64 * j;
            const __mmask64 mask = n >= 64 ? ~0ull : n <= 0 ? 0 : (1ull << n) - 1;
            r[j] = _mm512_maskz_loadu_epi8(mask, q + first + 64 * j);
        }
        const ptrdiff_t blocks = nb - c * blocks_per_chunk < blocks_per_chunk ? nb - c * blocks_per_chunk : blocks_per_chunk;
        const __mmask16 present = (__mmask16)((1u << blocks) - 1);
        const float *dc = d + c * blocks_per_chunk;
        const __m512 scales = steps == WIDE ? wide_lanes(_mm512_maskz_loadu_ps(present, dc))
                                            : narrow_block_lanes(_mm256_maskz_loadu_ps((__mmask8)present, dc));
        uint8_t *record = records + c * RECORD(steps);
        store_record(record, r, steps, scales);
        if (unit_sums) {
            __m512i sums = _mm512_setzero_si512();
            for (int j = 0; j < steps; j++) sums = _mm512_dpbusd_epi32(sums, ones, _mm512_load_si512(record + 64 * j));
            _mm512_store_ps(unit_sums + c * 16, _mm512_mul_ps(scales, _mm512_cvtepi32_ps(sums)));
        }
    }
}

/// `blocks` consecutive blocks of 32 floats quantized as ``engine_quantize_blocks_avx512`` describes.
AVX512_TARGET void engine_quantize_blocks_avx512(const float *x, ptrdiff_t blocks, int8_t *q, float *d, float *s) {
    const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        const float maximum = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(x0, magnitude), _mm512_and_ps(x1, magnitude)));
        const float scale = maximum / 127, inverse = scale == 0 ? 0 : 1 / scale;
        __m512i sum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            // Rounded half away from zero, exactly: the truncation plus the sign where the dropped part is >= 1/2.
            const __m512 v = _mm512_mul_ps(h == 0 ? x0 : x1, _mm512_set1_ps(inverse));
            const __m512 whole = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __mmask16 up = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_sub_ps(v, whole), magnitude), half, _CMP_GE_OQ);
            const __m512 sign = _mm512_or_ps(_mm512_andnot_ps(magnitude, v), one);
            const __m512i value = _mm512_cvttps_epi32(_mm512_mask_add_ps(whole, up, whole, sign));
            _mm_storeu_si128((__m128i *)(q + 32 * b + 16 * h), _mm512_cvtepi32_epi8(value));
            sum = _mm512_add_epi32(sum, value);
        }
        d[b] = scale;
        s[b] = scale * (float)_mm512_reduce_add_epi32(sum);
    }
}

// --- Weights -------------------------------------------------------------------------------------------------

/// One Q8_0 row: 0x80 added to every weight; the offsets' factors are 128 * d per block.
VNNI_TARGET static void unpack_q8_0(const uint8_t *w, ptrdiff_t nb, ptrdiff_t chunks, uint8_t *records, float *offsets) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (ptrdiff_t c = 0; c < chunks; c++) {
        float scale[16];
        __m256i half[16];
        for (int b = 0; b < 16; b++) {
            const ptrdiff_t block = c * 16 + b;
            if (block < nb) {
                const uint8_t *p = w + block * 34;
                scale[b] = half_at(p);
                half[b] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), flip);
                offsets[block] = 128 * scale[b];
            } else {
                scale[b] = 0;
                half[b] = _mm256_setzero_si256();
            }
        }
        __m512i r[WIDE];
        for (int j = 0; j < WIDE; j++) r[j] = _mm512_inserti64x4(_mm512_castsi256_si512(half[2 * j]), half[2 * j + 1], 1);
        store_record(records + c * RECORD(WIDE), r, WIDE, wide_lanes(_mm512_loadu_ps(scale)));
    }
}

/// One Q4_0 row: 18-byte blocks of an f16 scale and 16 bytes of nibbles (elements 0-15 low, 16-31 high); the
/// offsets' factors are 8 * d per block.
VNNI_TARGET static void unpack_q4_0(const uint8_t *w, ptrdiff_t nb, ptrdiff_t chunks, uint8_t *records, float *offsets) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    for (ptrdiff_t c = 0; c < chunks; c++) {
        float scale[16];
        __m256i half[16];
        for (int b = 0; b < 16; b++) {
            const ptrdiff_t block = c * 16 + b;
            if (block < nb) {
                const uint8_t *p = w + block * 18;
                const __m128i raw = _mm_loadu_si128((const __m128i *)(p + 2));
                scale[b] = half_at(p);
                half[b] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), _mm_and_si128(raw, mask));
                offsets[block] = 8 * scale[b];
            } else {
                scale[b] = 0;
                half[b] = _mm256_setzero_si256();
            }
        }
        __m512i r[WIDE];
        for (int j = 0; j < WIDE; j++) r[j] = _mm512_inserti64x4(_mm512_castsi256_si512(half[2 * j]), half[2 * j + 1], 1);
        store_record(records + c * RECORD(WIDE), r, WIDE, wide_lanes(_mm512_loadu_ps(scale)));
    }
}

/// One Q4_K row, or with `fifth` a Q5_K row, two 256-element blocks per chunk: per 32 bytes of nibbles (Q4_K's at
/// byte 16, Q5_K's at 48), the low nibbles are elements 0-31 of 64 and the high ones 32-63; Q5_K adds a fifth bit,
/// bit `j` of byte `i` of the 32 at byte 16 for element `32j + i`. The offsets' factors are the sub-blocks' mins.
VNNI_TARGET INLINE void unpack_k_nibbles(
    const uint8_t *w, ptrdiff_t nb, ptrdiff_t chunks, uint8_t *records, float *offsets, int fifth)
{
    const __m256i mask = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const ptrdiff_t block_bytes = fifth ? 176 : 144, nibbles = fifth ? 48 : 16;
    for (ptrdiff_t c = 0; c < chunks; c++) {
        float scale[16];
        __m512i r[WIDE];
        for (int half = 0; half < 2; half++) {
            const ptrdiff_t block = c * 2 + half;
            if (block * 8 >= nb) {
                for (int j = 0; j < 8; j++) scale[8 * half + j] = 0;
                for (int j = 0; j < 4; j++) r[4 * half + j] = _mm512_setzero_si512();
                continue;
            }
            const uint8_t *p = w + block * block_bytes;
            const float dw = half_at(p), dmin = half_at(p + 2);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, mn;
                q4_K_scale_min(p + 4, j, &sc, &mn);
                scale[8 * half + j] = dw * (float)sc;
                offsets[block * 8 + j] = dmin * (float)mn;
            }
            const __m256i high = fifth ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(p + nibbles + 32 * j));
                __m256i low = _mm256_and_si256(raw, mask), top = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                if (fifth) {
                    low = _mm256_or_si256(low, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * j), one), 4));
                    top = _mm256_or_si256(top, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high, 2 * j + 1), one), 4));
                }
                r[4 * half + j] = _mm512_inserti64x4(_mm512_castsi256_si512(low), top, 1);
            }
        }
        store_record(records + c * RECORD(WIDE), r, WIDE, wide_lanes(_mm512_loadu_ps(scale)));
    }
}

/// One Q6_K row, one 256-element block per chunk: per half of 128 elements, 64 bytes of low nibbles (elements
/// 0-63 low, 64-127 high) and 32 bytes of high bit pairs (bits 2k-2k+1 for elements 32k-32k+31); unit `u`'s scale
/// is int8 `u` times d, and the offsets' factors are 32 times the units' scales, in lane order.
VNNI_TARGET static void unpack_q6_K(const uint8_t *w, ptrdiff_t chunks, uint8_t *records, float *offsets) {
    const __m512i low_mask = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3);
    for (ptrdiff_t c = 0; c < chunks; c++) {
        const uint8_t *p = w + c * 210;
        __m512i r[WIDE];
        for (int h = 0; h < 2; h++) {
            const __m512i low_bytes = _mm512_loadu_si512(p + h * 64);
            const __m256i high_raw = _mm256_loadu_si256((const __m256i *)(p + 128 + h * 32));
            for (int k = 0; k < 2; k++) {
                const __m512i low = k == 0 ? _mm512_and_si512(low_bytes, low_mask)
                                           : _mm512_and_si512(_mm512_srli_epi16(low_bytes, 4), low_mask);
                const __m512i high = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_srli_epi16(high_raw, 4 * k)), _mm256_srli_epi16(high_raw, 4 * k + 2), 1);
                r[2 * h + k] = _mm512_or_si512(low, _mm512_slli_epi16(_mm512_and_si512(high, three), 4));
            }
        }
        const __m512 units = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 192)))), _mm512_set1_ps(half_at(p + 208)));
        const __m512 scales = narrow_unit_lanes(units);
        _mm512_storeu_ps(offsets + c * 16, _mm512_mul_ps(scales, _mm512_set1_ps(32)));
        store_record(records + c * RECORD(NARROW), r, NARROW, scales);
    }
}

// --- The register tile ---------------------------------------------------------------------------------------

/// The sums of four vectors' lanes.
VNNI_TARGET INLINE __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 abcd = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    const __m256 halves = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
    return _mm_add_ps(_mm256_castps256_ps128(halves), _mm256_extractf128_ps(halves, 1));
}

/// ROWS laid-out rows (`row_stride` bytes apart) against `count` laid-out tokens (`token_stride` apart), minus
/// the offsets Σ offsets[r][k] * sums[t][k] over `terms` (rows of offsets `offsets_stride` apart, tokens' sums
/// `sums_stride`): `out[t]` holds the four rows' results for token `t`. `count` and `steps` are constants after
/// inlining.
VNNI_TARGET INLINE void tile(
    const uint8_t *rows, ptrdiff_t row_stride, const uint8_t *tokens, ptrdiff_t token_stride, ptrdiff_t chunks, int steps,
    const float *offsets, ptrdiff_t offsets_stride, const float *sums, ptrdiff_t sums_stride, ptrdiff_t terms, int count,
    __m128 out[TOKENS])
{
    __m512 acc[ROWS][TOKENS];
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < count; t++) acc[r][t] = _mm512_setzero_ps();
    const ptrdiff_t record = RECORD(steps);
    for (ptrdiff_t c = 0; c < chunks; c++) {
        __m512i dot[ROWS][TOKENS];
        for (int r = 0; r < ROWS; r++)
            for (int t = 0; t < count; t++) dot[r][t] = _mm512_setzero_si512();
        for (int j = 0; j < steps; j++) {
            __m512i weights[ROWS];
            for (int r = 0; r < ROWS; r++) weights[r] = _mm512_load_si512(rows + r * row_stride + c * record + 64 * j);
            for (int t = 0; t < count; t++) {
                const __m512i values = _mm512_load_si512(tokens + t * token_stride + c * record + 64 * j);
                for (int r = 0; r < ROWS; r++) dot[r][t] = _mm512_dpbusd_epi32(dot[r][t], weights[r], values);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            const __m512 scales = _mm512_load_ps(rows + r * row_stride + c * record + 64 * steps);
            for (int t = 0; t < count; t++) {
                const __m512 token_scales = _mm512_load_ps(tokens + t * token_stride + c * record + 64 * steps);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][t]), _mm512_mul_ps(scales, token_scales), acc[r][t]);
            }
        }
    }
    for (ptrdiff_t k = 0; k < terms; k += 16) {
        const __mmask16 mask = terms - k >= 16 ? 0xFFFF : (__mmask16)((1u << (terms - k)) - 1);
        for (int r = 0; r < ROWS; r++) {
            const __m512 o = _mm512_maskz_loadu_ps(mask, offsets + r * offsets_stride + k);
            for (int t = 0; t < count; t++)
                acc[r][t] = _mm512_fnmadd_ps(o, _mm512_maskz_loadu_ps(mask, sums + t * sums_stride + k), acc[r][t]);
        }
    }
    for (int t = 0; t < count; t++) out[t] = sum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
}

// --- The call ------------------------------------------------------------------------------------------------

/// This thread's scratch, kept between calls (the pool's threads live as long as the engine).
static _Thread_local uint8_t *scratch;
static _Thread_local size_t scratch_bytes;

static uint8_t *scratch_of(size_t bytes) {
    if (bytes <= scratch_bytes) return scratch;
    free(scratch);
    bytes = (bytes + 4095) & ~(size_t)4095;
    scratch = aligned_alloc(64, bytes);
    scratch_bytes = scratch ? bytes : 0;
    return scratch;
}

VNNI_TARGET int engine_quantized_prefill_vnni(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const int8_t *q, const float *d, const float *s, ptrdiff_t tokens,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    const int narrow = type == ENGINE_QUANT_Q6_K, steps = narrow ? NARROW : WIDE;
    const ptrdiff_t nb = columns / 32, chunks = (columns + 64 * steps - 1) / (64 * steps);
    // Offsets per block (Q8_0, Q4_K: against the activations' sums `s`) or per unit in lane order (Q6_K: against
    // the token's own unit sums).
    const ptrdiff_t terms = narrow ? chunks * 16 : nb;
    const ptrdiff_t stride = chunks * RECORD(steps);
    const size_t token_bytes = (size_t)(tokens * stride), row_bytes = (size_t)(ROWS * stride);
    const size_t sums_bytes = narrow ? (size_t)(tokens * terms) * 4 : 0, offsets_bytes = (size_t)(ROWS * terms) * 4;
    uint8_t *memory = scratch_of(token_bytes + row_bytes + sums_bytes + offsets_bytes);
    if (!memory) return 0;
    uint8_t *laid_tokens = memory, *laid_rows = memory + token_bytes;
    float *unit_sums = narrow ? (float *)(laid_rows + row_bytes) : NULL;
    float *offsets = (float *)(laid_rows + row_bytes + sums_bytes);

    for (ptrdiff_t t = 0; t < tokens; t++) {
        float *sums = narrow ? unit_sums + t * terms : NULL;
        if (narrow) lay_out_token(q + t * columns, d + t * nb, columns, chunks, NARROW, laid_tokens + t * stride, sums);
        else lay_out_token(q + t * columns, d + t * nb, columns, chunks, WIDE, laid_tokens + t * stride, NULL);
    }
    const float *sums = narrow ? unit_sums : s;
    const ptrdiff_t sums_stride = narrow ? terms : nb;

    // Bytes per block of 32 (Q8_0, Q4_0) or 256 (the k-quants), and per chunk.
    const ptrdiff_t block_bytes = type == ENGINE_QUANT_Q8_0 ? 34 : type == ENGINE_QUANT_Q4_0 ? 18
                                : type == ENGINE_QUANT_Q4_K ? 144 : type == ENGINE_QUANT_Q5_K ? 176 : 210;
    const int per_32 = type == ENGINE_QUANT_Q8_0 || type == ENGINE_QUANT_Q4_0;
    const size_t row_size = (size_t)(per_32 ? nb : nb / 8) * (size_t)block_bytes;
    const ptrdiff_t chunk_bytes = per_32 ? 16 * block_bytes : narrow ? block_bytes : 2 * block_bytes;
    // Column blocks small enough that every token's part of one stays in L2 while the row tiles pass.
    const ptrdiff_t column_blocks = (token_bytes + COLUMN_BLOCK_BYTES - 1) / COLUMN_BLOCK_BYTES;
    const ptrdiff_t blocks = column_blocks < chunks ? column_blocks : chunks;
    for (ptrdiff_t block = 0; block < blocks; block++) {
        const ptrdiff_t c0 = chunks * block / blocks, c1 = chunks * (block + 1) / blocks;
        const ptrdiff_t k0 = c0 * 16, k1 = !narrow && c1 * 16 > nb ? nb : c1 * 16;
        for (ptrdiff_t first = row_start; first < row_end; first += ROWS) {
            const int rows = row_end - first < ROWS ? (int)(row_end - first) : ROWS;
            for (int r = 0; r < ROWS; r++) {
                uint8_t *records = laid_rows + r * stride;
                float *row_offsets = offsets + r * terms;
                if (r >= rows) {
                    // Rows past the range repeat the last one; their results are not stored.
                    __builtin_memcpy(records, laid_rows + (rows - 1) * stride, (size_t)stride);
                    __builtin_memcpy(row_offsets, offsets + (rows - 1) * terms, (size_t)terms * 4);
                    continue;
                }
                const uint8_t *row = (const uint8_t *)w + (size_t)(first + r) * row_size + c0 * chunk_bytes;
                switch (type) {
                case ENGINE_QUANT_Q8_0: unpack_q8_0(row, nb - k0, c1 - c0, records, row_offsets + k0); break;
                case ENGINE_QUANT_Q4_0: unpack_q4_0(row, nb - k0, c1 - c0, records, row_offsets + k0); break;
                case ENGINE_QUANT_Q4_K: unpack_k_nibbles(row, nb - k0, c1 - c0, records, row_offsets + k0, 0); break;
                case ENGINE_QUANT_Q5_K: unpack_k_nibbles(row, nb - k0, c1 - c0, records, row_offsets + k0, 1); break;
                default: unpack_q6_K(row, c1 - c0, records, row_offsets + k0); break;
                }
            }
            const __mmask8 present = (__mmask8)((1u << rows) - 1);
            const __m128 row_bias = bias && block == 0 ? _mm_maskz_loadu_ps(present, bias + first) : _mm_setzero_ps();
            for (ptrdiff_t t0 = 0; t0 < tokens; t0 += TOKENS) {
                const int count = tokens - t0 < TOKENS ? (int)(tokens - t0) : TOKENS;
                __m128 out[TOKENS];
                const uint8_t *a = laid_tokens + t0 * stride + c0 * RECORD(steps);
                const float *st = sums + t0 * sums_stride + k0;
#define TILE(n, steps) \
    tile(laid_rows, stride, a, stride, c1 - c0, steps, offsets + k0, terms, st, sums_stride, k1 - k0, n, out)
                if (narrow) {
                    switch (count) {
                    case 3: TILE(3, NARROW); break;
                    case 2: TILE(2, NARROW); break;
                    default: TILE(1, NARROW); break;
                    }
                } else {
                    switch (count) {
                    case 3: TILE(3, WIDE); break;
                    case 2: TILE(2, WIDE); break;
                    default: TILE(1, WIDE); break;
                    }
                }
#undef TILE
                for (int t = 0; t < count; t++) {
                    float *target = y + (t0 + t) * y_stride + first;
                    __m128 value = _mm_add_ps(out[t], row_bias);
                    if (accumulate || block > 0) value = _mm_add_ps(value, _mm_maskz_loadu_ps(present, target));
                    _mm_mask_storeu_ps(target, present, value);
                }
            }
        }
    }
    return 1;
}

#endif
