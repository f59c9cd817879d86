/* Body shared by the 128-bit SIMD variants (aarch64 NEON, WebAssembly SIMD128), included once by kernels_arm.c
 * and kernels_wasm.c: the I2_S gemv/gemm, the F16 and F32 matmuls and the table. A C "template", as kernels_x86_impl.h
 * is for the x86 variants. Freestanding, like the files that include it.
 *
 * The including file defines:
 *   BN_NAME(x)   prefixes the variant's entry points                 (neon_x / wasm_x)
 *   BN_FN        static always-inline
 *   BN_VARIANT   enum bn_variant of the table
 *   BN_GETTER    name of the exported table getter
 *   BN_ATTENTION the table's attention entry (NEON's own, or the scalar reference for wasm)
 *   vi8, vi32, vf32   the vector types: 16 x int8, 4 x int32, 4 x float
 * and these primitives (with the variant's own quantize_act, BN_NAME(quantize_act)):
 *   i2s_planes(blk, p)         the eight 16-byte plane halves of an I2_S block: p[2l + h] = codes (0..2, code 3
 *                              read as 1) of elements 32l + 16h .. +15
 *   load_i8(a)                 16 int8 activations
 *   dot16(acc, p, a)           acc + the 16 products p*a (codes 0..2 by int8) into its four int32 lanes; no
 *                              intermediate may hold more than two products (int16 bound, see the variants)
 *   zero_i32(), hsum_i32(v)
 *   load_f16x8(p, w)           8 halves at p (any alignment) as two float vectors w[0], w[1], exactly
 *   zero_f32(), load_f32(x), madd_f32(acc, w, x) = acc + w*x, hsum_f32(v)
 */

/* ---- I2_S ---- */

/* 128 codes against 128 contiguous activations. */
BN_FN vi32 block_dot(vi32 acc, const vi8 *p, const int8_t *a) {
    for (int j = 0; j < 8; j++) acc = dot16(acc, p[j], load_i8(a + 16 * j));
    return acc;
}

/* Block elements [jlo, jhi) against src[0 .. jhi-jlo): a row that starts or ends inside a block. The other
 * elements of the block belong to the neighbouring rows; zero activations cancel them. */
BN_FN vi32 i2s_partial(vi32 acc, const vi8 *p, int64_t jlo, int64_t jhi, const int8_t *src) {
    int8_t tmp[BN_I2S_BLOCK];
    BN_MEMSET(tmp, 0, sizeof(tmp));
    BN_MEMCPY(tmp + jlo, src, (size_t)(jhi - jlo));
    return block_dot(acc, p, tmp);
}

/* Rows [r0, r1) for NT (1..4) tokens whose activations are q + t*K; each block is decoded once per row. */
BN_FN void i2s_tile(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q, const bn_qinfo *qi,
                    float wscale, float *y, int64_t ldy, const int NT) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t e0 = r * K;
        const uint8_t *blk = data + e0 / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES;
        const int64_t j0 = e0 % BN_I2S_BLOCK;
        vi32 acc[4];
        vi8 p[8];
        for (int t = 0; t < NT; t++) acc[t] = zero_i32();
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

static void BN_NAME(i2s_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                              const int8_t *q, const bn_qinfo *qi, float wscale, float *y) {
    BN_MARK(BN_VARIANT, BN_K_I2S_GEMV);
    i2s_tile(data, K, r0, r1, q, qi, wscale, y, 0, 1);
}

static void BN_NAME(i2s_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                              const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MARK(BN_VARIANT, BN_K_I2S_GEMM);
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 4);
    for (; t < T; t++) i2s_tile(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 1);
}

/* ---- F16 or F32 weights x float activations: RB rows x NT tokens, 8 elements per step. One loop for both
 * (F32: the width of the weights; the compiler specializes each caller): an F32 copy of F16 weights gives
 * bit-identical results, only without widening each half on every use. ---- */

BN_FN void load_w8(const uint8_t *p, vf32 *w, const int F32) {
    if (F32) {
        w[0] = load_f32((const float *)p);
        w[1] = load_f32((const float *)p + 4);
    } else {
        load_f16x8(p, w);
    }
}

BN_FN float load_w1(const uint8_t *p, const int F32) {
    if (F32) {
        float f;
        BN_MEMCPY(&f, p, 4);
        return f;
    }
    return bn_half_to_float(bn_load_u16(p));
}

BN_FN void float_tile(const uint8_t *data, int64_t K, int64_t r, const float *x, float *y, int64_t ldy,
                      const int RB, const int NT, const int F32) {
    const int64_t es = F32 ? 4 : 2;   /* bytes per weight */
    vf32 acc[4][4][2];
    const uint8_t *rows[4];
    for (int i = 0; i < RB; i++) {
        rows[i] = data + (r + i) * K * es;
        for (int t = 0; t < NT; t++) acc[i][t][0] = acc[i][t][1] = zero_f32();
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        vf32 w[4][2];
        for (int i = 0; i < RB; i++) load_w8(rows[i] + es * k, w[i], F32);
        for (int t = 0; t < NT; t++) {
            const vf32 x0 = load_f32(x + t * K + k), x1 = load_f32(x + t * K + k + 4);
            for (int i = 0; i < RB; i++) {
                acc[i][t][0] = madd_f32(acc[i][t][0], w[i][0], x0);
                acc[i][t][1] = madd_f32(acc[i][t][1], w[i][1], x1);
            }
        }
    }
    for (int i = 0; i < RB; i++)
        for (int t = 0; t < NT; t++) {
            float s = hsum_f32(acc[i][t][0], acc[i][t][1]);
            for (int64_t kk = k; kk < K; kk++) s += load_w1(rows[i] + es * kk, F32) * x[t * K + kk];
            y[t * ldy + r + i] = s;
        }
}

BN_FN void float_rows(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, float *y,
                      int64_t ldy, const int NT, const int F32) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) float_tile(data, K, r, x, y, ldy, 4, NT, F32);
    for (; r < r1; r++) float_tile(data, K, r, x, y, ldy, 1, NT, F32);
}

BN_FN void float_gemm(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                      float *y, int64_t ldy, const int F32) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) float_rows(data, K, r0, r1, x + t * K, y + t * ldy, ldy, 2, F32);
    if (t < T) float_rows(data, K, r0, r1, x + t * K, y + t * ldy, ldy, 1, F32);
}

static void BN_NAME(f16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                              float *y, int64_t ldy) {
    BN_MARK(BN_VARIANT, T == 1 ? BN_K_F16_GEMV : BN_K_F16_GEMM);
    float_gemm(data, K, r0, r1, x, T, y, ldy, 0);
}

static void BN_NAME(f32_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                              float *y, int64_t ldy) {
    BN_MARK(BN_VARIANT, T == 1 ? BN_K_F32_GEMV : BN_K_F32_GEMM);
    float_gemm(data, K, r0, r1, x, T, y, ldy, 1);
}

static const bn_kernels BN_NAME(table) = {
    .variant = BN_VARIANT,
    .quantize_act = BN_NAME(quantize_act),
    .i2s_gemv = BN_NAME(i2s_gemv),
    .i2s_gemm = BN_NAME(i2s_gemm),
    .tq2_gemv = bn_scalar_tq2_gemv,
    .tq2_gemm = bn_scalar_tq2_gemm,
    .tq1_gemv = bn_scalar_tq1_gemv,
    .tq1_gemm = bn_scalar_tq1_gemm,
    .f16_gemm = BN_NAME(f16_gemm),
    .bf16_gemm = bn_scalar_bf16_gemm,
    .q80_gemm = bn_scalar_q80_gemm,
    .f32_gemm = BN_NAME(f32_gemm),
    .q80_q8_gemm = bn_scalar_q80_q8_gemm,
    .lut_tables = bn_lut_tables,
    .i2l_gemv = bn_scalar_i2l_gemv,
    .i2l_gemm = bn_scalar_i2l_gemm,
    .attention = BN_ATTENTION,
    .attention_q8 = bn_scalar_attention_q8,   /* the opt-in 8-bit cache: the reference only */
};

const bn_kernels *BN_GETTER(void) { return &BN_NAME(table); }
