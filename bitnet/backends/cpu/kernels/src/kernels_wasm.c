/* WebAssembly SIMD128 variant (Pyodide / emscripten builds): activation quantization, I2_S gemv/gemm and the
 * F16 matmul (their loops shared with the NEON variant in kernels_simd128_impl.h) and attention (below); the
 * other entries are the scalar reference.
 *
 * The ternary dot widens code*q products (codes 0..2) into int16 with i16x8.extmul, adds the low and high
 * halves (two products: within [-512, 508]) and pairwise-widens into int32 right away, so no int16 lane ever
 * holds more than two products. SIMD128 has no half-precision conversion: F16 weights are widened with integer
 * operations and one exact float multiply by 2^112 (which also handles subnormals).
 *
 * Must stay freestanding (compiled by the tests with clang --target=wasm32 -msimd128 -ffreestanding).
 */
#include "kernels_internal.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>

#define BN_NAME(x) wasm_##x
#define BN_FN static inline __attribute__((always_inline))
#define BN_VARIANT BN_V_WASM
#define BN_GETTER bn_kernels_wasm
typedef v128_t vi8;
typedef v128_t vi32;
typedef v128_t vf32;

static void wasm_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(BN_VARIANT, BN_K_QUANTIZE_ACT);
    v128_t m = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    /* pmax(m, v) = m < v ? v : m keeps m when v is NaN, as the scalar loop does */
    for (; i + 4 <= n; i += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(x + i)));
    float amax = 0.0f;
    for (int j = 0; j < 4; j++) {
        float lane;
        switch (j) {
        case 0: lane = wasm_f32x4_extract_lane(m, 0); break;
        case 1: lane = wasm_f32x4_extract_lane(m, 1); break;
        case 2: lane = wasm_f32x4_extract_lane(m, 2); break;
        default: lane = wasm_f32x4_extract_lane(m, 3); break;
        }
        if (lane > amax) amax = lane;
    }
    for (; i < n; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        if (a > amax) amax = a;
    }
    const float s = bn_act_scale(amax);
    const v128_t vs = wasm_f32x4_splat(s), hi = wasm_f32x4_splat(127.0f), lo = wasm_f32x4_splat(-128.0f);
    v128_t vsum = wasm_i32x4_splat(0);
    i = 0;
    for (; i + 16 <= n; i += 16) {
        v128_t v[4];
        for (int j = 0; j < 4; j++) {
            /* f32x4.nearest rounds ties to even */
            v128_t f = wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i + 4 * j), vs));
            f = wasm_f32x4_min(wasm_f32x4_max(f, lo), hi);
            v[j] = wasm_i32x4_trunc_sat_f32x4(f);
            vsum = wasm_i32x4_add(vsum, v[j]);
        }
        wasm_v128_store(q + i, wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(v[0], v[1]),
                                                       wasm_i16x8_narrow_i32x4(v[2], v[3])));
    }
    int32_t sum = wasm_i32x4_extract_lane(vsum, 0) + wasm_i32x4_extract_lane(vsum, 1) +
                  wasm_i32x4_extract_lane(vsum, 2) + wasm_i32x4_extract_lane(vsum, 3);
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
    const v128_t m3 = wasm_i8x16_splat(3), maa = wasm_i8x16_splat((int8_t)0xaa);
    for (int h = 0; h < 2; h++) {
        v128_t c = wasm_v128_load(blk + 16 * h);
        c = wasm_v128_andnot(c, wasm_v128_and(wasm_i8x16_shl(c, 1), maa));
        p[0 + h] = wasm_u8x16_shr(c, 6);
        p[2 + h] = wasm_v128_and(wasm_u8x16_shr(c, 4), m3);
        p[4 + h] = wasm_v128_and(wasm_u8x16_shr(c, 2), m3);
        p[6 + h] = wasm_v128_and(c, m3);
    }
}

BN_FN vi8 load_i8(const int8_t *a) { return wasm_v128_load(a); }

BN_FN vi32 dot16(vi32 acc, vi8 p, vi8 a) {
    const v128_t prod = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(p, a), wasm_i16x8_extmul_high_i8x16(p, a));
    return wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(prod));
}

BN_FN vi32 zero_i32(void) { return wasm_i32x4_splat(0); }
BN_FN int32_t hsum_i32(vi32 v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* Four halves (u32 lanes holding 16-bit values) -> floats, exact for every input including subnormals,
 * infinities and NaN. Shifting the half to the top and back arithmetically by 3 leaves its sign in bit 31 (and
 * copies of it in 30..28, masked off) and exponent + mantissa in bits 27..13: a float 2^-112 times the half,
 * which one multiply by 2^112 rebiases (subnormals included). An all-ones exponent is made the float's. */
BN_FN v128_t half4_to_f32(v128_t h) {
    const v128_t t = wasm_i32x4_shr(wasm_i32x4_shl(h, 16), 3);
    const v128_t bits = wasm_v128_and(t, wasm_i32x4_splat((int32_t)0x8fffe000));
    const v128_t f = wasm_f32x4_mul(bits, wasm_i32x4_splat(0x77800000)); /* * 2^112 */
    const v128_t infnan = wasm_i32x4_eq(wasm_v128_and(t, wasm_i32x4_splat(0x0f800000)), wasm_i32x4_splat(0x0f800000));
    return wasm_v128_bitselect(wasm_v128_or(bits, wasm_i32x4_splat(0x7f800000)), f, infnan);
}

BN_FN void load_f16x8(const uint8_t *p, vf32 *w) {
    const v128_t h = wasm_v128_load(p);
    w[0] = half4_to_f32(wasm_u32x4_extend_low_u16x8(h));
    w[1] = half4_to_f32(wasm_u32x4_extend_high_u16x8(h));
}

BN_FN vf32 zero_f32(void) { return wasm_f32x4_splat(0.0f); }
BN_FN vf32 load_f32(const float *x) { return wasm_v128_load(x); }
/* SIMD128 has no fused multiply-add: a product then a sum, two roundings */
BN_FN vf32 madd_f32(vf32 acc, vf32 w, vf32 x) { return wasm_f32x4_add(acc, wasm_f32x4_mul(w, x)); }
BN_FN float hsum_f32(vf32 a, vf32 b) {
    const v128_t s = wasm_f32x4_add(a, b);
    return (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) +
           (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
}

/* ---- attention: the dot products with K, the softmax and the weighted sum of V four lanes at a time ---- */

BN_FN v128_t k4(const bn_f16 *p) { return half4_to_f32(wasm_u32x4_load16x4(p)); }

BN_FN float hsum4(v128_t a) {
    return (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1)) +
           (wasm_f32x4_extract_lane(a, 2) + wasm_f32x4_extract_lane(a, 3));
}

/* e^x for x <= 0, 0 below -87.3: NEON's exp_neg4 (Cody-Waite reduction, Taylor to r^7) without fused
 * multiply-adds (n * ln2_hi is exact: n is a small integer and ln2_hi has 9 significant bits). No libm: this file
 * must stay freestanding. */
BN_FN v128_t exp_neg4(v128_t x) {
    const v128_t lo = wasm_f32x4_splat(BN_EXP_LO);
    const v128_t under = wasm_f32x4_lt(x, lo);
    x = wasm_f32x4_max(x, lo);
    const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(BN_EXP_LOG2E)));
    v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(BN_EXP_LN2_HI)));
    r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(BN_EXP_LN2_LO)));
    static const float c[8] = BN_EXP_TAYLOR;
    v128_t p = wasm_f32x4_splat(c[0]);
    for (int i = 1; i < 8; i++) p = wasm_f32x4_add(wasm_f32x4_splat(c[i]), wasm_f32x4_mul(p, r));
    const v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
    return wasm_v128_andnot(wasm_f32x4_mul(p, e), under);
}

/* bn_softmax with four exponentials at a time (the last partial four through a padded copy), sum in double */
BN_FN void softmax4(float *x, int64_t n, float *ml) {
    if (ml) ml[0] = -__builtin_inff(), ml[1] = 0.0f;
    const int64_t n4 = n & ~(int64_t)3;
    float tail[4];
    for (int j = 0; j < 4; j++) tail[j] = n4 + j < n ? x[n4 + j] : -__builtin_inff();
    v128_t vmax = wasm_v128_load(tail);
    for (int64_t i = 0; i < n4; i += 4) vmax = wasm_f32x4_max(vmax, wasm_v128_load(x + i));
    float mx = wasm_f32x4_extract_lane(vmax, 0);
    for (int j = 1; j < 4; j++) {
        const float m = j == 1 ? wasm_f32x4_extract_lane(vmax, 1)
                               : j == 2 ? wasm_f32x4_extract_lane(vmax, 2) : wasm_f32x4_extract_lane(vmax, 3);
        if (m > mx) mx = m;
    }
    if (mx == -__builtin_inff()) {   /* nothing attended: zeros, as bn_softmax */
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    v128_t sum = wasm_f64x2_splat(0.0);
    for (int64_t i = 0; i <= n4; i += 4) {
        float *p = i < n4 ? x + i : tail;
        const v128_t e = exp_neg4(wasm_f32x4_sub(wasm_v128_load(p), wasm_f32x4_splat(mx)));
        wasm_v128_store(p, e);
        sum = wasm_f64x2_add(sum, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(e),
                                                 wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(e, e, 2, 3, 0, 1))));
    }
    const double total = wasm_f64x2_extract_lane(sum, 0) + wasm_f64x2_extract_lane(sum, 1);
    const float inv = (float)(1.0 / total);
    for (int64_t i = 0; i < n4; i += 4)
        wasm_v128_store(x + i, wasm_f32x4_mul(wasm_v128_load(x + i), wasm_f32x4_splat(inv)));
    for (int64_t i = n4; i < n; i++) x[i] = tail[i - n4] * inv;
    if (ml) ml[0] = mx, ml[1] = (float)total;
}

/* Scores of positions [i, i + NP) for one query head: NP independent chains over the head's dims. */
BN_FN void att_scores(const float *q, const bn_f16 *k, int64_t kv_stride, int64_t i, int64_t head_dim,
                      float scale, float *scores, const int NP) {
    const int64_t hd4 = head_dim & ~(int64_t)3;
    v128_t acc[4];
    for (int j = 0; j < NP; j++) acc[j] = wasm_f32x4_splat(0.0f);
    for (int64_t d = 0; d < hd4; d += 4) {
        const v128_t qd = wasm_v128_load(q + d);
        for (int j = 0; j < NP; j++) acc[j] = madd_f32(acc[j], k4(k + (i + j) * kv_stride + d), qd);
    }
    for (int j = 0; j < NP; j++) {
        float s = hsum4(acc[j]);
        for (int64_t d = hd4; d < head_dim; d++) s += q[d] * bn_half_to_float(k[(i + j) * kv_stride + d]);
        scores[i + j] = s * scale;
    }
}

/* Dims [d, d + 4W) of the weighted sum of V: W accumulators, each one chain over the positions. */
BN_FN void att_values(const bn_f16 *v, int64_t kv_stride, int64_t n_kv, const float *scores, float *out,
                      int64_t d, const int W) {
    v128_t o[8];
    for (int j = 0; j < W; j++) o[j] = wasm_f32x4_splat(0.0f);
    for (int64_t p = 0; p < n_kv; p++) {
        const v128_t s = wasm_f32x4_splat(scores[p]);
        for (int j = 0; j < W; j++) o[j] = madd_f32(o[j], k4(v + p * kv_stride + d + 4 * j), s);
    }
    for (int j = 0; j < W; j++) wasm_v128_store(out + d + 4 * j, o[j]);
}

static void wasm_attention(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                           int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                           const void *ahead, int64_t ahead_bytes) {
    BN_MARK(BN_VARIANT, BN_K_ATTENTION);
    (void)ahead, (void)ahead_bytes;    /* WebAssembly has no prefetch instruction */
    for (int64_t h = 0; h < n_q; h++, q += head_dim, out += head_dim) {
        int64_t i = 0;
        for (; i + 4 <= n_kv; i += 4) att_scores(q, k, kv_stride, i, head_dim, scale, scores, 4);
        for (; i < n_kv; i++) att_scores(q, k, kv_stride, i, head_dim, scale, scores, 1);
        softmax4(scores, n_kv, ml ? ml + 2 * h : NULL);
        int64_t d = 0;
        for (; d + 32 <= head_dim; d += 32) att_values(v, kv_stride, n_kv, scores, out, d, 8);
        for (; d + 4 <= head_dim; d += 4) att_values(v, kv_stride, n_kv, scores, out, d, 1);
        for (; d < head_dim; d++) {
            float o = 0.0f;
            for (int64_t p = 0; p < n_kv; p++) o += scores[p] * bn_half_to_float(v[p * kv_stride + d]);
            out[d] = o;
        }
    }
}
#define BN_ATTENTION wasm_attention

#include "kernels_simd128_impl.h"

#else

const bn_kernels *bn_kernels_wasm(void) { return NULL; }

#endif
