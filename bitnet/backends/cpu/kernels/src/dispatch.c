/* Which variant tables exist in this build and which of them this CPU can run. */
#include "kernels_internal.h"

volatile uint8_t bn_ran[BN_V_COUNT][BN_K_COUNT];

const char *const bn_kernel_names[BN_K_COUNT] = {
    "quantize_act",
    "i2s_gemv", "i2s_gemm",
    "tq2_gemv", "tq2_gemm",
    "tq1_gemv", "tq1_gemm",
    "f16_gemv", "f16_gemm",
    "bf16_gemv", "bf16_gemm",
    "q80_gemv", "q80_gemm",
    "f32_gemv", "f32_gemm",
    "attention",
    "q80q8_gemv", "q80q8_gemm",
    "i2l_gemv", "i2l_gemm",
    "attention_q8",
};

const char *const bn_variant_names[BN_V_COUNT] = {"scalar", "avx2", "avx512", "neon", "wasm", "amx", "amx-model"};

/* Detected once; the features of a running process do not change. */
static const bn_cpu_features *features(void) {
    static bn_cpu_features f;
    static volatile int done = 0;
    if (!done) {
        bn_cpu_detect(&f);
        done = 1;
    }
    return &f;
}

static const bn_kernels *compiled_table(int variant) {
    switch (variant) {
    case BN_V_SCALAR: return bn_kernels_scalar();
    case BN_V_AVX2: return bn_kernels_avx2();
    case BN_V_AVX512: return bn_kernels_avx512();
    case BN_V_NEON: return bn_kernels_neon();
    case BN_V_WASM: return bn_kernels_wasm();
    case BN_V_AMX: return bn_kernels_amx();
    case BN_V_AMX_MODEL: return bn_kernels_amx_model();
    default: return NULL;
    }
}

int bn_variant_supported(int variant) {
    if (!compiled_table(variant)) return 0;
    const bn_cpu_features *f = features();
    switch (variant) {
    case BN_V_SCALAR: return 1;
    case BN_V_AVX2: return f->avx2 && f->fma && f->f16c;
    /* The AVX-512 bodies also use FMA and F16C, which every AVX-512 CPU has; checked anyway. */
    case BN_V_AVX512: return f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && f->fma && f->f16c;
    case BN_V_NEON: return f->neon && (!bn_neon_needs_dotprod() || f->dotprod);
    case BN_V_WASM: return f->wasm_simd;
    /* the avx512 table plus tiles: everything AVX-512 needs, AMX-TILE/INT8 and the OS's leave to use them */
    case BN_V_AMX:
        return bn_variant_supported(BN_V_AVX512) && f->amx_tile && f->amx_int8 && f->amx_os;
    case BN_V_AMX_MODEL: return 1;   /* portable C */
    default: return 0;
    }
}

int bn_best_variant(void) {
    /* the tile model is for tests and is never picked by itself */
    static const int order[] = {BN_V_AMX, BN_V_AVX512, BN_V_AVX2, BN_V_NEON, BN_V_WASM};
    for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (bn_variant_supported(order[i])) return order[i];
    return BN_V_SCALAR;
}

const bn_kernels *bn_kernels_for(int variant) {
    return bn_variant_supported(variant) ? compiled_table(variant) : NULL;
}
