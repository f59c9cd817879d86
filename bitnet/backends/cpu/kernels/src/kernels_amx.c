/* AMX-INT8 variants: "amx" (the avx512 table, its multi-token I2_S and Q8_0-head matmuls on the tiles) and
 * "amx-model" (the scalar table with the same two bodies on a C model of the tile instructions, for any CPU).
 *
 * kernels_amx_impl.h holds the loop nest, packing and finishing once; this file supplies its primitives twice:
 * the real ones (tileloadd / tdpbssd / tilestored, AVX-512 for the 16-lane steps; GCC/Clang on x86 only,
 * through function-level target attributes as kernels_x86.c) and the model (plain C, compiled everywhere).
 * Single-token work (decode) stays on the base tables: a gemv reads each weight once and is bound by memory,
 * where tiles gain nothing.
 */
#include <math.h>
#include <stdlib.h>

#include "kernels_internal.h"

/* The fewest tokens that go to the tiles; fewer take the base body. A tile holds 16 tokens: below that it
 * multiplies zero padding, and the packing of the weights has fewer tokens to pay for it. */
#define BN_AMX_MIN_TOKENS 16

/* Palette-1 tile configuration, the 64-byte operand of ldtilecfg. */
typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} bn_amx_cfg;

#if defined(_MSC_VER)
#define BN_THREAD_LOCAL __declspec(thread)
#else
#define BN_THREAD_LOCAL _Thread_local
#endif

/* ---- per-thread scratch: the packed weights of a call (up to ~16 bytes per weight row element / 16) ----
 * Kept between calls by each thread (a forward pass makes thousands of calls; a fresh allocation of a few
 * hundred KB each time would be mapped and faulted in anew), and freed when the thread ends where POSIX threads
 * can say so. Elsewhere each call allocates its own. */
#if (defined(__unix__) || defined(__APPLE__)) && !defined(__EMSCRIPTEN__)
#include <pthread.h>

static pthread_key_t bn_amx_key;
static pthread_once_t bn_amx_once = PTHREAD_ONCE_INIT;
static int bn_amx_key_ok = 0;

static void bn_amx_make_key(void) { bn_amx_key_ok = pthread_key_create(&bn_amx_key, free) == 0; }

/* A block of at least n bytes, 64-byte aligned; NULL if it cannot be had. The block starts with its capacity. */
static uint8_t *bn_amx_scratch(size_t n) {
    pthread_once(&bn_amx_once, bn_amx_make_key);
    if (!bn_amx_key_ok) return NULL;
    uint8_t *blk = pthread_getspecific(bn_amx_key);
    if (!blk || *(size_t *)blk < n) {
        free(blk);
        blk = NULL;
        if (posix_memalign((void **)&blk, 64, n + 64) != 0) blk = NULL;
        if (blk) *(size_t *)blk = n;
        if (pthread_setspecific(bn_amx_key, blk) != 0) {
            free(blk);
            return NULL;
        }
        if (!blk) return NULL;
    }
    return blk + 64;
}
static void bn_amx_scratch_done(uint8_t *p) { (void)p; }   /* kept for the thread's next call */
#else
static uint8_t *bn_amx_scratch(size_t n) {
    uint8_t *blk = malloc(n + 64);
    if (!blk) return NULL;
    uint8_t *p = blk + 64 - ((uintptr_t)blk % 64);   /* aligned, with the original pointer just before it */
    BN_MEMCPY(p - sizeof(void *), &blk, sizeof(void *));
    return p;
}
static void bn_amx_scratch_done(uint8_t *p) {
    void *blk;
    BN_MEMCPY(&blk, p - sizeof(void *), sizeof(void *));
    free(blk);
}
#endif

/* ================================================================================================
 * The model: tiles as 16 x 64-byte arrays of this thread, with palette 1's rules. A shape the hardware would
 * refuse (#UD: a product whose tiles do not fit each other, an unconfigured tile) traps here too, so a loop-nest
 * mistake fails the tests on every CPU instead of only on AMX machines.
 * ================================================================================================ */

static BN_THREAD_LOCAL struct {
    bn_amx_cfg cfg;
    int configured;
    uint8_t t[8][16][64];
} bn_tm;

static void bn_tm_check(int ok) {
    if (!ok) abort();
}

static void bn_tm_config(const bn_amx_cfg *cfg) {
    bn_tm_check(cfg->palette == 1 && cfg->start_row == 0);
    for (int t = 0; t < 8; t++) bn_tm_check(cfg->rows[t] <= 16 && cfg->colsb[t] <= 64);
    bn_tm.cfg = *cfg;
    bn_tm.configured = 1;
    BN_MEMSET(bn_tm.t, 0, sizeof(bn_tm.t));   /* ldtilecfg zeroes every tile */
}

static void bn_tm_release(void) { bn_tm.configured = 0; }

static void bn_tm_used(int t) { bn_tm_check(bn_tm.configured && bn_tm.cfg.rows[t] > 0 && bn_tm.cfg.colsb[t] > 0); }

static void bn_tm_zero(int t) {
    bn_tm_used(t);
    BN_MEMSET(bn_tm.t[t], 0, sizeof(bn_tm.t[t]));
}

/* tileloadd: the configured rows x colsb bytes; the rest of the tile reads as zero */
static void bn_tm_load(int t, const void *p, int64_t stride) {
    bn_tm_used(t);
    BN_MEMSET(bn_tm.t[t], 0, sizeof(bn_tm.t[t]));
    for (int r = 0; r < bn_tm.cfg.rows[t]; r++)
        BN_MEMCPY(bn_tm.t[t][r], (const uint8_t *)p + r * stride, bn_tm.cfg.colsb[t]);
}

static void bn_tm_store(int t, void *p, int64_t stride) {
    bn_tm_used(t);
    for (int r = 0; r < bn_tm.cfg.rows[t]; r++) BN_MEMCPY((uint8_t *)p + r * stride, bn_tm.t[t][r], bn_tm.cfg.colsb[t]);
}

/* tdpbssd: C[m][n] += sum over k < colsb(A) of A[m][k] * B[k/4][4n + k%4] (int8 x int8), in int32 lanes that
 * wrap as the hardware's do (unsigned arithmetic: no overflow is undefined) */
static void bn_tm_dpbssd(int c, int a, int b) {
    const bn_amx_cfg *g = &bn_tm.cfg;
    bn_tm_used(c);
    bn_tm_used(a);
    bn_tm_used(b);
    bn_tm_check(g->rows[c] == g->rows[a] && g->colsb[a] == 4 * g->rows[b] && g->colsb[c] == g->colsb[b] &&
                g->colsb[c] % 4 == 0 && g->colsb[a] % 4 == 0);
    for (int m = 0; m < g->rows[c]; m++)
        for (int n = 0; n < g->colsb[c] / 4; n++) {
            uint32_t acc;
            BN_MEMCPY(&acc, &bn_tm.t[c][m][4 * n], 4);
            for (int k = 0; k < g->colsb[a]; k++)
                acc += (uint32_t)((int32_t)(int8_t)bn_tm.t[a][m][k] * (int32_t)(int8_t)bn_tm.t[b][k / 4][4 * n + k % 4]);
            BN_MEMCPY(&bn_tm.t[c][m][4 * n], &acc, 4);
        }
}

/* 16 lanes in plain C: each step is the IEEE operation of its AVX-512 counterpart, lane by lane */
typedef struct { uint32_t v[16]; } bn_mvi;
typedef struct { float v[16]; } bn_mvf;

static bn_mvi bn_mv_gather(const uint8_t *base, int32_t stride, int n) {
    bn_mvi r;
    for (int i = 0; i < 16; i++) {
        r.v[i] = 0;
        if (i < n) BN_MEMCPY(&r.v[i], base + (int64_t)i * stride, 4);
    }
    return r;
}
static bn_mvi bn_mv_fix3(bn_mvi x) {   /* code 3 -> 1: clear a pair's high bit where its low bit is set */
    for (int i = 0; i < 16; i++) x.v[i] &= ~((x.v[i] << 1) & 0xaaaaaaaau);
    return x;
}
static bn_mvi bn_mv_plane(bn_mvi x, int l) {
    for (int i = 0; i < 16; i++) x.v[i] = (x.v[i] >> (6 - 2 * l)) & 0x03030303u;
    return x;
}
static void bn_mv_store(void *p, bn_mvi x) { BN_MEMCPY(p, x.v, 64); }
static bn_mvf bn_mv_half(bn_mvi x) {
    bn_mvf r;
    for (int i = 0; i < 16; i++) r.v[i] = bn_half_to_float((uint16_t)(x.v[i] & 0xffff));
    return r;
}
static bn_mvf bn_mf_loadi(const int32_t *p) {
    bn_mvf r;
    for (int i = 0; i < 16; i++) r.v[i] = (float)p[i];
    return r;
}
static bn_mvf bn_mf_load(const float *p) {
    bn_mvf r;
    BN_MEMCPY(r.v, p, 64);
    return r;
}
static bn_mvf bn_mf_set1(float x) {
    bn_mvf r;
    for (int i = 0; i < 16; i++) r.v[i] = x;
    return r;
}
#define BN_MF_OP(name, expr)                           \
    static bn_mvf bn_mf_##name(bn_mvf a, bn_mvf b) {   \
        for (int i = 0; i < 16; i++) a.v[i] = (expr);  \
        return a;                                      \
    }
BN_MF_OP(sub, a.v[i] - b.v[i])
BN_MF_OP(div, a.v[i] / b.v[i])
BN_MF_OP(mul, a.v[i] * b.v[i])
BN_MF_OP(add, a.v[i] + b.v[i])
#undef BN_MF_OP
static bn_mvf bn_mf_fma(bn_mvf a, bn_mvf b, bn_mvf c) {
    for (int i = 0; i < 16; i++) c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);
    return c;
}
static void bn_mf_fstore(float *p, bn_mvf x) { BN_MEMCPY(p, x.v, 64); }
static void bn_mf_store(float *p, bn_mvf x, int n) { BN_MEMCPY(p, x.v, (size_t)n * 4); }

#define BN_AMX_NAME(x) amxm_##x
#define BN_AMX_FN static inline
#define BN_AMX_API static
#define BN_AMX_VARIANT BN_V_AMX_MODEL
#define BN_AMX_BASE bn_kernels_scalar
#define BN_AMX_GETTER bn_kernels_amx_model
#define T_CFG(cfg) bn_tm_config(cfg)
#define T_RELEASE() bn_tm_release()
#define T_ZERO(t) bn_tm_zero(t)
#define T_LOAD(t, p, stride) bn_tm_load((t), (p), (stride))
#define T_STORE(t, p, stride) bn_tm_store((t), (p), (stride))
#define T_DPBSSD(c, a, b) bn_tm_dpbssd((c), (a), (b))
#define bn_vi bn_mvi
#define bn_vf bn_mvf
#define V_GATHER bn_mv_gather
#define V_FIX3 bn_mv_fix3
#define V_PLANE bn_mv_plane
#define V_STORE bn_mv_store
#define V_HALF bn_mv_half
#define F_LOADI bn_mf_loadi
#define F_LOAD bn_mf_load
#define F_SET1 bn_mf_set1
#define F_SUB bn_mf_sub
#define F_DIV bn_mf_div
#define F_MUL bn_mf_mul
#define F_ADD bn_mf_add
#define F_FMA bn_mf_fma
#define F_FSTORE bn_mf_fstore
#define F_STORE bn_mf_store
#include "kernels_amx_impl.h"
#undef BN_AMX_NAME
#undef BN_AMX_FN
#undef BN_AMX_API
#undef BN_AMX_VARIANT
#undef BN_AMX_BASE
#undef BN_AMX_GETTER
#undef T_CFG
#undef T_RELEASE
#undef T_ZERO
#undef T_LOAD
#undef T_STORE
#undef T_DPBSSD
#undef bn_vi
#undef bn_vf
#undef V_GATHER
#undef V_FIX3
#undef V_PLANE
#undef V_STORE
#undef V_HALF
#undef F_LOADI
#undef F_LOAD
#undef F_SET1
#undef F_SUB
#undef F_DIV
#undef F_MUL
#undef F_ADD
#undef F_FMA
#undef F_FSTORE
#undef F_STORE

/* ================================================================================================
 * The real instructions (x86-64, GCC/Clang).
 * ================================================================================================ */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define BN_AMX_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c,amx-tile,amx-int8"
#define BN_AMX_FN static inline __attribute__((always_inline, target(BN_AMX_TARGET)))
#define BN_AMX_API static __attribute__((target(BN_AMX_TARGET)))

BN_AMX_FN __m512i bn_xv_gather(const uint8_t *base, int32_t stride, int n) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(stride));
    /* masked-off lanes read nothing: rows past the matrix are never touched */
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), (__mmask16)((1u << n) - 1), idx, base, 1);
}
BN_AMX_FN __m512i bn_xv_fix3(__m512i x) {
    return _mm512_andnot_si512(_mm512_and_si512(_mm512_slli_epi32(x, 1), _mm512_set1_epi32((int)0xaaaaaaaau)), x);
}
BN_AMX_FN __m512i bn_xv_plane(__m512i x, int l) {
    return _mm512_and_si512(_mm512_srli_epi32(x, (unsigned)(6 - 2 * l)), _mm512_set1_epi32(0x03030303));
}
BN_AMX_FN void bn_xv_store(void *p, __m512i x) { _mm512_storeu_si512(p, x); }
BN_AMX_FN __m512 bn_xv_half(__m512i x) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(x)); }
BN_AMX_FN __m512 bn_xf_loadi(const int32_t *p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }
BN_AMX_FN void bn_xf_store(float *p, __m512 x, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), x); }

#define BN_AMX_NAME(x) amx_##x
#define BN_AMX_VARIANT BN_V_AMX
#define BN_AMX_BASE bn_kernels_avx512
#define BN_AMX_GETTER bn_kernels_amx
#define T_CFG(cfg) _tile_loadconfig(cfg)
#define T_RELEASE() _tile_release()
#define T_ZERO(t) _tile_zero(t)
#define T_LOAD(t, p, stride) _tile_loadd(t, (p), (stride))
#define T_STORE(t, p, stride) _tile_stored(t, (p), (stride))
#define T_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#define bn_vi __m512i
#define bn_vf __m512
#define V_GATHER bn_xv_gather
#define V_FIX3 bn_xv_fix3
#define V_PLANE bn_xv_plane
#define V_STORE bn_xv_store
#define V_HALF bn_xv_half
#define F_LOADI bn_xf_loadi
#define F_LOAD _mm512_loadu_ps
#define F_SET1 _mm512_set1_ps
#define F_SUB _mm512_sub_ps
#define F_DIV _mm512_div_ps
#define F_MUL _mm512_mul_ps
#define F_ADD _mm512_add_ps
#define F_FMA _mm512_fmadd_ps
#define F_FSTORE _mm512_storeu_ps
#define F_STORE bn_xf_store
#include "kernels_amx_impl.h"

#else

const bn_kernels *bn_kernels_amx(void) { return NULL; }

#endif
