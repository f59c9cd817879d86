/* The kernel contract: every ISA variant fills one bn_kernels table with the same signatures.
 *
 * Numerics follow docs/formats.md §3: activations are quantized per token to int8 with
 * s = 127 / max(1e-5, max|x|), q = round_half_even(x*s) clamped to [-128, 127]; a ternary row dot is the exact
 * integer sum of code*q (codes 0/1/2, i.e. ternary+1), and y = ((float)dot - (float)sum_q) / s * scale.
 * Integer accumulation never wraps (the reference's int16 accumulator can; ours must not).
 *
 * All functions are pure C, thread-safe and callable without the GIL. Row-range arguments [r0, r1) let the
 * caller split output rows across OpenMP threads.
 */
#ifndef BITNET_KERNELS_H
#define BITNET_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t bn_f16;

/* Quantization of one token's activations. */
typedef struct {
    float scale;   /* s = 127 / amax */
    int32_t sum;   /* sum of the int8 values */
} bn_qinfo;

/* Identifiers of kernels that record that they ran (for receipts). */
enum bn_kernel_id {
    BN_K_QUANTIZE_ACT = 0,
    BN_K_I2S_GEMV, BN_K_I2S_GEMM,
    BN_K_TQ2_GEMV, BN_K_TQ2_GEMM,
    BN_K_TQ1_GEMV, BN_K_TQ1_GEMM,
    BN_K_F16_GEMV, BN_K_F16_GEMM,
    BN_K_BF16_GEMV, BN_K_BF16_GEMM,
    BN_K_Q80_GEMV, BN_K_Q80_GEMM,
    BN_K_F32_GEMV, BN_K_F32_GEMM,
    BN_K_ATTENTION,
    BN_K_Q80Q8_GEMV, BN_K_Q80Q8_GEMM,
    BN_K_I2L_GEMV, BN_K_I2L_GEMM,
    BN_K_ATTENTION_Q8,
    BN_K_COUNT
};

/* BN_V_AMX: the AVX-512 table with its multi-token ternary (I2_S) and Q8_0-head matmuls on AMX-INT8 tiles.
 * BN_V_AMX_MODEL: the scalar table with the same two AMX bodies compiled against a C model of the tile
 * instructions (kernels_amx.c): never chosen by itself, it lets every CPU test the AMX loop nest and packing. */
enum bn_variant { BN_V_SCALAR = 0, BN_V_AVX2, BN_V_AVX512, BN_V_NEON, BN_V_WASM, BN_V_AMX, BN_V_AMX_MODEL, BN_V_COUNT };

/* bn_ran[variant][kernel] is set to 1 by the kernel itself when it executes (benign racy store). */
extern volatile uint8_t bn_ran[BN_V_COUNT][BN_K_COUNT];
extern const char *const bn_kernel_names[BN_K_COUNT];   /* "i2s_gemv", ... */
extern const char *const bn_variant_names[BN_V_COUNT];  /* "scalar", "avx2", ..., "amx", "amx-model" */

typedef struct bn_kernels {
    int variant;  /* enum bn_variant */

    /* x[n] (float) -> q[n] (int8) and its scale/sum. n >= 1. */
    void (*quantize_act)(const float *x, int64_t n, int8_t *q, bn_qinfo *info);

    /* ---- ternary matmuls. `data` points at the tensor's first byte in the file. The weight has M rows of K
     * (row r = output r). gemv: one token, y[r] for r in [r0, r1). gemm: T tokens, q + t*K is token t,
     * y[t*ldy + r]. ---- */
    /* I2_S: codes for the whole tensor then one float scale at byte (M*K)/4 (passed as wscale).
     * Only M*K must be a multiple of 128; rows may start mid-block when K % 128 != 0. */
    void (*i2s_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, float wscale, float *y);
    void (*i2s_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy);
    /* TQ2_0 / TQ1_0: K % 256 == 0, blocks carry their own f16 scale. */
    void (*tq2_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, float *y);
    void (*tq2_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy);
    void (*tq1_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, float *y);
    void (*tq1_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy);

    /* ---- float-activation matmuls (LM head, embeddings): x is float32 (T tokens, row stride K). ---- */
    void (*f16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const float *x, int64_t T, float *y, int64_t ldy);
    void (*bf16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                      const float *x, int64_t T, float *y, int64_t ldy);
    void (*q80_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,  /* K % 32 == 0 */
                     const float *x, int64_t T, float *y, int64_t ldy);
    void (*f32_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                     const float *x, int64_t T, float *y, int64_t ldy);

    /* ---- Q8_0 weights x Q8 activations (the opt-in int8 LM head). xq: T tokens of K int8 (row stride K) in
     * blocks of 32, xd[t * K/32 + b] the float scale of block b (bn_quantize_q8). K % 32 == 0. For each row and
     * token: the exact int32 dot of block b, isum_b, goes into lane b % 8,
     *     acc[b % 8] = fmaf(d_w[b] * d_x[b], (float)isum_b, acc[b % 8])   (blocks in order),
     * and y = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)): every variant, and any
     * number of tokens, gives the same bits. ---- */
    void (*q80_q8_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *xq, const float *xd, int64_t T, float *y, int64_t ldy);

    /* ---- I2_S in the LUT form (bn_lut_pack below): the ternary matmul looks up sums of activation pairs
     * instead of multiplying. `lut` is the packed weight, `tables` the per-token tables of lut_tables (token t
     * at tables + t * bn_lut_table_bytes(K)); results are the I2_S kernels' bits. ---- */
    void (*lut_tables)(const int8_t *q, int64_t K, int8_t *tables);
    void (*i2l_gemv)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *tables, const bn_qinfo *qi, float wscale, float *y);
    void (*i2l_gemm)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1,
                     const int8_t *tables, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy);

    /* ---- attention for n_q query heads sharing one K/V head (GQA), over positions [0, n_kv): q and out hold
     * the heads one after another (head_dim floats each); k/v rows are f16 with stride kv_stride elements;
     * out_h = softmax(q_h.k * scale) v. `scores` is scratch of n_q * n_kv floats. With ml != NULL, ml[2h] and
     * ml[2h + 1] receive head h's largest score m and sum of e^(score - m) (as a float; the sum is formed in
     * double), so that the forward pass can merge the results of several spans of positions
     * (bn_attention_merge). `ahead` (or NULL) is a hint: ahead_bytes the caller reads next (its next span's K
     * rows), which the x86 bodies fetch into L2 during their weighted sum over V, so that a core streaming
     * span after span keeps its memory reads going; it never changes a result. ---- */
    void (*attention)(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                      int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                      const void *ahead, int64_t ahead_bytes);
    /* The same over a Q8_0 cache (the opt-in 8-bit KV cache): each K/V row is head_dim / 32 Q8_0 blocks (f16 d,
     * 32 int8; bn_encode_q80_row), rows row_bytes apart; head_dim % 32 == 0. An element is d * q, in float. */
    void (*attention_q8)(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                         int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                         const void *ahead, int64_t ahead_bytes);
} bn_kernels;

/* Variant tables; a NULL return means "not compiled in this build". */
const bn_kernels *bn_kernels_scalar(void);
const bn_kernels *bn_kernels_avx2(void);
const bn_kernels *bn_kernels_avx512(void);
const bn_kernels *bn_kernels_neon(void);
const bn_kernels *bn_kernels_wasm(void);
const bn_kernels *bn_kernels_amx(void);
const bn_kernels *bn_kernels_amx_model(void);

/* CPU features (cpu_features.c). amx_tile / amx_int8: cpuid, with the tile state enabled by the OS (XCR0);
 * amx_os: this process may use it (Linux grants it per process through arch_prctl, asked once). */
typedef struct {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, neon, dotprod, wasm_simd;
    int amx_tile, amx_int8, amx_os;
} bn_cpu_features;
void bn_cpu_detect(bn_cpu_features *f);

/* dispatch.c: best variant this CPU runs / whether a given variant can run here. */
int bn_variant_supported(int variant);
int bn_best_variant(void);
const bn_kernels *bn_kernels_for(int variant);   /* NULL if not compiled or not supported */
/* Whether the NEON table was compiled for the dot-product extension, which the CPU must then have. */
int bn_neon_needs_dotprod(void);

/* ---- the LUT form of a ternary I2_S weight (lut.c; the TL1 technique with exact integer tables) ----
 * Rows go in tiles of BN_LUT_ROWS; a tile holds S = ceil(K/4) steps of BN_LUT_ROWS bytes, tile-major:
 * byte r of step j of tile t (offset (t*S + j) * BN_LUT_ROWS + r) packs the codes c (0..2: ternary + 1) of row
 * BN_LUT_ROWS*t + r for inputs 4j..4j+3 as c0<<6 | c1<<4 | c2<<2 | c3 (code 3 written as 1; rows past M and
 * inputs past K as 1, weight 0). So the high nibble (c0<<2 | c1) indexes the table of input pair 2j, the low
 * nibble that of pair 2j+1: the same 2 bits per weight as I2_S, transposed so that one 32-byte load holds a
 * nibble for 32 rows of the same input pair (one pshufb looks all of them up).
 * Tables (per token): pair p = inputs 2p, 2p+1 (0 past K) has BN_LUT_PAIR_BYTES bytes: 16 high entries, then
 * 16 low ones. Entry i = c0<<2 | c1 splits v = (c0-1)*q[2p] + (c1-1)*q[2p+1] (in [-256, 256]) exactly as
 * v = 32*hi + lo with hi = v >> 5 in [-8, 8] and lo = v & 31 in [0, 31]; entries with a code 3 are 0. Eight
 * lookups add up in int8 lanes without wrapping (|hi sum| <= 64, lo sum <= 248 unsigned), then widen.
 * A row's dot is sum(v) + qi->sum = sum(c*q) (qi->sum must be the sum of q, as quantize_act gives it),
 * finished by bn_i2s_finish as every I2_S kernel. */
#define BN_LUT_ROWS 32
#define BN_LUT_PAIR_BYTES 32
/* Size of the packed form of an [M, K] weight, and of one token's tables (inline: the forward pass sizes its
 * scratch with it without linking lut.c). */
static inline int64_t bn_lut_bytes(int64_t K, int64_t M) {
    return (M + BN_LUT_ROWS - 1) / BN_LUT_ROWS * ((K + 3) / 4) * BN_LUT_ROWS;
}
static inline int64_t bn_lut_table_bytes(int64_t K) { return 2 * ((K + 3) / 4) * BN_LUT_PAIR_BYTES; }
/* Pack the tiles holding rows [r0, r1) of an I2_S weight (r0 % BN_LUT_ROWS == 0; r1 == M or a multiple of
 * BN_LUT_ROWS), so that tiles can be packed in parallel. */
void bn_lut_pack(const uint8_t *i2s, int64_t K, int64_t M, int64_t r0, int64_t r1, uint8_t *out);
/* words [w0, w1) of an I2_S tensor in the CUDA backend's I2G layout (repack.c) */
void bn_i2g_pack(const uint8_t *i2s, int64_t w0, int64_t w1, uint32_t *out);
void bn_lut_tables(const int8_t *q, int64_t K, int8_t *tables);

/* ---- portable light ops (ops.c), not ISA-specific: cheap next to the matmuls ---- */
void bn_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out);  /* sum of squares in double */
/* RoPE in two steps, so that a forward pass computes a position's angles once for all layers: cs[2i], cs[2i+1] =
 * cos, sin of pos * base^(-2i/rope_dim) for i < rope_dim/2 (theta in double, as the reference's float32
 * values come out), then the rotation of the first rope_dim dims of each head, in place (neox=1 pairs i with
 * i+rope_dim/2, else 2i with 2i+1). */
void bn_rope_angles(int64_t pos, int64_t rope_dim, float base, float *cs);
void bn_rope_apply(float *x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float *cs, int neox);
void bn_softmax(float *x, int64_t n);
void bn_softmax_ml(float *x, int64_t n, float *ml);   /* also max and sum (ml[0], ml[1]; ops.c) */
/* Attention over consecutive spans of positions merged into one (flash-decoding): acc (n_q heads of head_dim, and
 * their max/sum pairs acc_ml, as the attention kernel's out and ml) becomes the attention over its positions and
 * those of `part` together. The forward pass folds a row's spans left to right, always in that order, so its
 * result depends only on how the positions were cut into spans (a fixed size), never on which thread computed
 * which span. */
void bn_attention_fold(float *acc, float *acc_ml, const float *part, const float *part_ml, int64_t n_q,
                       int64_t head_dim);
void bn_relu2_mul(const float *gate, const float *up, int64_t n, float *out);  /* relu(g)^2 * u */
void bn_silu_mul(const float *gate, const float *up, int64_t n, float *out);   /* silu(g) * u */
void bn_f32_to_f16(const float *x, bn_f16 *out, int64_t n);   /* round to nearest even */
void bn_f16_to_f32(const bn_f16 *x, float *out, int64_t n);
void bn_bf16_to_f32(const uint16_t *x, float *out, int64_t n);
float bn_f16_scalar_to_f32(bn_f16 h);
/* The ggml type ids C code reads (docs/formats.md §2). bitnet.gguf.constants.GGMLType states every id for Python
 * and Cython; tests/unit/test_kernels.py holds these equal to it (C_TYPE_IDS of the compiled module). */
enum bn_ggml_type { BN_T_F32 = 0, BN_T_F16 = 1, BN_T_Q8_0 = 8, BN_T_BF16 = 30 };
/* Row `row` of a [rows, K] tensor of ggml type F32, F16, Q8_0 or BF16 as float32.
 * Returns 0, or -1 for another type. Used for the token embedding lookup. */
int bn_dequant_row(int ggml_type, const uint8_t *data, int64_t K, int64_t row, float *out);
/* Q8 blocks of 32 (K % 32 == 0), as ggml's Q8_0 quantizer: d = amax / 127, q = roundf(x / d) (0 when d == 0).
 * bn_quantize_q8 keeps d as a float (activations); bn_encode_q80_row writes Q8_0 blocks, d as f16. */
void bn_quantize_q8(const float *x, int64_t K, int8_t *q, float *d);
void bn_encode_q80_row(const float *x, int64_t K, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
