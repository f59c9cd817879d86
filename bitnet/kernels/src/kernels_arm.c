/* aarch64 NEON variant: activation quantization, I2_S gemv/gemm and the F16 matmul (their loops shared with the
 * WebAssembly variant in kernels_simd128_impl.h); the other entries are the scalar reference.
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

#define BN_NAME(x) neon_##x
#define BN_FN static inline __attribute__((always_inline))
#define BN_VARIANT BN_V_NEON
#define BN_GETTER bn_kernels_neon
typedef int8x16_t vi8;
typedef int32x4_t vi32;
typedef float32x4_t vf32;

int bn_neon_needs_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return 1;
#else
    return 0;
#endif
}

static void neon_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(BN_VARIANT, BN_K_QUANTIZE_ACT);
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

/* ---- primitives of kernels_simd128_impl.h ---- */

BN_FN void i2s_planes(const uint8_t *blk, vi8 *p) {
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

BN_FN vi8 load_i8(const int8_t *a) { return vld1q_s8(a); }

BN_FN vi32 dot16(vi32 acc, vi8 p, vi8 a) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, p, a);
#else
    int16x8_t prod = vmull_s8(vget_low_s8(p), vget_low_s8(a));
    prod = vmlal_high_s8(prod, p, a);
    return vpadalq_s16(acc, prod);
#endif
}

BN_FN vi32 zero_i32(void) { return vdupq_n_s32(0); }
BN_FN int32_t hsum_i32(vi32 v) { return vaddvq_s32(v); }

BN_FN void load_f16x8(const uint8_t *p, vf32 *w) {
    const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    w[0] = vcvt_f32_f16(vget_low_f16(h));
    w[1] = vcvt_high_f32_f16(h);
}

BN_FN vf32 zero_f32(void) { return vdupq_n_f32(0.0f); }
BN_FN vf32 load_f32(const float *x) { return vld1q_f32(x); }
BN_FN vf32 madd_f32(vf32 acc, vf32 w, vf32 x) { return vfmaq_f32(acc, w, x); }
BN_FN float hsum_f32(vf32 a, vf32 b) { return vaddvq_f32(vaddq_f32(a, b)); }

#include "kernels_simd128_impl.h"

#else

int bn_neon_needs_dotprod(void) { return 0; }
const bn_kernels *bn_kernels_neon(void) { return NULL; }

#endif
