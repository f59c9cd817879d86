/* Scalar reference of every kernel in the bn_kernels table.
 *
 * Written to be obviously correct rather than fast: each loop follows docs/formats.md §3/§4 literally. The SIMD
 * variants are tested against these functions (integer parts bit-exact, float parts to a tight tolerance).
 *
 * Overflow: a ternary dot accumulates code*q with code in 0..2 (TQ2_0 also admits 3) and q in [-128, 127], so a
 * row of K elements stays within 3*128*K; K <= 2^20 keeps that below 2^29, well inside int32.
 */
#include <math.h>

#include "kernels_internal.h"

#define V BN_V_SCALAR

void bn_scalar_quantize_act(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(V, BN_K_QUANTIZE_ACT);
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    const float s = bn_act_scale(amax);
    int32_t sum = 0;
    for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * s); /* round half to even under the default rounding mode */
        if (v > 127.0f) v = 127.0f;
        if (!(v >= -128.0f)) v = -128.0f; /* NaN too: converting it to an integer is undefined in C; x86 gives -128 */
        q[i] = (int8_t)v;
        sum += q[i];
    }
    info->scale = s;
    info->sum = sum;
}

/* ---- I2_S ---- */

/* Code of flat element e (0..2; the never-written code 3 decodes as 0, i.e. like code 1): block e/128,
 * byte 32*block + j%32 and shift 6 - 2*(j/32) for j = e%128 (written with shifts: e is never negative). */
static inline int32_t i2s_code(const uint8_t *data, uint64_t e) {
    const uint64_t block = e >> 7, j = e & 127;
    const int32_t c = (data[block * BN_I2S_BLOCK_BYTES + (j & 31)] >> (6 - 2 * (j >> 5))) & 3;
    return c - 2 * (c >> 1 & c & 1); /* 3 -> 1, branch-free (a test feeds random codes, 3 included) */
}

static int32_t i2s_row_dot(const uint8_t *data, int64_t K, int64_t r, const int8_t *q) {
    int32_t dot = 0;
    for (int64_t k = 0; k < K; k++) dot += i2s_code(data, (uint64_t)(r * K + k)) * q[k];
    return dot;
}

void bn_scalar_i2s_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float wscale, float *y) {
    BN_MARK(V, BN_K_I2S_GEMV);
    for (int64_t r = r0; r < r1; r++) y[r] = bn_i2s_finish(i2s_row_dot(data, K, r, q), qi, wscale);
}

void bn_scalar_i2s_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_I2S_GEMM);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++)
            y[t * ldy + r] = bn_i2s_finish(i2s_row_dot(data, K, r, q + t * K), qi + t, wscale);
}

/* ---- TQ2_0 / TQ1_0: y = sum over blocks, in order, of d_b * (dot_b - sumq_b), then / s ---- */

static float tq2_row(const uint8_t *row, int64_t K, const int8_t *q, const bn_qinfo *qi) {
    float acc = 0.0f;
    for (int64_t b = 0; b < K / BN_TQ_BLOCK; b++) {
        const uint8_t *blk = row + b * BN_TQ2_BLOCK_BYTES;
        const int8_t *qb = q + b * BN_TQ_BLOCK;
        int32_t dot = 0, sumq = 0;
        for (int j = 0; j < BN_TQ_BLOCK; j++) {
            const int h = j / 128, l = (j % 128) / 32, m = j % 32;
            dot += ((blk[32 * h + m] >> (2 * l)) & 3) * qb[j];
            sumq += qb[j];
        }
        acc = bn_tq_accumulate(acc, bn_half_to_float(bn_load_u16(blk + 64)), dot - sumq);
    }
    return acc / qi->scale;
}

static float tq1_row(const uint8_t *row, int64_t K, const int8_t *q, const bn_qinfo *qi) {
    float acc = 0.0f;
    uint8_t codes[BN_TQ_BLOCK];
    for (int64_t b = 0; b < K / BN_TQ_BLOCK; b++) {
        const uint8_t *blk = row + b * BN_TQ1_BLOCK_BYTES;
        const int8_t *qb = q + b * BN_TQ_BLOCK;
        bn_tq1_decode_block(blk, codes);
        int32_t dot = 0, sumq = 0;
        for (int j = 0; j < BN_TQ_BLOCK; j++) {
            dot += codes[j] * qb[j];
            sumq += qb[j];
        }
        acc = bn_tq_accumulate(acc, bn_half_to_float(bn_load_u16(blk + 52)), dot - sumq);
    }
    return acc / qi->scale;
}

void bn_scalar_tq2_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float *y) {
    BN_MARK(V, BN_K_TQ2_GEMV);
    const int64_t row_bytes = K / BN_TQ_BLOCK * BN_TQ2_BLOCK_BYTES;
    for (int64_t r = r0; r < r1; r++) y[r] = tq2_row(data + r * row_bytes, K, q, qi);
}

void bn_scalar_tq2_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_TQ2_GEMM);
    const int64_t row_bytes = K / BN_TQ_BLOCK * BN_TQ2_BLOCK_BYTES;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) y[t * ldy + r] = tq2_row(data + r * row_bytes, K, q + t * K, qi + t);
}

void bn_scalar_tq1_gemv(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float *y) {
    BN_MARK(V, BN_K_TQ1_GEMV);
    const int64_t row_bytes = K / BN_TQ_BLOCK * BN_TQ1_BLOCK_BYTES;
    for (int64_t r = r0; r < r1; r++) y[r] = tq1_row(data + r * row_bytes, K, q, qi);
}

void bn_scalar_tq1_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, BN_K_TQ1_GEMM);
    const int64_t row_bytes = K / BN_TQ_BLOCK * BN_TQ1_BLOCK_BYTES;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) y[t * ldy + r] = tq1_row(data + r * row_bytes, K, q + t * K, qi + t);
}

/* ---- float-activation matmuls: one float accumulator per output, elements in order ---- */

void bn_scalar_f16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_F16_GEMV : BN_K_F16_GEMM);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = data + r * K * 2;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += bn_half_to_float(bn_load_u16(row + 2 * k)) * x[t * K + k];
            y[t * ldy + r] = acc;
        }
}

void bn_scalar_bf16_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_BF16_GEMV : BN_K_BF16_GEMM);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = data + r * K * 2;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += bn_bf16_to_float(bn_load_u16(row + 2 * k)) * x[t * K + k];
            y[t * ldy + r] = acc;
        }
}

void bn_scalar_f32_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_F32_GEMV : BN_K_F32_GEMM);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = data + r * K * 4;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc += bn_load_f32(row + 4 * k) * x[t * K + k];
            y[t * ldy + r] = acc;
        }
}

/* Q8_0: per block, the float dot of the int8 values with x, scaled by the block's d. */
void bn_scalar_q80_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const float *x, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_Q80_GEMV : BN_K_Q80_GEMM);
    const int64_t nb = K / BN_Q80_BLOCK;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = data + r * nb * BN_Q80_BLOCK_BYTES;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * BN_Q80_BLOCK_BYTES;
                const int8_t *qs = (const int8_t *)(blk + 2);
                const float *xb = x + t * K + b * BN_Q80_BLOCK;
                float s = 0.0f;
                for (int j = 0; j < BN_Q80_BLOCK; j++) s += (float)qs[j] * xb[j];
                acc += bn_half_to_float(bn_load_u16(blk)) * s;
            }
            y[t * ldy + r] = acc;
        }
}

/* Q8_0 x Q8: the reference of the lane order in kernels.h. */
void bn_scalar_q80_q8_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                           const int8_t *xq, const float *xd, int64_t T, float *y, int64_t ldy) {
    BN_MARK(V, T == 1 ? BN_K_Q80Q8_GEMV : BN_K_Q80Q8_GEMM);
    const int64_t nb = K / BN_Q80_BLOCK;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = data + r * nb * BN_Q80_BLOCK_BYTES;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * BN_Q80_BLOCK_BYTES;
                const int8_t *w = (const int8_t *)(blk + 2), *a = xq + t * K + b * BN_Q80_BLOCK;
                int32_t isum = 0;
                for (int j = 0; j < BN_Q80_BLOCK; j++) isum += (int32_t)w[j] * (int32_t)a[j];
                const float s = bn_half_to_float(bn_load_u16(blk)) * xd[t * nb + b];
                acc[b % 8] = __builtin_fmaf(s, (float)isum, acc[b % 8]);
            }
            y[t * ldy + r] = bn_sum8_lanes(acc);
        }
}

/* ---- attention, one query head after another: scores, softmax (ops.c), weighted sum of V ---- */

/* Element d of a K/V row: f16, or Q8_0 blocks (d * q in float) */
static float kv_f16(const void *row, int64_t d) { return bn_half_to_float(((const bn_f16 *)row)[d]); }
static float kv_q8(const void *row, int64_t d) {
    const uint8_t *blk = (const uint8_t *)row + d / BN_Q80_BLOCK * BN_Q80_BLOCK_BYTES;
    return bn_half_to_float(bn_load_u16(blk)) * (float)((const int8_t *)blk)[2 + d % BN_Q80_BLOCK];
}

static void attention_ref(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                          int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                          float (*elem)(const void *, int64_t)) {
    for (int64_t h = 0; h < n_q; h++, q += head_dim, out += head_dim) {
        for (int64_t i = 0; i < n_kv; i++) {
            float dot = 0.0f;
            for (int64_t d = 0; d < head_dim; d++) dot += q[d] * elem(k + i * row_bytes, d);
            scores[i] = dot * scale;
        }
        bn_softmax_ml(scores, n_kv, ml ? ml + 2 * h : NULL);
        for (int64_t d = 0; d < head_dim; d++) out[d] = 0.0f;
        for (int64_t i = 0; i < n_kv; i++)
            for (int64_t d = 0; d < head_dim; d++) out[d] += scores[i] * elem(v + i * row_bytes, d);
    }
}

void bn_scalar_attention(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                         int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                         const void *ahead, int64_t ahead_bytes) {
    BN_MARK(V, BN_K_ATTENTION);
    (void)ahead, (void)ahead_bytes;    /* the reference fetches nothing ahead */
    attention_ref(q, n_q, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim, scale, scores, out,
                  ml, kv_f16);
}

void bn_scalar_attention_q8(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                            int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                            const void *ahead, int64_t ahead_bytes) {
    BN_MARK(V, BN_K_ATTENTION_Q8);
    (void)ahead, (void)ahead_bytes;
    attention_ref(q, n_q, k, v, row_bytes, n_kv, head_dim, scale, scores, out, ml, kv_q8);
}

static const bn_kernels scalar_table = {
    .variant = BN_V_SCALAR,
    .quantize_act = bn_scalar_quantize_act,
    .i2s_gemv = bn_scalar_i2s_gemv,
    .i2s_gemm = bn_scalar_i2s_gemm,
    .tq2_gemv = bn_scalar_tq2_gemv,
    .tq2_gemm = bn_scalar_tq2_gemm,
    .tq1_gemv = bn_scalar_tq1_gemv,
    .tq1_gemm = bn_scalar_tq1_gemm,
    .f16_gemm = bn_scalar_f16_gemm,
    .bf16_gemm = bn_scalar_bf16_gemm,
    .q80_gemm = bn_scalar_q80_gemm,
    .f32_gemm = bn_scalar_f32_gemm,
    .q80_q8_gemm = bn_scalar_q80_q8_gemm,
    .lut_tables = bn_lut_tables,
    .i2l_gemv = bn_scalar_i2l_gemv,
    .i2l_gemm = bn_scalar_i2l_gemm,
    .attention = bn_scalar_attention,
    .attention_q8 = bn_scalar_attention_q8,
};

const bn_kernels *bn_kernels_scalar(void) { return &scalar_table; }
