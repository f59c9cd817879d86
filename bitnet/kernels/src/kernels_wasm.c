/* WebAssembly SIMD128 variant (Pyodide / emscripten builds): activation quantization, I2_S gemv/gemm and the
 * F16 matmul; the other entries are the scalar reference.
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

#define V BN_V_WASM
#define FN static inline __attribute__((always_inline))

static void wasm_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(V, BN_K_QUANTIZE_ACT);
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

/* ---- I2_S ---- */

/* p[2l + h] = codes (0..2, code 3 -> 1) of elements 32l + 16h .. +15 of the block. */
FN void i2s_planes(const uint8_t *blk, v128_t *p) {
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

FN v128_t dot16(v128_t acc, v128_t p, v128_t a) {
    const v128_t prod = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(p, a), wasm_i16x8_extmul_high_i8x16(p, a));
    return wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(prod));
}

FN v128_t block_dot(v128_t acc, const v128_t *p, const int8_t *a) {
    for (int j = 0; j < 8; j++) acc = dot16(acc, p[j], wasm_v128_load(a + 16 * j));
    return acc;
}

FN v128_t i2s_partial(v128_t acc, const v128_t *p, int64_t jlo, int64_t jhi, const int8_t *src) {
    int8_t tmp[BN_I2S_BLOCK];
    BN_MEMSET(tmp, 0, sizeof(tmp));
    BN_MEMCPY(tmp + jlo, src, (size_t)(jhi - jlo));
    return block_dot(acc, p, tmp);
}

FN int32_t hsum_i32(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

FN void i2s_tile(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q, const bn_qinfo *qi,
                 float wscale, float *y, int64_t ldy, const int NT) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t e0 = r * K;
        const uint8_t *blk = data + e0 / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES;
        const int64_t j0 = e0 % BN_I2S_BLOCK;
        v128_t acc[4], p[8];
        for (int t = 0; t < NT; t++) acc[t] = wasm_i32x4_splat(0);
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
        for (int t = 0; t < NT; t++) y[t * ldy + r] = bn_i2s_finish(hsum_i32(acc[t]), qi + t, wscale);
    }
}

static void wasm_i2s_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                          const int8_t *q, const bn_qinfo *qi, float wscale, float *y) {
    BN_MARK(V, BN_K_I2S_GEMV);
    i2s_tile(data, K, r0, r1, q, qi, wscale, y, 0, 1);
}

static void wasm_i2s_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                          const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_I2S_GEMM);
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 4);
    for (; t < T; t++) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 1);
}

/* ---- F16 weights x float activations ---- */

/* Four halves (u32 lanes holding 16-bit values) -> floats, exact for every input including subnormals,
 * infinities and NaN. */
FN v128_t half4_to_f32(v128_t h) {
    const v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
    v128_t f = wasm_f32x4_mul(mag, wasm_i32x4_splat(0x77800000)); /* * 2^112 rebias (and denormal fix) */
    const v128_t infnan = wasm_i32x4_eq(wasm_v128_and(h, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0x7c00));
    f = wasm_v128_bitselect(wasm_v128_or(mag, wasm_i32x4_splat(0x7f800000)), f, infnan);
    return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
}

FN void f16_tile(const uint8_t *data, int64_t K, int64_t r, const float *x, float *y, int64_t ldy, const int RB,
                 const int NT) {
    v128_t acc[4][4][2];
    const uint8_t *rows[4];
    for (int i = 0; i < RB; i++) {
        rows[i] = data + (r + i) * K * 2;
        for (int t = 0; t < NT; t++) acc[i][t][0] = acc[i][t][1] = wasm_f32x4_splat(0.0f);
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        v128_t w[4][2];
        for (int i = 0; i < RB; i++) {
            const v128_t h = wasm_v128_load(rows[i] + 2 * k);
            w[i][0] = half4_to_f32(wasm_u32x4_extend_low_u16x8(h));
            w[i][1] = half4_to_f32(wasm_u32x4_extend_high_u16x8(h));
        }
        for (int t = 0; t < NT; t++) {
            const v128_t x0 = wasm_v128_load(x + t * K + k), x1 = wasm_v128_load(x + t * K + k + 4);
            for (int i = 0; i < RB; i++) {
                acc[i][t][0] = wasm_f32x4_add(acc[i][t][0], wasm_f32x4_mul(w[i][0], x0));
                acc[i][t][1] = wasm_f32x4_add(acc[i][t][1], wasm_f32x4_mul(w[i][1], x1));
            }
        }
    }
    for (int i = 0; i < RB; i++)
        for (int t = 0; t < NT; t++) {
            const v128_t a = wasm_f32x4_add(acc[i][t][0], acc[i][t][1]);
            float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1)) +
                      (wasm_f32x4_extract_lane(a, 2) + wasm_f32x4_extract_lane(a, 3));
            for (int64_t kk = k; kk < K; kk++) s += bn_half_to_float(bn_load_u16(rows[i] + 2 * kk)) * x[t * K + kk];
            y[t * ldy + r + i] = s;
        }
}

static void wasm_f16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
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

static const bn_kernels wasm_table = {
    .variant = BN_V_WASM,
    .quantize_act = wasm_quantize_act,
    .i2s_gemv = wasm_i2s_gemv,
    .i2s_gemm = wasm_i2s_gemm,
    .tq2_gemv = bn_scalar_tq2_gemv,
    .tq2_gemm = bn_scalar_tq2_gemm,
    .tq1_gemv = bn_scalar_tq1_gemv,
    .tq1_gemm = bn_scalar_tq1_gemm,
    .f16_gemm = wasm_f16_gemm,
    .bf16_gemm = bn_scalar_bf16_gemm,
    .q80_gemm = bn_scalar_q80_gemm,
    .f32_gemm = bn_scalar_f32_gemm,
    .attention = bn_scalar_attention,
};

const bn_kernels *bn_kernels_wasm(void) { return &wasm_table; }

#else

const bn_kernels *bn_kernels_wasm(void) { return NULL; }

#endif
