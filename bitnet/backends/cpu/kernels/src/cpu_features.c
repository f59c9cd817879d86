/* Run-time CPU feature detection.
 *
 * x86: cpuid for what the CPU implements, and xgetbv for what the OS saves on a context switch (YMM for AVX2,
 * opmask/ZMM for AVX-512): a feature the OS does not enable faults even if cpuid lists it.
 * AMX: cpuid leaf 7 EDX bits 24/25 (AMX-TILE, AMX-INT8), XCR0 bits 17/18 (the OS saves XTILECFG/XTILEDATA),
 * and on Linux the process's permission to use the 8 KB of tile data, which the kernel grants only on request
 * (arch_prctl ARCH_REQ_XCOMP_PERM; a tile instruction without it faults). The request is made once per
 * process, the first time features are detected, and its answer kept.
 * aarch64: NEON (Advanced SIMD) is architectural; the dot-product extension is read from the ELF auxiliary
 * vector on Linux. wasm: SIMD128 is a compile-time property of the module.
 */
#include <string.h>

#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Whether this process may use the AMX tile data: asked of Linux once (the answer cannot change afterwards). */
static int amx_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    static volatile int answer = -1;
    if (answer < 0) {
        const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
        answer = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    return answer;
#else
    return 1;   /* other systems enable the state for every process that XCR0 allows (Windows), or not at all */
#endif
}

static void detect_x86(bn_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return; /* no way to use YMM registers */
    const uint64_t xcr0 = read_xcr0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;     /* SSE + AVX state */
    const int os_zmm = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!os_ymm) return;
    f->fma = fma;
    f->f16c = f16c;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    f->avx2 = (b >> 5) & 1;
    if (os_zmm) {
        f->avx512f = (b >> 16) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512vnni = (c >> 11) & 1;
    }
    const int os_tiles = (xcr0 & 0x60000) == 0x60000;   /* XTILECFG (17) + XTILEDATA (18) */
    if (os_tiles) {
        f->amx_tile = (d >> 24) & 1;
        f->amx_int8 = (d >> 25) & 1;
        f->amx_os = f->amx_tile && amx_permission();
    }
}
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

void bn_cpu_detect(bn_cpu_features *f) {
    memset(f, 0, sizeof(*f));
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    detect_x86(f);
#endif
#if defined(__aarch64__) || defined(__ARM_NEON)
    f->neon = 1;
#if defined(__linux__) && defined(__aarch64__)
    f->dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__ARM_FEATURE_DOTPROD)
    f->dotprod = 1;
#endif
#endif
#if defined(__wasm_simd128__)
    f->wasm_simd = 1;
#endif
}
