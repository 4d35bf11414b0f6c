// The built-in engine's C kernels on their own, beside what bounds them on this machine (scripts/bench-kernels.sh
// builds and runs it; docs/benchmarks.md records the figures).
//
//   decode: single-token products of Q4_K and Q6_K weights (engine_decode_quantized) at Qwen2.5-1.5B's feed-forward
//           shapes, against a loop that only loads the same rows with the same four streams and prefetch: from
//           memory (400 MB of matrices, 2 threads) in alternating rounds, and one thread on one matrix held in L3.
//   bf16:   bf16 prefill with vdpbf16ps (engine_bf16_dot_matmul, activations rounded to bf16) on one thread,
//           against a loop of independent vdpbf16ps: the instruction's peak on this core.
//
// Needs AVX-512 with VNNI and AVX512_BF16 (AMD Zen 4 and 5, Intel Sapphire Rapids); prints why not otherwise.

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "CEngineAMX.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint32_t next_random(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)state;
}

/// Bytes per 256-element block of the format.
static int block_bytes(int type) { return type == ENGINE_QUANT_Q4_K ? 144 : 210; }

typedef void (*DecodeKernel)(
    int, const void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, const int8_t *, const float *, const int16_t *, float *,
    const float *, int);

/// Loads every byte of rows `row_start..<row_end` as engine_decode_quantized reads them (four rows at once, each
/// from its own quarter of the range, prefetch 4 KB ahead) and does nothing else with them.
__attribute__((target("avx512f"))) static void read_only(
    int type, const void *w, ptrdiff_t columns, ptrdiff_t row_start, ptrdiff_t row_end, const int8_t *q,
    const float *d, const int16_t *sums, float *y, const float *bias, int accumulate)
{
    (void)q, (void)d, (void)sums, (void)bias, (void)accumulate;
    const ptrdiff_t row_bytes = columns / 256 * block_bytes(type);
    const ptrdiff_t part = (row_end - row_start) / 4;
    for (ptrdiff_t row = row_start; row < row_start + part; row++) {
        const uint8_t *p[4];
        __m512i acc[4];
        for (int k = 0; k < 4; k++) {
            p[k] = (const uint8_t *)w + (row + k * part) * row_bytes;
            acc[k] = _mm512_setzero_si512();
        }
        for (ptrdiff_t offset = 0; offset + 64 <= row_bytes; offset += 64)
            for (int k = 0; k < 4; k++) {
                _mm_prefetch((const char *)(p[k] + offset + 4096), _MM_HINT_T0);
                acc[k] = _mm512_xor_si512(acc[k], _mm512_loadu_si512(p[k] + offset));
            }
        for (int k = 0; k < 4; k++) y[row + k * part] = (float)_mm512_reduce_add_epi32(acc[k]);
    }
}

typedef struct {
    DecodeKernel kernel;
    int type;
    const uint8_t *w;
    ptrdiff_t columns, rows, matrices, row_start, row_end;
    const int8_t *q;
    const float *d;
    const int16_t *sums;
    float *y;
} DecodeJob;

static void *decode_job(void *argument) {
    const DecodeJob *job = argument;
    const ptrdiff_t bytes = job->rows * job->columns / 256 * block_bytes(job->type);
    for (ptrdiff_t m = 0; m < job->matrices; m++)
        job->kernel(job->type, job->w + m * bytes, job->columns, job->row_start, job->row_end, job->q, job->d,
            job->sums, job->y, NULL, 0);
    return NULL;
}

/// GB/s of weights read by `kernel` over `matrices` matrices on `threads` threads.
static double decode_rate(DecodeKernel kernel, int type, const uint8_t *w, ptrdiff_t columns, ptrdiff_t rows,
    ptrdiff_t matrices, int threads, const int8_t *q, const float *d, const int16_t *sums, float *y)
{
    DecodeJob jobs[8];
    pthread_t ids[8];
    const double start = now();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (DecodeJob){kernel, type, w, columns, rows, matrices, rows * i / threads, rows * (i + 1) / threads,
            q, d, sums, y};
        pthread_create(&ids[i], NULL, decode_job, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    const double bytes = (double)matrices * rows * columns / 256 * block_bytes(type);
    return bytes / (now() - start) / 1e9;
}

static void bench_decode(int type, ptrdiff_t columns, ptrdiff_t rows, int rounds) {
    const int block = block_bytes(type);
    const ptrdiff_t matrix_bytes = rows * columns / 256 * block;
    const ptrdiff_t matrices = (400l << 20) / matrix_bytes;
    uint8_t *w = aligned_alloc(4096, matrices * matrix_bytes + 8192);
    for (ptrdiff_t i = 0; i < matrices * matrix_bytes; i++) w[i] = (uint8_t)next_random();
    // Scales of 1.0 (f16), so that the sums stay finite.
    const uint16_t one = 0x3C00;
    for (ptrdiff_t b = 0; b < matrices * matrix_bytes / block; b++) {
        uint8_t *p = w + b * block;
        if (type == ENGINE_QUANT_Q4_K) {
            memcpy(p, &one, 2);
            memcpy(p + 2, &one, 2);
        } else {
            memcpy(p + 208, &one, 2);
        }
    }
    float *x = malloc(columns * sizeof(float)), *y = malloc(rows * sizeof(float));
    for (ptrdiff_t i = 0; i < columns; i++) x[i] = (float)((int)(next_random() % 2001) - 1000) / 100.0f;
    int8_t *q = aligned_alloc(64, columns);
    float *d = malloc(columns / 256 * sizeof(float));
    int16_t *sums = malloc(columns / 16 * sizeof(int16_t));
    engine_quantize_super_blocks(x, columns, q, d, sums);

    const char *name = type == ENGINE_QUANT_Q4_K ? "Q4_K" : "Q6_K";
    double best[2] = {0, 0}, total[2] = {0, 0};
    const DecodeKernel kernels[2] = {engine_decode_quantized, read_only};
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            const double rate = decode_rate(kernels[k], type, w, columns, rows, matrices, 2, q, d, sums, y);
            total[k] += rate;
            if (rate > best[k]) best[k] = rate;
        }
    printf("decode %s %td x %td, %td MB from memory, 2 threads, %d rounds: kernel %.1f GB/s (best %.1f), "
           "loads alone %.1f GB/s (best %.1f)\n",
        name, rows, columns, matrices * matrix_bytes >> 20, rounds, total[0] / rounds, best[0], total[1] / rounds,
        best[1]);
    // One matrix, read 200 times: it stays in L3 (32 MB on this machine kind).
    double in_cache = 0;
    for (int r = 0; r < 3; r++) {
        const double start = now();
        for (int i = 0; i < 200; i++) engine_decode_quantized(type, w, columns, 0, rows, q, d, sums, y, NULL, 0);
        const double rate = 200.0 * matrix_bytes / (now() - start) / 1e9;
        if (rate > in_cache) in_cache = rate;
    }
    printf("decode %s %td x %td, one %.1f MB matrix held in cache, 1 thread: %.1f GB/s\n", name, rows, columns,
        matrix_bytes / 1e6, in_cache);
    free(w), free(x), free(y), free(q), free(d), free(sums);
}

__attribute__((target("avx512f,avx512bf16"))) static double vdpbf16ps_peak(void) {
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0x3F81);
    const long steps = 50000000;
    const double start = now();
    for (long s = 0; s < steps; s++) {
        for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a));
    }
    const double seconds = now() - start;
    // The sums are kept, so that the loop is not optimized away.
    static volatile float sink;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(acc[i]);
    return steps * 12.0 * 64 / seconds / 1e9;
}

static void bench_bf16(ptrdiff_t rows, ptrdiff_t columns, ptrdiff_t tokens) {
    uint16_t *w = aligned_alloc(64, rows * columns * 2);
    for (ptrdiff_t i = 0; i < rows * columns; i++) w[i] = (uint16_t)(0x3F80 + (next_random() & 0x7F));
    float *x = malloc(tokens * columns * sizeof(float)), *y = malloc(tokens * rows * sizeof(float));
    for (ptrdiff_t i = 0; i < tokens * columns; i++) x[i] = (float)((int)(next_random() % 201) - 100) / 100.0f;
    const ptrdiff_t padded = (columns + AMX_BF16_COLUMN_BLOCK - 1) / AMX_BF16_COLUMN_BLOCK * AMX_BF16_COLUMN_BLOCK;
    const ptrdiff_t packed = (tokens + AMX_BF16_TOKEN_BLOCK - 1) / AMX_BF16_TOKEN_BLOCK * AMX_BF16_TOKEN_BLOCK;
    uint16_t *a = aligned_alloc(64, packed * padded * 2);
    amx_bf16_pack_activations(x, columns, tokens, columns, 1, 0, packed, a);
    const int repeats = (int)(2e10 / (2.0 * rows * columns * tokens)) + 1;
    double best = 0;
    for (int r = 0; r < 6; r++) {
        const double start = now();
        for (int i = 0; i < repeats; i++) engine_bf16_dot_matmul(w, columns, 0, rows, a, tokens, 1, y, rows, NULL, 0);
        const double rate = 2.0 * rows * columns * tokens * repeats / (now() - start) / 1e9;
        if (rate > best) best = rate;
    }
    printf("bf16 prefill %td x %td, %td tokens, 1 thread: %.1f GFLOPS (best of 6)\n", rows, columns, tokens, best);
    free(w), free(x), free(y), free(a);
}

int main(int argc, char **argv) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bf16")) {
        printf("this CPU lacks AVX-512 VNNI or AVX512_BF16: nothing to measure\n");
        return 0;
    }
    const int rounds = argc > 1 ? atoi(argv[1]) : 15;
    bench_decode(ENGINE_QUANT_Q4_K, 1536, 8960, rounds);
    bench_decode(ENGINE_QUANT_Q6_K, 8960, 1536, rounds);
    printf("vdpbf16ps peak, 1 thread: %.1f GFLOPS\n", vdpbf16ps_peak());
    bench_bf16(8960, 1536, 128);
    bench_bf16(1536, 8960, 128);
    bench_bf16(151936, 896, 16);
    return 0;
}
