/* The LUT form of an I2_S weight (layout in kernels.h): packing at load, the per-token tables, and the scalar
 * reference of its matmul, which the SIMD variants match bit for bit. Portable C. */
#include "kernels_internal.h"

#define V BN_V_SCALAR
#define STEP_INPUTS 4   /* inputs per step: two pairs, one nibble each */

static int64_t steps(int64_t K) { return (K + STEP_INPUTS - 1) / STEP_INPUTS; }

/* Code (0..2) of flat element e of an I2_S tensor (docs/formats.md §3), code 3 read as 1. */
static inline uint8_t i2s_code(const uint8_t *data, int64_t e) {
    const int64_t j = e % BN_I2S_BLOCK;
    const uint8_t c = (data[e / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES + j % 32] >> (6 - 2 * (j / 32))) & 3;
    return c == 3 ? 1 : c;
}

/* Every 2-bit field of a byte with code 3 replaced by 1. */
static uint8_t fix3(uint8_t b) {
    for (int s = 0; s < 8; s += 2)
        if (((b >> s) & 3) == 3) b = (uint8_t)(b & ~(2 << s));
    return b;
}

/* The packed byte of row r for inputs k..k+3. When those four are inside one I2_S block and plane (the row
 * starts on a multiple of 4 and K % 4 == 0: every real model), they are four neighbouring bytes at one shift. */
static inline uint8_t packed_byte(const uint8_t *i2s, int64_t K, int64_t M, int64_t r, int64_t k,
                                  const uint8_t *fix) {
    if (r >= M) return 0x55; /* padding rows: weight 0 */
    const int64_t e = r * K + k;
    if (K % STEP_INPUTS == 0 && e % STEP_INPUTS == 0) {
        const int64_t j = e % BN_I2S_BLOCK;
        const uint8_t *b = i2s + e / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES + j % 32;
        const int s = 6 - 2 * (int)(j / 32);
        return fix[(((b[0] >> s) & 3) << 6) | (((b[1] >> s) & 3) << 4) | (((b[2] >> s) & 3) << 2) | ((b[3] >> s) & 3)];
    }
    uint8_t out = 0;
    for (int i = 0; i < STEP_INPUTS; i++) out = (uint8_t)(out << 2 | (k + i < K ? i2s_code(i2s, e + i) : 1));
    return out;
}

void bn_lut_pack(const uint8_t *i2s, int64_t K, int64_t M, int64_t r0, int64_t r1, uint8_t *out) {
    uint8_t fix[256];
    for (int b = 0; b < 256; b++) fix[b] = fix3((uint8_t)b);
    const int64_t S = steps(K);
    for (int64_t t = r0 / BN_LUT_ROWS; t * BN_LUT_ROWS < r1; t++) {
        uint8_t *tile = out + t * S * BN_LUT_ROWS;
        for (int64_t lane = 0; lane < BN_LUT_ROWS; lane++) {
            const int64_t r = t * BN_LUT_ROWS + lane;
            for (int64_t j = 0; j < S; j++) tile[j * BN_LUT_ROWS + lane] = packed_byte(i2s, K, M, r, 4 * j, fix);
        }
    }
}

void bn_lut_tables(const int8_t *q, int64_t K, int8_t *tables) {
    const int64_t pairs = 2 * steps(K);
    for (int64_t p = 0; p < pairs; p++) {
        const int32_t a0 = 2 * p < K ? q[2 * p] : 0, a1 = 2 * p + 1 < K ? q[2 * p + 1] : 0;
        int8_t *hi = tables + p * BN_LUT_PAIR_BYTES, *lo = hi + 16;
        BN_MEMSET(hi, 0, BN_LUT_PAIR_BYTES);
        for (int32_t c0 = 0; c0 < 3; c0++)
            for (int32_t c1 = 0; c1 < 3; c1++) {
                const int32_t v = (c0 - 1) * a0 + (c1 - 1) * a1;
                hi[c0 << 2 | c1] = (int8_t)(v >> 5);   /* arithmetic shift: floor(v / 32) */
                lo[c0 << 2 | c1] = (int8_t)(v & 31);
            }
    }
}

/* One row's exact dot sum(c*q) from its packed bytes and the token's tables. */
static int32_t lut_row_dot(const uint8_t *lut, int64_t K, int64_t r, const int8_t *tab, const bn_qinfo *qi) {
    const int64_t S = steps(K);
    const uint8_t *b = lut + r / BN_LUT_ROWS * S * BN_LUT_ROWS + r % BN_LUT_ROWS;
    int32_t dot = qi->sum;
    for (int64_t j = 0; j < S; j++, b += BN_LUT_ROWS) {
        const int8_t *p0 = tab + 2 * j * BN_LUT_PAIR_BYTES, *p1 = p0 + BN_LUT_PAIR_BYTES;
        const int h = *b >> 4, l = *b & 15;
        dot += 32 * (p0[h] + p1[l]) + p0[16 + h] + p1[16 + l];
    }
    return dot;
}

void bn_scalar_i2l_gemv(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *tables, const bn_qinfo *qi, float wscale, float *y) {
    BN_MARK(V, BN_K_I2L_GEMV);
    for (int64_t r = r0; r < r1; r++) y[r] = bn_i2s_finish(lut_row_dot(lut, K, r, tables, qi), qi, wscale);
}

void bn_scalar_i2l_gemm(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *tables, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_I2L_GEMM);
    const int64_t tb = bn_lut_table_bytes(K);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++)
            y[t * ldy + r] = bn_i2s_finish(lut_row_dot(lut, K, r, tables + t * tb, qi + t), qi + t, wscale);
}
