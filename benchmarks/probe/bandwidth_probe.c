/* Read-bandwidth probe: the ceiling of batch-1 decoding, measured with the widest loads this CPU has.
 *
 * bn_probe_read(buf, bytes, threads) reads every byte of `buf` once with `threads` OpenMP threads (contiguous
 * slices, four independent accumulators per thread so the loads are not serialised by one add chain) and
 * returns the GB/s of that pass. The load width is chosen at run time: 512-bit where AVX-512F runs, 256-bit
 * with AVX2, else 128-bit SSE2. Built by benchmarks/bandwidth.py with the system C compiler (-O2 -fopenmp).
 */
#include <immintrin.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

__attribute__((target("avx512f"))) static uint64_t sum512(const uint8_t *p, size_t n) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a = _mm512_add_epi64(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_add_epi64(b, _mm512_load_si512((const void *)(p + i + 64)));
        c = _mm512_add_epi64(c, _mm512_load_si512((const void *)(p + i + 128)));
        d = _mm512_add_epi64(d, _mm512_load_si512((const void *)(p + i + 192)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
}

__attribute__((target("avx2"))) static uint64_t sum256(const uint8_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return out[0] + out[1] + out[2] + out[3];
}

static uint64_t sum128(const uint8_t *p, size_t n) {
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a = _mm_add_epi64(a, _mm_load_si128((const __m128i *)(p + i)));
        b = _mm_add_epi64(b, _mm_load_si128((const __m128i *)(p + i + 16)));
        c = _mm_add_epi64(c, _mm_load_si128((const __m128i *)(p + i + 32)));
        d = _mm_add_epi64(d, _mm_load_si128((const __m128i *)(p + i + 48)));
    }
    uint64_t out[2];
    _mm_storeu_si128((__m128i *)out, _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d)));
    return out[0] + out[1];
}

/* 512, 256 or 128: the load width bn_probe_read uses on this CPU. */
int bn_probe_width(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("avx2") ? 256 : 128;
}

volatile uint64_t bn_probe_sink; /* keeps the sums (and so the reads) alive */

/* `buf` must be 64-byte aligned and `bytes` a multiple of 256 * threads. */
double bn_probe_read(const void *buf, size_t bytes, int threads) {
    const int width = bn_probe_width();
    const size_t slice = bytes / (size_t)threads;
    uint64_t total = 0;
    const double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (int t = 0; t < threads; t++) {
        const uint8_t *p = (const uint8_t *)buf + (size_t)t * slice;
        total += width == 512 ? sum512(p, slice) : width == 256 ? sum256(p, slice) : sum128(p, slice);
    }
    const double dt = omp_get_wtime() - t0;
    bn_probe_sink = total;
    return (double)bytes / dt / 1e9;
}
