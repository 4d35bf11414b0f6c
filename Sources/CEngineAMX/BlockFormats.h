// What the C kernels of GGUF block-quantized weights share (QuantizedMatMul.c, QuantizedPrefill.c,
// DecodeQuantized.c): their target attributes and the readers of the blocks' f16 scales and Q4_K/Q5_K's packed
// 6-bit scales and mins. Private to this module.

#ifndef CENGINEAMX_BLOCK_FORMATS_H
#define CENGINEAMX_BLOCK_FORMATS_H

#include <immintrin.h>
#include <stdint.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/// The f16 at `p` (unaligned), widened to f32.
VNNI_TARGET INLINE float half_at(const uint8_t *p) {
    uint16_t bits;
    __builtin_memcpy(&bits, p, 2);
    return _cvtsh_ss(bits);
}

/// Sub-block `j`'s 6-bit scale and min of a Q4_K or Q5_K block, from its 12 packed bytes `s` (the layout of
/// Dequantize.scaleMin).
INLINE void q4_K_scale_min(const uint8_t *s, int j, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = s[j] & 0x3F;
        *min = s[j + 4] & 0x3F;
    } else {
        *scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30);
        *min = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
}

#endif
