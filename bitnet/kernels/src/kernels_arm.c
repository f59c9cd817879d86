/* aarch64 NEON variant: activation quantization, I2_S gemv/gemm and the F16 matmul; the other entries are the
 * scalar reference.
 *
 * The ternary dot uses SDOT (vdotq_s32) when the build targets the dot-product extension
 * (__ARM_FEATURE_DOTPROD, e.g. -march=armv8.2-a+dotprod); dispatch then requires it at run time. Otherwise it
 * multiplies into int16 (SMULL/SMLAL2: two products of code 0..2 by int8, within [-512, 508]) and pairwise
 * adds into int32 (SADALP) right away, so no int16 accumulator ever holds more than two products.
 *
 * Must stay freestanding (compiled by the tests with clang -ffreestanding for aarch64): no libc headers.
 */
#include "kernels_internal.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#define V BN_V_NEON
#define FN static inline __attribute__((always_inline))

int bn_neon_needs_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return 1;
#else
    return 0;
#endif
}

static void neon_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(V, BN_K_QUANTIZE_ACT);
    float32x4_t m0 = vdupq_n_f32(0.0f), m1 = m0;
    int64_t i = 0;
    /* FMAXNM ignores a quiet NaN operand, as the scalar loop does */
    for (; i + 8 <= n; i += 8) {
        m0 = vmaxnmq_f32(m0, vabsq_f32(vld1q_f32(x + i)));
        m1 = vmaxnmq_f32(m1, vabsq_f32(vld1q_f32(x + i + 4)));
    }
    float amax = vmaxnmvq_f32(vmaxnmq_f32(m0, m1));
    for (; i < n; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        if (a > amax) amax = a;
    }
    const float s = bn_act_scale(amax);
    const float32x4_t vs = vdupq_n_f32(s), hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-128.0f);
    int32x4_t vsum = vdupq_n_s32(0);
    i = 0;
    for (; i + 8 <= n; i += 8) {
        /* FRINTN: round to nearest, ties to even */
        const float32x4_t f0 = vminq_f32(vmaxq_f32(vrndnq_f32(vmulq_f32(vld1q_f32(x + i), vs)), lo), hi);
        const float32x4_t f1 = vminq_f32(vmaxq_f32(vrndnq_f32(vmulq_f32(vld1q_f32(x + i + 4), vs)), lo), hi);
        const int32x4_t i0 = vcvtq_s32_f32(f0), i1 = vcvtq_s32_f32(f1);
        vsum = vaddq_s32(vsum, vaddq_s32(i0, i1));
        vst1_s8(q + i, vqmovn_s16(vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1))));
    }
    int32_t sum = vaddvq_s32(vsum);
    for (; i < n; i++) {
        float v = __builtin_rintf(x[i] * s);
        if (v > 127.0f) v = 127.0f;
        if (v < -128.0f) v = -128.0f;
        q[i] = (int8_t)v;
        sum += q[i];
    }
    info->scale = s;
    info->sum = sum;
}

/* ---- I2_S ---- */

/* The eight 16-byte plane halves of a block: p[2l + h] = codes of elements 32l + 16h .. +15, code 3 -> 1. */
FN void i2s_planes(const uint8_t *blk, int8x16_t *p) {
    const uint8x16_t m3 = vdupq_n_u8(3), maa = vdupq_n_u8(0xaa);
    for (int h = 0; h < 2; h++) {
        uint8x16_t c = vld1q_u8(blk + 16 * h);
        c = vbicq_u8(c, vandq_u8(vshlq_n_u8(c, 1), maa));
        p[0 + h] = vreinterpretq_s8_u8(vshrq_n_u8(c, 6));
        p[2 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(c, 4), m3));
        p[4 + h] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(c, 2), m3));
        p[6 + h] = vreinterpretq_s8_u8(vandq_u8(c, m3));
    }
}

FN int32x4_t dot16(int32x4_t acc, int8x16_t p, int8x16_t a) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, p, a);
#else
    int16x8_t prod = vmull_s8(vget_low_s8(p), vget_low_s8(a));
    prod = vmlal_high_s8(prod, p, a);
    return vpadalq_s16(acc, prod);
#endif
}

/* 128 codes against 128 contiguous activations. */
FN int32x4_t block_dot(int32x4_t acc, const int8x16_t *p, const int8_t *a) {
    for (int j = 0; j < 8; j++) acc = dot16(acc, p[j], vld1q_s8(a + 16 * j));
    return acc;
}

FN int32x4_t i2s_partial(int32x4_t acc, const int8x16_t *p, int64_t jlo, int64_t jhi, const int8_t *src) {
    int8_t tmp[BN_I2S_BLOCK];
    BN_MEMSET(tmp, 0, sizeof(tmp));
    BN_MEMCPY(tmp + jlo, src, (size_t)(jhi - jlo));
    return block_dot(acc, p, tmp);
}

FN void i2s_tile(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q, const bn_qinfo *qi,
                 float wscale, float *y, int64_t ldy, const int NT) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t e0 = r * K;
        const uint8_t *blk = data + e0 / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES;
        const int64_t j0 = e0 % BN_I2S_BLOCK;
        int32x4_t acc[4];
        int8x16_t p[8];
        for (int t = 0; t < NT; t++) acc[t] = vdupq_n_s32(0);
        int64_t k = 0;
        if (j0 != 0) {
            const int64_t n = K < BN_I2S_BLOCK - j0 ? K : BN_I2S_BLOCK - j0;
            i2s_planes(blk, p);
            for (int t = 0; t < NT; t++) acc[t] = i2s_partial(acc[t], p, j0, j0 + n, q + t * K);
            k = n;
            blk += BN_I2S_BLOCK_BYTES;
        }
        for (; k + BN_I2S_BLOCK <= K; k += BN_I2S_BLOCK, blk += BN_I2S_BLOCK_BYTES) {
            i2s_planes(blk, p);
            for (int t = 0; t < NT; t++) acc[t] = block_dot(acc[t], p, q + t * K + k);
        }
        if (k < K) {
            i2s_planes(blk, p);
            for (int t = 0; t < NT; t++) acc[t] = i2s_partial(acc[t], p, 0, K - k, q + t * K + k);
        }
        for (int t = 0; t < NT; t++) y[t * ldy + r] = bn_i2s_finish(vaddvq_s32(acc[t]), qi + t, wscale);
    }
}

static void neon_i2s_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                          const int8_t *q, const bn_qinfo *qi, float wscale, float *y) {
    BN_MARK(V, BN_K_I2S_GEMV);
    i2s_tile(data, K, r0, r1, q, qi, wscale, y, 0, 1);
}

static void neon_i2s_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                          const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_I2S_GEMM);
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 4);
    for (; t < T; t++) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 1);
}

/* ---- F16 weights x float activations: RB rows x NT tokens, 8 elements per step ---- */

FN void f16_tile(const uint8_t *data, int64_t K, int64_t r, const float *x, float *y, int64_t ldy, const int RB,
                 const int NT) {
    float32x4_t acc[4][4][2];
    const uint16_t *rows[4];
    for (int i = 0; i < RB; i++) {
        rows[i] = (const uint16_t *)(data + (r + i) * K * 2);
        for (int t = 0; t < NT; t++) acc[i][t][0] = acc[i][t][1] = vdupq_n_f32(0.0f);
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        float32x4_t w[4][2];
        for (int i = 0; i < RB; i++) {
            const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(rows[i] + k));
            w[i][0] = vcvt_f32_f16(vget_low_f16(h));
            w[i][1] = vcvt_high_f32_f16(h);
        }
        for (int t = 0; t < NT; t++) {
            const float32x4_t x0 = vld1q_f32(x + t * K + k), x1 = vld1q_f32(x + t * K + k + 4);
            for (int i = 0; i < RB; i++) {
                acc[i][t][0] = vfmaq_f32(acc[i][t][0], w[i][0], x0);
                acc[i][t][1] = vfmaq_f32(acc[i][t][1], w[i][1], x1);
            }
        }
    }
    for (int i = 0; i < RB; i++)
        for (int t = 0; t < NT; t++) {
            float s = vaddvq_f32(vaddq_f32(acc[i][t][0], acc[i][t][1]));
            for (int64_t kk = k; kk < K; kk++) s += bn_half_to_float(rows[i][kk]) * x[t * K + kk];
            y[t * ldy + r + i] = s;
        }
}

static void neon_f16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                          float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_F16_GEMV : BN_K_F16_GEMM);
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) f16_tile(data, K, r, x + t * K, y + t * ldy, ldy, 4, 2);
        for (; r < r1; r++) f16_tile(data, K, r, x + t * K, y + t * ldy, ldy, 1, 2);
    }
    if (t < T) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) f16_tile(data, K, r, x + t * K, y + t * ldy, ldy, 4, 1);
        for (; r < r1; r++) f16_tile(data, K, r, x + t * K, y + t * ldy, ldy, 1, 1);
    }
}

static const bn_kernels neon_table = {
    .variant = BN_V_NEON,
    .quantize_act = neon_quantize_act,
    .i2s_gemv = neon_i2s_gemv,
    .i2s_gemm = neon_i2s_gemm,
    .tq2_gemv = bn_scalar_tq2_gemv,
    .tq2_gemm = bn_scalar_tq2_gemm,
    .tq1_gemv = bn_scalar_tq1_gemv,
    .tq1_gemm = bn_scalar_tq1_gemm,
    .f16_gemm = neon_f16_gemm,
    .bf16_gemm = bn_scalar_bf16_gemm,
    .q80_gemm = bn_scalar_q80_gemm,
    .f32_gemm = bn_scalar_f32_gemm,
    .attention = bn_scalar_attention,
};

const bn_kernels *bn_kernels_neon(void) { return &neon_table; }

#else

int bn_neon_needs_dotprod(void) { return 0; }
const bn_kernels *bn_kernels_neon(void) { return NULL; }

#endif
