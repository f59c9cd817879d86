/* The AMX-INT8 bodies of the multi-token matmuls, included by kernels_amx.c twice (a C "template"): once with the
 * real tile instructions and AVX-512 for the 16-lane steps (table "amx"), once with a C model of both (table
 * "amx-model", any CPU). The loop nest, the packing and the float finishing below are the same code in both, so
 * the model's tests check what the hardware runs, instruction models aside.
 *
 * The including file defines:
 *   BN_AMX_NAME(x)   prefixes the static names            BN_AMX_FN / BN_AMX_API   helper / entry attributes
 *   BN_AMX_VARIANT   enum bn_variant for the receipts     BN_AMX_BASE()            the table this one extends
 *   tiles:   T_CFG(cfg) T_RELEASE() T_ZERO(t) T_LOAD(t, p, stride) T_STORE(t, p, stride) T_DPBSSD(c, a, b)
 *            (tile numbers are literals: the real instructions encode them)
 *   16 lanes: bn_vi (int32) and bn_vf (float) with V_GATHER(base, stride, n) (lane i = the 4 bytes at base +
 *            i*stride for i < n, else 0), V_FIX3, V_PLANE(v, l), V_STORE, V_HALF(v) (low 16 bits as f16 ->
 *            float), F_LOADI (int32 -> float), F_LOAD, F_SET1, F_SUB, F_DIV, F_MUL, F_ADD, F_FMA (one rounding),
 *            F_FSTORE(p, v) and F_STORE(p, v, n) (lanes < n)
 *   BN_AMX_MIN_TOKENS  the fewest tokens that go to the tiles
 *
 * Tiles: tdpbssd C[m][n] += sum_k A[m][k] * B[k/4][4n + k%4], int8 x int8 into int32, no saturation.
 *  - A = activations, 16 tokens x 64 inputs, loaded straight from q (row stride K): no activation packing.
 *  - B = weights in the VNNI layout, 16 rows x 4 inputs per 64-byte tile row, expanded from the 2-bit I2_S codes
 *    (0..2, code 3 -> 1 as every variant reads it) once per call, for all of the call's rows and the whole K, and
 *    then reused by every tile of tokens.
 *  - So C[t][n] = sum code*q: the integer of the VNNI body's vpdpbusd(codes, q), exactly (|dot| < 3*128*K
 *    < 2^31 for K <= 2^20), and bn_i2s_finish's float steps on it give the same bits as every other variant.
 * Q8_0 head: the same with K = 32 per instruction (A 16 x 32 bytes, B 8 x 64), one C tile per block, because each
 * block's exact int32 dot enters its own fmaf in the order of kernels.h; the dot's float steps (d_w * d_x, fmaf
 * into lane b % 8, the fixed eight-lane sum) are those of the scalar reference.
 */
#define F(x) BN_AMX_NAME(x)

/* Tile numbers: four accumulators (2 token tiles x 2 row groups), two activation tiles, two weight tiles
 * (literals, not an enum: the instructions' macros paste them into the assembly). */
#ifndef BN_TC00
#define BN_TC00 0
#define BN_TC01 1
#define BN_TC10 2
#define BN_TC11 3
#define BN_TA0 4
#define BN_TA1 5
#define BN_TB0 6
#define BN_TB1 7
#endif

/* Palette 1: every tile of `rows` rows of `colsb` bytes, the A tiles `acolsb` bytes, the B tiles `brows` rows. */
BN_AMX_FN void F(config)(bn_amx_cfg *cfg, int acolsb, int brows) {
    BN_MEMSET(cfg, 0, sizeof(*cfg));
    cfg->palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg->rows[t] = t == BN_TB0 || t == BN_TB1 ? (uint8_t)brows : 16;
        cfg->colsb[t] = t == BN_TA0 || t == BN_TA1 ? (uint16_t)acolsb : 64;
    }
    T_CFG(cfg);
}

/* ---- I2_S ---- */

/* B tiles of rows [r, r + nr) (nr <= 16; missing rows are zero) for every 64-input step of K (K % 128 == 0):
 * tile s, row i, bytes 4n..4n+3 = the codes of row r+n for inputs 64s + 4i .. 64s + 4i + 3. Those four sit in
 * bytes 4(i%8)..4(i%8)+3 of the row's 32-byte block s/2, in plane l = 2(s%2) + i/8 (bits 7-2l..6-2l of each byte,
 * docs/formats.md §3): one gather of the same dword from the 16 rows serves the four planes. */
BN_AMX_FN void F(i2s_pack)(const uint8_t *data, int64_t K, int64_t r, int nr, uint8_t *tiles) {
    const int64_t rb = K / 4;
    for (int64_t b = 0; b < K / BN_I2S_BLOCK; b++)
        for (int d = 0; d < 8; d++) {
            const bn_vi v = V_FIX3(V_GATHER(data + r * rb + b * BN_I2S_BLOCK_BYTES + 4 * d, (int32_t)rb, nr));
            for (int l = 0; l < 4; l++)
                V_STORE(tiles + (2 * b + l / 2) * 1024 + (d + 8 * (l % 2)) * 64, V_PLANE(v, l));
        }
}

/* NA token tiles (activations at a[i], row stride K) x NB row groups (B tiles at b[j], 1 KB per step): the
 * exact integer dots into cbuf (tile i*2 + j, 16 tokens x 16 rows). */
BN_AMX_FN void F(i2s_kloop)(const int8_t *const *a, const uint8_t *const *b, int64_t K, int32_t *cbuf,
                            const int NA, const int NB) {
    T_ZERO(BN_TC00);
    if (NB > 1) T_ZERO(BN_TC01);
    if (NA > 1) T_ZERO(BN_TC10);
    if (NA > 1 && NB > 1) T_ZERO(BN_TC11);
    for (int64_t s = 0; s < K / 64; s++) {
        T_LOAD(BN_TA0, a[0] + 64 * s, K);
        if (NA > 1) T_LOAD(BN_TA1, a[1] + 64 * s, K);
        T_LOAD(BN_TB0, b[0] + 1024 * s, 64);
        if (NB > 1) T_LOAD(BN_TB1, b[1] + 1024 * s, 64);
        T_DPBSSD(BN_TC00, BN_TA0, BN_TB0);
        if (NB > 1) T_DPBSSD(BN_TC01, BN_TA0, BN_TB1);
        if (NA > 1) T_DPBSSD(BN_TC10, BN_TA1, BN_TB0);
        if (NA > 1 && NB > 1) T_DPBSSD(BN_TC11, BN_TA1, BN_TB1);
    }
    T_STORE(BN_TC00, cbuf, 64);
    if (NB > 1) T_STORE(BN_TC01, cbuf + 256, 64);
    if (NA > 1) T_STORE(BN_TC10, cbuf + 512, 64);
    if (NA > 1 && NB > 1) T_STORE(BN_TC11, cbuf + 768, 64);
}

/* Scratch of one call: the B tiles of its rows, the last partial tile of tokens (zero-padded: a tile load reads
 * 16 rows) and the accumulators as stored. */
BN_AMX_FN void F(i2s_amx)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                          const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy, uint8_t *scratch) {
    const int64_t groups = (r1 - r0 + 15) / 16, ttiles = (T + 15) / 16, tile_bytes = K / 64 * 1024;
    uint8_t *packed = scratch;
    int8_t *tail = (int8_t *)(packed + groups * tile_bytes);
    int32_t *cbuf = (int32_t *)(tail + 16 * K);
    for (int64_t g = 0; g < groups; g++) {
        const int64_t nr = r1 - r0 - 16 * g < 16 ? r1 - r0 - 16 * g : 16;
        F(i2s_pack)(data, K, r0 + 16 * g, (int)nr, packed + g * tile_bytes);
    }
    if (T % 16) {
        BN_MEMSET(tail, 0, (size_t)(16 * K));
        BN_MEMCPY(tail, q + (T - T % 16) * K, (size_t)(T % 16 * K));
    }
    bn_amx_cfg cfg;
    F(config)(&cfg, 64, 16);
    for (int64_t tt = 0; tt < ttiles; tt += 2) {
        const int NA = ttiles - tt >= 2 ? 2 : 1;
        const int8_t *a[2];
        for (int i = 0; i < NA; i++) a[i] = (tt + i + 1) * 16 <= T ? q + (tt + i) * 16 * K : tail;
        for (int64_t g = 0; g < groups; g += 2) {
            const int NB = groups - g >= 2 ? 2 : 1;
            const uint8_t *b[2] = {packed + g * tile_bytes, packed + (g + NB - 1) * tile_bytes};
            if (NA == 2 && NB == 2) F(i2s_kloop)(a, b, K, cbuf, 2, 2);
            else if (NA == 2) F(i2s_kloop)(a, b, K, cbuf, 2, 1);
            else if (NB == 2) F(i2s_kloop)(a, b, K, cbuf, 1, 2);
            else F(i2s_kloop)(a, b, K, cbuf, 1, 1);
            /* bn_i2s_finish, 16 rows at a time: ((float)dot - (float)sum) / s * wscale */
            const bn_vf vw = F_SET1(wscale);
            for (int i = 0; i < NA; i++)
                for (int j = 0; j < NB; j++) {
                    const int64_t row = r0 + 16 * (g + j);
                    const int nr = r1 - row < 16 ? (int)(r1 - row) : 16;
                    for (int64_t t = 16 * (tt + i); t < T && t < 16 * (tt + i + 1); t++) {
                        const bn_vf dots = F_LOADI(cbuf + 256 * (2 * i + j) + 16 * (t % 16));
                        const bn_vf v = F_DIV(F_SUB(dots, F_SET1((float)qi[t].sum)), F_SET1(qi[t].scale));
                        F_STORE(y + t * ldy + row, F_MUL(v, vw), nr);
                    }
                }
        }
    }
    T_RELEASE();
}

BN_AMX_API void F(i2s_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                            const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    /* rows inside blocks (K % 128 != 0, no real model) and short batches stay on the base body: below a tile
     * of tokens the tiles would multiply padding */
    uint8_t *scratch = NULL;
    if (K % BN_I2S_BLOCK == 0 && T >= BN_AMX_MIN_TOKENS && r1 > r0)
        scratch = bn_amx_scratch((size_t)((r1 - r0 + 15) / 16 * 16 * K + 16 * K + 4096));
    if (!scratch) {   /* also when the scratch cannot be allocated: the base body needs none */
        BN_AMX_BASE()->i2s_gemm(data, K, r0, r1, q, qi, T, wscale, y, ldy);
        return;
    }
    BN_MARK(BN_AMX_VARIANT, BN_K_I2S_GEMM);
    F(i2s_amx)(data, K, r0, r1, q, qi, T, wscale, y, ldy, scratch);
    bn_amx_scratch_done(scratch);
}

/* ---- Q8_0 weights x Q8 activations (the int8 LM head) ---- */

/* Rows [r, r + nr) of a Q8_0 matrix (nb blocks per row): per block b, a B tile of 8 rows x 64 bytes (row i,
 * bytes 4n..4n+3 = weights 4i..4i+3 of row r+n) at tiles + 512 b, and the 16 rows' d as floats at dw + 16 b. */
BN_AMX_FN void F(q8_pack)(const uint8_t *data, int64_t nb, int64_t r, int nr, uint8_t *tiles, float *dw) {
    const int64_t row_bytes = nb * BN_Q80_BLOCK_BYTES;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = data + r * row_bytes + b * BN_Q80_BLOCK_BYTES;
        for (int i = 0; i < 8; i++)
            V_STORE(tiles + 512 * b + 64 * i, V_GATHER(blk + 2 + 4 * i, (int32_t)row_bytes, nr));
        F_FSTORE(dw + 16 * b, V_HALF(V_GATHER(blk, (int32_t)row_bytes, nr)));
    }
}

/* One tile of tokens (activations at a, row stride K; scales xd[t * nb + b] for its nt tokens) x NB row groups:
 * acc[j][t][lane][n] collects, lane b % 8, fmaf(d_w * d_x, (float)isum_b, .) block after block. */
BN_AMX_FN void F(q8_kloop)(const int8_t *a, int64_t K, const uint8_t *const *tiles, const float *const *dw,
                           const float *xd, int nt, int32_t *cbuf, float *acc, const int NB) {
    const int64_t nb = K / BN_Q80_BLOCK;
    for (int64_t b = 0; b < nb; b++) {
        T_ZERO(BN_TC00);
        if (NB > 1) T_ZERO(BN_TC01);
        T_LOAD(BN_TA0, a + BN_Q80_BLOCK * b, K);
        T_LOAD(BN_TB0, tiles[0] + 512 * b, 64);
        if (NB > 1) T_LOAD(BN_TB1, tiles[1] + 512 * b, 64);
        T_DPBSSD(BN_TC00, BN_TA0, BN_TB0);
        if (NB > 1) T_DPBSSD(BN_TC01, BN_TA0, BN_TB1);
        T_STORE(BN_TC00, cbuf, 64);
        if (NB > 1) T_STORE(BN_TC01, cbuf + 256, 64);
        for (int j = 0; j < NB; j++) {
            const bn_vf d = F_LOAD(dw[j] + 16 * b);
            for (int t = 0; t < nt; t++) {
                float *lane = acc + ((j * 16 + t) * 8 + b % 8) * 16;
                const bn_vf s = F_MUL(d, F_SET1(xd[t * nb + b]));
                F_FSTORE(lane, F_FMA(s, F_LOADI(cbuf + 256 * j + 16 * t), F_LOAD(lane)));
            }
        }
    }
}

BN_AMX_FN void F(q8_amx)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *xq, const float *xd,
                         int64_t T, float *y, int64_t ldy, uint8_t *scratch) {
    const int64_t nb = K / BN_Q80_BLOCK, groups = (r1 - r0 + 15) / 16;
    const int64_t tile_bytes = nb * 512, d_bytes = nb * 64;
    uint8_t *packed = scratch;
    float *dw = (float *)(packed + groups * tile_bytes);
    int8_t *tail = (int8_t *)((uint8_t *)dw + groups * d_bytes);
    int32_t *cbuf = (int32_t *)(tail + 16 * K);
    float *acc = (float *)(cbuf + 512);   /* [2 groups][16 tokens][8 lanes][16 rows] */
    for (int64_t g = 0; g < groups; g++) {
        const int64_t nr = r1 - r0 - 16 * g < 16 ? r1 - r0 - 16 * g : 16;
        F(q8_pack)(data, nb, r0 + 16 * g, (int)nr, packed + g * tile_bytes, (float *)((uint8_t *)dw + g * d_bytes));
    }
    if (T % 16) {
        BN_MEMSET(tail, 0, (size_t)(16 * K));
        BN_MEMCPY(tail, xq + (T - T % 16) * K, (size_t)(T % 16 * K));
    }
    bn_amx_cfg cfg;
    F(config)(&cfg, BN_Q80_BLOCK, BN_Q80_BLOCK / 4);
    for (int64_t t0 = 0; t0 < T; t0 += 16) {
        const int nt = T - t0 < 16 ? (int)(T - t0) : 16;
        const int8_t *a = nt == 16 ? xq + t0 * K : tail;
        for (int64_t g = 0; g < groups; g += 2) {
            const int NB = groups - g >= 2 ? 2 : 1;
            const uint8_t *tiles[2] = {packed + g * tile_bytes, packed + (g + NB - 1) * tile_bytes};
            const float *dws[2] = {(float *)((uint8_t *)dw + g * d_bytes),
                                   (float *)((uint8_t *)dw + (g + NB - 1) * d_bytes)};
            BN_MEMSET(acc, 0, (size_t)NB * 16 * 8 * 16 * sizeof(float));
            if (NB == 2) F(q8_kloop)(a, K, tiles, dws, xd + t0 * nb, nt, cbuf, acc, 2);
            else F(q8_kloop)(a, K, tiles, dws, xd + t0 * nb, nt, cbuf, acc, 1);
            for (int j = 0; j < NB; j++) {
                const int64_t row = r0 + 16 * (g + j);
                const int nr = r1 - row < 16 ? (int)(r1 - row) : 16;
                for (int t = 0; t < nt; t++) {   /* bn_sum8_lanes, 16 rows at a time */
                    const float *l = acc + (j * 16 + t) * 8 * 16;
                    const bn_vf s = F_ADD(F_ADD(F_ADD(F_LOAD(l), F_LOAD(l + 64)), F_ADD(F_LOAD(l + 32), F_LOAD(l + 96))),
                                          F_ADD(F_ADD(F_LOAD(l + 16), F_LOAD(l + 80)),
                                                F_ADD(F_LOAD(l + 48), F_LOAD(l + 112))));
                    F_STORE(y + (t0 + t) * ldy + row, s, nr);
                }
            }
        }
    }
    T_RELEASE();
}

BN_AMX_API void F(q80_q8_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *xq,
                               const float *xd, int64_t T, float *y, int64_t ldy) {
    uint8_t *scratch = NULL;
    if (T >= BN_AMX_MIN_TOKENS && r1 > r0) {
        const int64_t groups = (r1 - r0 + 15) / 16, nb = K / BN_Q80_BLOCK;
        scratch = bn_amx_scratch((size_t)(groups * nb * (512 + 64) + 16 * K + 2048 + 2 * 16 * 8 * 16 * 4));
    }
    if (!scratch) {
        BN_AMX_BASE()->q80_q8_gemm(data, K, r0, r1, xq, xd, T, y, ldy);
        return;
    }
    BN_MARK(BN_AMX_VARIANT, BN_K_Q80Q8_GEMM);
    F(q8_amx)(data, K, r0, r1, xq, xd, T, y, ldy, scratch);
    bn_amx_scratch_done(scratch);
}

/* The base table with the two multi-token entries replaced; built on first use, as dispatch.c's features
 * (every writer stores the same values). */
const bn_kernels *BN_AMX_GETTER(void) {
    static bn_kernels table;
    static volatile int ready = 0;
    if (!ready) {
        bn_kernels t = *BN_AMX_BASE();
        t.variant = BN_AMX_VARIANT;
        t.i2s_gemm = F(i2s_gemm);
        t.q80_q8_gemm = F(q80_q8_gemm);
        table = t;
        ready = 1;
    }
    return &table;
}

#undef F
