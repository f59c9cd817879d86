/* WebAssembly SIMD128 variant (Pyodide / emscripten builds): activation quantization, I2_S gemv/gemm and the
 * F16 matmul (their loops shared with the NEON variant in kernels_simd128_impl.h); the other entries are the
 * scalar reference.
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
 * infinities and NaN. */
BN_FN v128_t half4_to_f32(v128_t h) {
    const v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
    v128_t f = wasm_f32x4_mul(mag, wasm_i32x4_splat(0x77800000)); /* * 2^112 rebias (and denormal fix) */
    const v128_t infnan = wasm_i32x4_eq(wasm_v128_and(h, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0x7c00));
    f = wasm_v128_bitselect(wasm_v128_or(mag, wasm_i32x4_splat(0x7f800000)), f, infnan);
    return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
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

#define BN_ATTENTION bn_scalar_attention /* not yet vectorized for SIMD128 (NEON's is in kernels_arm.c) */

#include "kernels_simd128_impl.h"

#else

const bn_kernels *bn_kernels_wasm(void) { return NULL; }

#endif
