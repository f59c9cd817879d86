/* x86 variants: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI).
 *
 * Both are compiled into every x86 build through function-level target attributes (no -march flags), and
 * dispatch.c picks one at run time from the CPU's features. The bodies live in kernels_x86_impl.h, included
 * once per variant; see there for the integer overflow bounds.
 */
#include "kernels_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define BN_NAME(x) avx2_##x
#define BN_FN static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define BN_API static __attribute__((target("avx2,fma,f16c")))
#define BN_VARIANT BN_V_AVX2
#define BN_GETTER bn_kernels_avx2
#define BN_VNNI 0
#define BN_WIDE_REGS 0   /* 16 vector registers */
#include "kernels_x86_impl.h"
#undef BN_NAME
#undef BN_FN
#undef BN_API
#undef BN_VARIANT
#undef BN_GETTER
#undef BN_VNNI
#undef BN_WIDE_REGS
#undef BN_ZMM       /* the 256-bit body set it to 0 */

#define BN_AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c"
#define BN_NAME(x) avx512_##x
#define BN_FN static inline __attribute__((always_inline, target(BN_AVX512_TARGET)))
#define BN_API static __attribute__((target(BN_AVX512_TARGET)))
#define BN_VARIANT BN_V_AVX512
#define BN_GETTER bn_kernels_avx512
#define BN_VNNI 1
#define BN_WIDE_REGS 1   /* AVX-512VL: ymm0-31 */
#define BN_ZMM 1
#include "kernels_x86_impl.h"

#else

const bn_kernels *bn_kernels_avx2(void) { return NULL; }
const bn_kernels *bn_kernels_avx512(void) { return NULL; }

#endif
