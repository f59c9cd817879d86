/* Helpers shared by the kernel variants (not part of the public contract in kernels.h).
 *
 * This header is also compiled into the cross-target files (kernels_arm.c, kernels_wasm.c) with
 * -ffreestanding, so it may only use freestanding headers and compiler builtins.
 */
#ifndef BITNET_KERNELS_INTERNAL_H
#define BITNET_KERNELS_INTERNAL_H

#include "kernels.h"

/* Each kernel entry point records that it ran, for receipts (benign racy store of a constant). */
#define BN_MARK(variant, id) (bn_ran[(variant)][(id)] = 1)

#if defined(__GNUC__) || defined(__clang__)
#define BN_INLINE static inline __attribute__((always_inline))
#define BN_MEMCPY __builtin_memcpy /* builtins: also available in the freestanding cross builds */
#define BN_MEMSET __builtin_memset
#else
#include <string.h>
#define BN_INLINE static inline
#define BN_MEMCPY memcpy
#define BN_MEMSET memset
#endif

/* Block geometry of the ternary formats (docs/formats.md §3, §4). */
#define BN_I2S_BLOCK 128        /* elements per I2_S block */
#define BN_I2S_BLOCK_BYTES 32
#define BN_TQ_BLOCK 256         /* elements per TQ1_0 / TQ2_0 block */
#define BN_TQ2_BLOCK_BYTES 66   /* qs[64], f16 d */
#define BN_TQ1_BLOCK_BYTES 54   /* qs[48], qh[4], f16 d */
#define BN_Q80_BLOCK 32
#define BN_Q80_BLOCK_BYTES 34   /* f16 d, int8 qs[32] */

/* The SIMD kernels split a TQ row into runs of this many blocks: per-block activation sums for a run live on the
 * stack (BN_TQ_RUN * 4 bytes per token), and a run's partial float sum is parked in y between runs, which
 * keeps the block-by-block float accumulation order of the scalar reference for any K. */
#define BN_TQ_RUN 64

/* The SIMD bodies' e^x for x <= 0 (softmax arguments; 0 below BN_EXP_LO): e^x = 2^n e^r with n = round(x log2 e),
 * r = x - n ln 2 in two parts (Cody-Waite: ln2_hi has 9 significant bits, so n * ln2_hi is exact), |r| <= ln2/2,
 * and e^r by its Taylor series to r^7 in Horner's form, r^7's coefficient first. */
#define BN_EXP_LO (-87.3f)
#define BN_EXP_LOG2E 1.44269504f
#define BN_EXP_LN2_HI 0.693359375f
#define BN_EXP_LN2_LO (-2.12194440e-4f)
#define BN_EXP_TAYLOR {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}

/* Element types of the float-weight matmuls, for kernels generated once for all three. */
enum { BN_W_F16 = 0, BN_W_BF16 = 1, BN_W_F32 = 2 };

/* Little-endian loads that do not assume alignment (GGUF only guarantees 32-byte tensor alignment). */
BN_INLINE uint16_t bn_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
BN_INLINE float bn_load_f32(const uint8_t *p) {
    float f;
    BN_MEMCPY(&f, p, 4);
    return f;
}

/* IEEE half -> float, exact (every half is a float). Branch-light bit manipulation, no libm. */
BN_INLINE float bn_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1fu) {                 /* inf / nan: keep the payload */
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {              /* normal */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {              /* signed zero */
        bits = sign;
    } else {                            /* subnormal: renormalise */
        uint32_t e = 113u;
        while ((man & 0x400u) == 0) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    BN_MEMCPY(&f, &bits, 4);
    return f;
}

BN_INLINE float bn_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    BN_MEMCPY(&f, &bits, 4);
    return f;
}

/* The activation scale s = 127 / max(1e-5, amax), formed in double and rounded to float once (docs/formats.md §3). */
BN_INLINE float bn_act_scale(float amax) {
    const double a = (double)amax > 1e-5 ? (double)amax : 1e-5;
    return (float)(127.0 / a);
}

/* acc + d*v with two roundings, never a fused multiply-add (the definition every TQ kernel follows; the x86
 * kernels do the same four tokens at a time): compilers contract a*b+c into an FMA on FMA targets (GCC does
 * by default, e.g. on aarch64), and the store through a volatile is the portable way to forbid it. */
BN_INLINE float bn_tq_accumulate(float acc, float d, int32_t v) {
    volatile float p = d * (float)v;
    return acc + p;
}


/* Scalar reference kernels (kernels_scalar.c), also used as fallbacks by variants that do not implement an op. */
void bn_scalar_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info);
void bn_scalar_i2s_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float wscale, float *y);
void bn_scalar_i2s_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy);
void bn_scalar_tq2_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float *y);
void bn_scalar_tq2_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy);
void bn_scalar_tq1_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float *y);
void bn_scalar_tq1_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy);
void bn_scalar_f16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy);
void bn_scalar_bf16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t T, float *y, int64_t ldy);
void bn_scalar_q80_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy);
void bn_scalar_f32_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy);
void bn_scalar_q80_q8_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                           const int8_t *xq, const float *xd, int64_t T, float *y, int64_t ldy);
void bn_scalar_i2l_gemv(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *tables, const bn_qinfo *qi, float wscale, float *y);
void bn_scalar_i2l_gemm(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *tables, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy);
void bn_scalar_attention(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                         int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                         const void *ahead, int64_t ahead_bytes);
void bn_scalar_attention_q8(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                            int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                            const void *ahead, int64_t ahead_bytes);

/* The fixed sum of the eight lanes of the Q8 x Q8 dot (kernels.h): the order of an SSE horizontal add. */
BN_INLINE float bn_sum8_lanes(const float *a) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* The I2_S finishing step shared by every variant so that they agree bit for bit (docs/formats.md §3):
 * y = ((float)dot - (float)sum_q) / s * wscale, left to right. */
BN_INLINE float bn_i2s_finish(int32_t dot, const bn_qinfo *qi, float wscale) {
    return (((float)dot - (float)qi->sum) / qi->scale) * wscale;
}

/* The TQ1_0 base-3 digit n of a byte that was multiplied by 3^n modulo 256 (docs/formats.md §4). */
BN_INLINE uint8_t bn_tq1_digit(uint8_t scaled) { return (uint8_t)(((uint16_t)scaled * 3) >> 8); }

/* Decode one TQ1_0 block's 256 codes (0..2) in element order. */
BN_INLINE void bn_tq1_decode_block(const uint8_t *blk, uint8_t *codes) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++) codes[32 * n + m] = bn_tq1_digit((uint8_t)(blk[m] * pow3[n]));
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++) codes[160 + 16 * n + m] = bn_tq1_digit((uint8_t)(blk[32 + m] * pow3[n]));
    for (int n = 0; n < 4; n++)
        for (int j = 0; j < 4; j++) codes[240 + 4 * n + j] = bn_tq1_digit((uint8_t)(blk[48 + j] * pow3[n]));
}

/* Per-block sums of int8 activations (one per 256 elements), used by the TQ kernels: a block's ternary dot is
 * sum(code*q) - sum(q). */
BN_INLINE void bn_block_sums(const int8_t *q, int64_t nblocks, int32_t *sums) {
    for (int64_t b = 0; b < nblocks; b++) {
        int32_t s = 0;
        for (int j = 0; j < BN_TQ_BLOCK; j++) s += q[b * BN_TQ_BLOCK + j];
        sums[b] = s;
    }
}

#endif
