// AMX-BF16 GEMM for the built-in engine's prefill, written from Intel's instruction set reference
// (LDTILECFG, TILELOADD, TDPBF16PS, TILESTORED, TILERELEASE) and the Linux kernel's
// Documentation/arch/x86/xstate.rst (the dynamic-feature permission for tile data).
//
// The file is compiled without CPU flags; only the functions marked AMX_TARGET use AMX and
// AVX-512 instructions, and they run only after amx_bf16_usable() returned 1.

#include "CEngineAMX.h"

#if defined(__x86_64__) && defined(__linux__)

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

// arch_prctl codes and the tile data state component (xstate.rst).
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

// --- Availability --------------------------------------------------------------------------------

static int usable;
static pthread_once_t usable_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
    uint32_t low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    return ((uint64_t)high << 32) | low;
}

static void check_usable(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return;  // OSXSAVE
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return;
    int avx512f = (ebx >> 16) & 1, avx512bw = (ebx >> 30) & 1;
    int amx_bf16 = (edx >> 22) & 1, amx_tile = (edx >> 24) & 1;
    if (!(avx512f && avx512bw && amx_bf16 && amx_tile)) return;
    // XCR0: SSE, AVX, the three AVX-512 components, and tile configuration and data (bits 17, 18).
    uint64_t needed = (1u << 1) | (1u << 2) | (7u << 5) | (3u << 17);
    if ((read_xcr0() & needed) != needed) return;
    // Tile data is a dynamically enabled feature: without the permission the first tile
    // instruction faults (SIGILL). The permission is per process and covers every thread.
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return;
    usable = 1;
}

int amx_bf16_usable(void) {
    pthread_once(&usable_once, check_usable);
    return usable;
}

// --- Activations ---------------------------------------------------------------------------------

static inline ptrdiff_t round_up(ptrdiff_t value, ptrdiff_t multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

/// Sixteen floats to bf16, rounded to nearest even; NaNs stay (quiet) NaNs.
AMX_TARGET static inline __m256i round_to_bf16(__m512 v) {
    __m512i bits = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(bits, _mm512_set1_epi32(0x00400000)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
}

/// bf16 back to f32 (exact).
AMX_TARGET static inline __m512 widen_bf16(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

/// Sixteen floats (or fewer: `mask`) of row `source` as bf16 into `high`, and with two parts the
/// rounding error, rounded again, into `low`.
AMX_TARGET static inline void pack16(const float *source, __mmask16 mask, int parts, uint16_t *high, uint16_t *low) {
    __m512 v = _mm512_maskz_loadu_ps(mask, source);
    __m256i h = round_to_bf16(v);
    _mm256_storeu_si256((__m256i *)high, h);
    if (parts == 2) _mm256_storeu_si256((__m256i *)low, round_to_bf16(_mm512_sub_ps(v, widen_bf16(h))));
}

AMX_TARGET void amx_bf16_pack_activations(
    const float *x, ptrdiff_t x_stride, ptrdiff_t tokens, ptrdiff_t columns, int parts,
    ptrdiff_t row_start, ptrdiff_t row_end, uint16_t *out)
{
    ptrdiff_t padded = round_up(columns, AMX_BF16_COLUMN_BLOCK);
    ptrdiff_t padded_tokens = round_up(tokens, AMX_BF16_TOKEN_BLOCK);
    for (ptrdiff_t t = row_start; t < row_end; t++) {
        uint16_t *high = out + t * padded, *low = out + (padded_tokens + t) * padded;
        if (t >= tokens) {
            memset(high, 0, (size_t)padded * 2);
            if (parts == 2) memset(low, 0, (size_t)padded * 2);
            continue;
        }
        const float *source = x + t * x_stride;
        ptrdiff_t k = 0;
        for (; k + 16 <= columns; k += 16) pack16(source + k, 0xffff, parts, high + k, low + k);
        if (k < columns) {
            pack16(source + k, (__mmask16)((1u << (columns - k)) - 1), parts, high + k, low + k);
            k += 16;
        }
        for (; k < padded; k += 16) {
            _mm256_storeu_si256((__m256i *)(high + k), _mm256_setzero_si256());
            if (parts == 2) _mm256_storeu_si256((__m256i *)(low + k), _mm256_setzero_si256());
        }
    }
}

// --- Weights -------------------------------------------------------------------------------------

/// Each thread's packed weights, grown as needed and freed when the thread exits.
static pthread_key_t buffer_key;
static pthread_once_t buffer_once = PTHREAD_ONCE_INIT;
static __thread void *thread_buffer;
static __thread size_t thread_buffer_size;

static void make_buffer_key(void) { pthread_key_create(&buffer_key, free); }

static void *packing_buffer(size_t bytes) {
    if (thread_buffer_size < bytes) {
        pthread_once(&buffer_once, make_buffer_key);
        free(thread_buffer);
        size_t size = (bytes + 4095) & ~(size_t)4095;
        thread_buffer = aligned_alloc(64, size);
        thread_buffer_size = thread_buffer ? size : 0;
        pthread_setspecific(buffer_key, thread_buffer);
    }
    return thread_buffer;
}

/// Weight rows `row..<row + count` (count <= 16) as B tiles, one per 32 columns, for column tiles
/// `first..<end`: tile `j` row `r` holds, for each of the 16 rows `n`, the pair w[n][32j + 2r],
/// w[n][32j + 2r + 1] (the VNNI layout TDPBF16PS reads), so it is the 16 x 16 transpose of the
/// rows' 32-bit pairs. Missing rows and columns past `columns` are zeros.
AMX_TARGET static void pack_weights(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row, ptrdiff_t count, ptrdiff_t first, ptrdiff_t end,
    uint32_t *tiles)
{
    ptrdiff_t pairs = columns / 2;  // 32-bit words per weight row
    const int *base = (const int *)(w + row * columns);
    __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32((int)pairs));
    __mmask16 rows = (__mmask16)(count >= 16 ? 0xffff : (1u << count) - 1);
    for (ptrdiff_t j = first; j < end; j++) {
        uint32_t *tile = tiles + (j - first) * 256;
        for (ptrdiff_t r = 0; r < 16; r++) {
            ptrdiff_t pair = j * 16 + r;
            __m512i value = _mm512_setzero_si512();
            if (pair < pairs) value = _mm512_mask_i32gather_epi32(value, rows, offsets, base + pair, 4);
            _mm512_store_si512((__m512i *)(tile + r * 16), value);
        }
    }
}

// --- The multiply --------------------------------------------------------------------------------

/// Tile registers: C (f32 results) 0-3, A (activations) 4-5, B (weights) 6-7; all 16 rows x 64 bytes.
struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

/// Writes the 16 x 16 result tile in `c` (tokens x weight rows), plus the low parts' tile `low`
/// if not NULL, to `y` for the tokens and rows that exist, with the bias, overwriting or
/// accumulating.
static inline void write_tile(
    const float *c, const float *low, ptrdiff_t token, ptrdiff_t tokens, ptrdiff_t row, ptrdiff_t rows,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    ptrdiff_t token_count = tokens - token < 16 ? tokens - token : 16;
    ptrdiff_t row_count = rows - row < 16 ? rows - row : 16;
    for (ptrdiff_t t = 0; t < token_count; t++) {
        float *target = y + (token + t) * y_stride + row;
        const float *source = c + t * 16, *correction = low ? low + t * 16 : NULL;
        for (ptrdiff_t n = 0; n < row_count; n++) {
            float value = (correction ? source[n] + correction[n] : source[n]) + (bias ? bias[row + n] : 0.0f);
            if (accumulate) target[n] += value; else target[n] = value;
        }
    }
}

/// Columns multiplied per pass over the token tiles, in 32-column tiles: the two strips' 16 KB of
/// packed weights stay in L1 while every token tile passes, and each result tile is loaded and
/// stored once per 8 products.
#define COLUMN_TILES_PER_PASS 8
/// Columns of a block, in tiles: 1024 columns of 128 tokens' activations in two parts (512 KB)
/// stay in L2 while every strip of rows passes over them (a 4864-column matrix's whole rows would
/// not: 2.5 MB).
#define COLUMN_TILES_PER_BLOCK 32
/// Weight rows whose results are kept while the column blocks pass (8 strips of 16).
#define ROWS_PER_GROUP 128

/// Result tile of token tile `t` and strip `s` (of the group), 16 x 16 floats, in `c`.
static inline float *result_tile(float *c, ptrdiff_t token_tiles, ptrdiff_t s, ptrdiff_t t) {
    return c + (s * token_tiles + t) * 256;
}

/// Column tiles `first..<end` of up to 2 weight strips x 2 token tiles, added to the result tiles
/// (or starting them from zero at column 0). `b0` and `b1` hold the strips' tiles from column tile
/// `packed` on. `two_rows` and `two_tokens` are constants at each call site, so each of the four
/// shapes compiles to its own loop with only the tile instructions it needs (tile register
/// numbers are immediates).
AMX_TARGET static inline __attribute__((always_inline)) void multiply_block(
    int two_rows, int two_tokens, const uint32_t *b0, const uint32_t *b1, ptrdiff_t packed,
    const uint16_t *a0, const uint16_t *a1, ptrdiff_t a_stride_bytes, ptrdiff_t first, ptrdiff_t end,
    float *c00, float *c10, float *c01, float *c11)
{
    if (first == 0) {
        _tile_zero(0);
        if (two_tokens) _tile_zero(1);
        if (two_rows) _tile_zero(2);
        if (two_rows && two_tokens) _tile_zero(3);
    } else {
        _tile_loadd(0, c00, 64);
        if (two_tokens) _tile_loadd(1, c10, 64);
        if (two_rows) _tile_loadd(2, c01, 64);
        if (two_rows && two_tokens) _tile_loadd(3, c11, 64);
    }
    for (ptrdiff_t j = first; j < end; j++) {
        _tile_loadd(6, b0 + (j - packed) * 256, 64);
        _tile_loadd(4, a0 + j * AMX_BF16_COLUMN_BLOCK, a_stride_bytes);
        _tile_dpbf16ps(0, 4, 6);
        if (two_tokens) {
            _tile_loadd(5, a1 + j * AMX_BF16_COLUMN_BLOCK, a_stride_bytes);
            _tile_dpbf16ps(1, 5, 6);
        }
        if (two_rows) {
            _tile_loadd(7, b1 + (j - packed) * 256, 64);
            _tile_dpbf16ps(2, 4, 7);
            if (two_tokens) _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, c00, 64);
    if (two_tokens) _tile_stored(1, c10, 64);
    if (two_rows) _tile_stored(2, c01, 64);
    if (two_rows && two_tokens) _tile_stored(3, c11, 64);
}

static inline ptrdiff_t min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

AMX_TARGET void amx_bf16_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    if (row_start >= row_end || tokens <= 0) return;
    ptrdiff_t padded = round_up(columns, AMX_BF16_COLUMN_BLOCK);
    ptrdiff_t tile_count = padded / AMX_BF16_COLUMN_BLOCK;
    // The low parts' rows follow the high parts': the tiles multiply them like more tokens.
    ptrdiff_t part_tiles = round_up(tokens, AMX_BF16_TOKEN_BLOCK) / AMX_BF16_TOKEN_BLOCK;
    ptrdiff_t token_tiles = parts * part_tiles;
    ptrdiff_t a_stride = padded * 2;
    // Two strips of 16 packed rows for one column block, then the result tiles of the row group.
    size_t strip_bytes = (size_t)COLUMN_TILES_PER_BLOCK * 1024;
    uint32_t *strips = packing_buffer(2 * strip_bytes + (size_t)(ROWS_PER_GROUP / 16) * token_tiles * 1024);
    if (!strips) abort();
    uint32_t *b0 = strips, *b1 = strips + strip_bytes / 4;
    float *c = (float *)(strips + 2 * strip_bytes / 4);

    struct tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int i = 0; i < 8; i++) {
        config.bytes_per_row[i] = 64;
        config.rows[i] = 16;
    }
    _tile_loadconfig(&config);

    for (ptrdiff_t group = row_start; group < row_end; group += ROWS_PER_GROUP) {
        ptrdiff_t group_end = min(row_end, group + ROWS_PER_GROUP);
        for (ptrdiff_t block = 0; block < tile_count; block += COLUMN_TILES_PER_BLOCK) {
            ptrdiff_t block_end = min(tile_count, block + COLUMN_TILES_PER_BLOCK);
            for (ptrdiff_t row = group; row < group_end; row += 32) {
                int two_rows = group_end - row > 16;
                ptrdiff_t s = (row - group) / 16;
                pack_weights(w, columns, row, min(16, group_end - row), block, block_end, b0);
                if (two_rows) pack_weights(w, columns, row + 16, min(16, group_end - row - 16), block, block_end, b1);
                for (ptrdiff_t first = block; first < block_end; first += COLUMN_TILES_PER_PASS) {
                    ptrdiff_t end = min(block_end, first + COLUMN_TILES_PER_PASS);
                    for (ptrdiff_t tt = 0; tt < token_tiles; tt += 2) {
                        int two_tokens = tt + 1 < token_tiles;
                        const uint16_t *a0 = a + tt * 16 * padded, *a1 = a0 + 16 * padded;
                        float *c00 = result_tile(c, token_tiles, s, tt), *c10 = result_tile(c, token_tiles, s, tt + 1);
                        float *c01 = result_tile(c, token_tiles, s + 1, tt), *c11 = result_tile(c, token_tiles, s + 1, tt + 1);
                        if (two_rows && two_tokens) multiply_block(1, 1, b0, b1, block, a0, a1, a_stride, first, end, c00, c10, c01, c11);
                        else if (two_rows) multiply_block(1, 0, b0, b1, block, a0, a1, a_stride, first, end, c00, c10, c01, c11);
                        else if (two_tokens) multiply_block(0, 1, b0, b1, block, a0, a1, a_stride, first, end, c00, c10, c01, c11);
                        else multiply_block(0, 0, b0, b1, block, a0, a1, a_stride, first, end, c00, c10, c01, c11);
                    }
                }
            }
        }
        for (ptrdiff_t row = group; row < group_end; row += 16) {
            ptrdiff_t s = (row - group) / 16;
            for (ptrdiff_t tt = 0; tt < part_tiles; tt++) {
                const float *low = parts == 2 ? result_tile(c, token_tiles, s, part_tiles + tt) : NULL;
                write_tile(result_tile(c, token_tiles, s, tt), low, tt * 16, tokens, row, row_end, y, y_stride, bias, accumulate);
            }
        }
    }
    // Back to the initial state: the kernel need not save 8 KB of tiles for this thread.
    _tile_release();
}

#else

int amx_bf16_usable(void) { return 0; }

void amx_bf16_pack_activations(
    const float *x, ptrdiff_t x_stride, ptrdiff_t tokens, ptrdiff_t columns, int parts,
    ptrdiff_t row_start, ptrdiff_t row_end, uint16_t *out)
{
    (void)x; (void)x_stride; (void)tokens; (void)columns; (void)parts; (void)row_start; (void)row_end; (void)out;
}

void amx_bf16_matmul(
    const uint16_t *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end,
    const uint16_t *a, ptrdiff_t tokens, int parts,
    float *y, ptrdiff_t y_stride, const float *bias, int accumulate)
{
    (void)w; (void)columns; (void)row_start; (void)row_end; (void)a; (void)tokens; (void)parts;
    (void)y; (void)y_stride; (void)bias; (void)accumulate;
}

#endif
