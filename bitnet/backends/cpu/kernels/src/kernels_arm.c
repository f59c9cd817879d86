/* aarch64 NEON variant: activation quantization, I2_S gemv/gemm and the F16 matmul (their loops shared with the
 * WebAssembly variant in kernels_simd128_impl.h) and attention (below); the other entries are the scalar
 * reference.
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

/* ---- attention: the x86 kernel's structure with 4-lane vectors ---- */

BN_FN vf32 k4(const bn_f16 *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

/* e^x for x <= 0, 0 below -87.3: as the x86 exp_neg8 (Cody-Waite reduction, Taylor to r^7), four lanes. No libm:
 * this file must stay freestanding. */
BN_FN vf32 exp_neg4(vf32 x) {
    const vf32 lo = vdupq_n_f32(BN_EXP_LO);
    const uint32x4_t under = vcltq_f32(x, lo);
    x = vmaxq_f32(x, lo);
    const vf32 n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(BN_EXP_LOG2E)));
    vf32 r = vfmsq_f32(x, n, vdupq_n_f32(BN_EXP_LN2_HI));
    r = vfmsq_f32(r, n, vdupq_n_f32(BN_EXP_LN2_LO));
    static const float c[8] = BN_EXP_TAYLOR;
    vf32 p = vdupq_n_f32(c[0]);
    for (int i = 1; i < 8; i++) p = vfmaq_f32(vdupq_n_f32(c[i]), p, r);
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, vreinterpretq_f32_s32(e))), under));
}

/* bn_softmax with four exponentials at a time (the last partial four through a padded copy), sum in double */
BN_FN void softmax4(float *x, int64_t n, float *ml) {
    if (ml) ml[0] = -__builtin_inff(), ml[1] = 0.0f;
    const int64_t n4 = n & ~(int64_t)3;
    float tail[4];
    for (int j = 0; j < 4; j++) tail[j] = n4 + j < n ? x[n4 + j] : -__builtin_inff();
    vf32 vmax = vld1q_f32(tail);
    for (int64_t i = 0; i < n4; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    const float mx = vmaxvq_f32(vmax);
    if (mx == -__builtin_inff()) {   /* nothing attended: zeros, as bn_softmax */
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float64x2_t sum = vdupq_n_f64(0.0);
    for (int64_t i = 0; i <= n4; i += 4) {
        float *p = i < n4 ? x + i : tail;
        const vf32 e = exp_neg4(vsubq_f32(vld1q_f32(p), vdupq_n_f32(mx)));
        vst1q_f32(p, e);
        sum = vaddq_f64(sum, vaddq_f64(vcvt_f64_f32(vget_low_f32(e)), vcvt_high_f64_f32(e)));
    }
    const double total = vaddvq_f64(sum);
    const float inv = (float)(1.0 / total);
    for (int64_t i = 0; i < n4; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (int64_t i = n4; i < n; i++) x[i] = tail[i - n4] * inv;
    if (ml) ml[0] = mx, ml[1] = (float)total;
}

/* Dims [d, d + W) of the weighted sum of V for NQ heads: W/4 accumulators per head (at most sixteen in all),
 * each one chain over the positions. */
BN_FN void att_v_pass(const bn_f16 *v, int64_t kv_stride, int64_t n_kv, int64_t head_dim, const float *scores,
                      float *out, int64_t d, const int NQ, const int W) {
    vf32 o[16];
    for (int j = 0; j < NQ * W / 4; j++) o[j] = vdupq_n_f32(0.0f);
    for (int64_t p = 0; p < n_kv; p++)
        for (int j = 0; j < W / 4; j++) {
            const vf32 vj = k4(v + p * kv_stride + d + 4 * j);
            for (int h = 0; h < NQ; h++)
                o[h * (W / 4) + j] = vfmaq_n_f32(o[h * (W / 4) + j], vj, scores[h * n_kv + p]);
        }
    for (int h = 0; h < NQ; h++)
        for (int j = 0; j < W / 4; j++) vst1q_f32(out + h * head_dim + d + 4 * j, o[h * (W / 4) + j]);
}

/* NQ (1 or 2) query heads sharing one K/V head: scores 8/NQ positions per step (independent chains), the
 * weighted sum of V in passes of 64/NQ dims per head (sixteen 4-lane accumulators). */
BN_FN void attention_heads(const float *q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride, int64_t n_kv,
                           int64_t head_dim, float scale, float *scores, float *out, float *ml, const int NQ) {
    const int P = 8 / NQ, D = 64 / NQ;
    const int64_t hd4 = head_dim & ~(int64_t)3;
    for (int64_t i = 0; i < n_kv; i += P) {
        const bn_f16 *kr[8];
        for (int j = 0; j < P; j++) kr[j] = k + (i + j < n_kv ? i + j : n_kv - 1) * kv_stride;
        vf32 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = vdupq_n_f32(0.0f);
        for (int64_t d = 0; d < hd4; d += 4)
            for (int j = 0; j < P; j++) {
                const vf32 kj = k4(kr[j] + d);
                for (int h = 0; h < NQ; h++)
                    acc[h * P + j] = vfmaq_f32(acc[h * P + j], vld1q_f32(q + h * head_dim + d), kj);
            }
        for (int h = 0; h < NQ; h++)
            for (int j = 0; j < P && i + j < n_kv; j++) {
                float s = vaddvq_f32(acc[h * P + j]);
                for (int64_t d = hd4; d < head_dim; d++) s += q[h * head_dim + d] * bn_half_to_float(kr[j][d]);
                scores[h * n_kv + i + j] = s * scale;
            }
    }
    for (int h = 0; h < NQ; h++) softmax4(scores + h * n_kv, n_kv, ml ? ml + 2 * h : NULL);
    int64_t d = 0;
    for (; d + D <= head_dim; d += D) att_v_pass(v, kv_stride, n_kv, head_dim, scores, out, d, NQ, D);
    for (; d + 4 <= head_dim; d += 4) att_v_pass(v, kv_stride, n_kv, head_dim, scores, out, d, NQ, 4);
    for (; d < head_dim; d++)
        for (int h = 0; h < NQ; h++) {
            float o = 0.0f;
            for (int64_t p = 0; p < n_kv; p++) o += scores[h * n_kv + p] * bn_half_to_float(v[p * kv_stride + d]);
            out[h * head_dim + d] = o;
        }
}

static void neon_attention(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                           int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                           const void *ahead, int64_t ahead_bytes) {
    BN_MARK(BN_VARIANT, BN_K_ATTENTION);
    (void)ahead, (void)ahead_bytes;    /* not measured on an ARM machine: no fetch ahead */
    int64_t h = 0;
    for (; h + 2 <= n_q; h += 2)
        attention_heads(q + h * head_dim, k, v, kv_stride, n_kv, head_dim, scale, scores, out + h * head_dim,
                        ml ? ml + 2 * h : NULL, 2);
    if (h < n_q)
        attention_heads(q + h * head_dim, k, v, kv_stride, n_kv, head_dim, scale, scores, out + h * head_dim,
                        ml ? ml + 2 * h : NULL, 1);
}
#define BN_ATTENTION neon_attention

#include "kernels_simd128_impl.h"

#else

int bn_neon_needs_dotprod(void) { return 0; }
const bn_kernels *bn_kernels_neon(void) { return NULL; }

#endif
