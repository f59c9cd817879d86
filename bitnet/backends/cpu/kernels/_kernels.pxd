# C-level view of the kernel contract (src/kernels.h), shared with other Cython modules:
#     from bitnet.backends.cpu.kernels._kernels cimport active_kernels, bn_kernels, bn_qinfo
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t


cdef extern from "kernels.h" nogil:
    ctypedef uint16_t bn_f16

    ctypedef struct bn_qinfo:
        float scale
        int32_t sum

    enum bn_kernel_id:
        BN_K_QUANTIZE_ACT
        BN_K_I2S_GEMV
        BN_K_I2S_GEMM
        BN_K_TQ2_GEMV
        BN_K_TQ2_GEMM
        BN_K_TQ1_GEMV
        BN_K_TQ1_GEMM
        BN_K_F16_GEMV
        BN_K_F16_GEMM
        BN_K_BF16_GEMV
        BN_K_BF16_GEMM
        BN_K_Q80_GEMV
        BN_K_Q80_GEMM
        BN_K_F32_GEMV
        BN_K_F32_GEMM
        BN_K_ATTENTION
        BN_K_Q80Q8_GEMV
        BN_K_Q80Q8_GEMM
        BN_K_I2L_GEMV
        BN_K_I2L_GEMM
        BN_K_COUNT

    enum bn_variant:
        BN_V_SCALAR
        BN_V_AVX2
        BN_V_AVX512
        BN_V_NEON
        BN_V_WASM
        BN_V_AMX
        BN_V_AMX_MODEL
        BN_V_COUNT

    volatile uint8_t bn_ran[BN_V_COUNT][BN_K_COUNT]
    const char *const bn_kernel_names[]
    const char *const bn_variant_names[]

    ctypedef struct bn_kernels:
        int variant
        void (*quantize_act)(const float *x, int64_t n, int8_t *q, bn_qinfo *info) noexcept nogil
        void (*i2s_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, float wscale, float *y) noexcept nogil
        void (*i2s_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y,
                         int64_t ldy) noexcept nogil
        void (*tq2_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, float *y) noexcept nogil
        void (*tq2_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*tq1_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, float *y) noexcept nogil
        void (*tq1_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const int8_t *q, const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*f16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*bf16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                          const float *x, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*q80_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*f32_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                         const float *x, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*q80_q8_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *xq,
                            const float *xd, int64_t T, float *y, int64_t ldy) noexcept nogil
        void (*lut_tables)(const int8_t *q, int64_t K, int8_t *tables) noexcept nogil
        void (*i2l_gemv)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1, const int8_t *tables,
                         const bn_qinfo *qi, float wscale, float *y) noexcept nogil
        void (*i2l_gemm)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1, const int8_t *tables,
                         const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) noexcept nogil
        void (*attention)(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                          int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out,
                          float *ml, const void *ahead, int64_t ahead_bytes) noexcept nogil
        void (*attention_q8)(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                             int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out,
                             float *ml, const void *ahead, int64_t ahead_bytes) noexcept nogil

    const bn_kernels *bn_kernels_scalar()
    const bn_kernels *bn_kernels_avx2()
    const bn_kernels *bn_kernels_avx512()
    const bn_kernels *bn_kernels_neon()
    const bn_kernels *bn_kernels_wasm()
    const bn_kernels *bn_kernels_amx()
    const bn_kernels *bn_kernels_amx_model()

    ctypedef struct bn_cpu_features:
        int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, neon, dotprod, wasm_simd
        int amx_tile, amx_int8, amx_os
    void bn_cpu_detect(bn_cpu_features *f)

    int bn_variant_supported(int variant)
    int bn_best_variant()
    const bn_kernels *bn_kernels_for(int variant)
    int bn_neon_needs_dotprod()

    void bn_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out)
    void bn_rope_angles(int64_t pos, int64_t rope_dim, float base, float *cs)
    void bn_rope_apply(float *x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float *cs, int neox)
    void bn_softmax(float *x, int64_t n)
    void bn_attention_fold(float *acc, float *acc_ml, const float *part, const float *part_ml, int64_t n_q,
                           int64_t head_dim)
    void bn_relu2_mul(const float *gate, const float *up, int64_t n, float *out)
    void bn_silu_mul(const float *gate, const float *up, int64_t n, float *out)
    void bn_f32_to_f16(const float *x, bn_f16 *out, int64_t n)
    void bn_f16_to_f32(const bn_f16 *x, float *out, int64_t n)
    void bn_bf16_to_f32(const uint16_t *x, float *out, int64_t n)
    float bn_f16_scalar_to_f32(bn_f16 h)
    enum bn_ggml_type:
        BN_T_F32, BN_T_F16, BN_T_Q8_0, BN_T_BF16
    int bn_dequant_row(int ggml_type, const uint8_t *data, int64_t K, int64_t row, float *out)
    void bn_quantize_q8(const float *x, int64_t K, int8_t *q, float *d)
    void bn_encode_q80_row(const float *x, int64_t K, uint8_t *out)

    enum:
        BN_LUT_ROWS
    int64_t bn_lut_bytes(int64_t K, int64_t M)
    int64_t bn_lut_table_bytes(int64_t K)
    void bn_lut_pack(const uint8_t *i2s, int64_t K, int64_t M, int64_t r0, int64_t r1, uint8_t *out)
    void bn_i2g_pack(const uint8_t *i2s, int64_t w0, int64_t w1, uint32_t *out)


# The table chosen at import (BITNET_KERNEL or the best the CPU runs), changed by set_variant().
cdef const bn_kernels *active_kernels() noexcept nogil
