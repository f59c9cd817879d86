# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled side of bitnet.backends.cpu.kernels: the active dispatch table and nogil drivers over raw buffers.

Argument checking lives in bitnet/backends/cpu/kernels/__init__.py; the functions here trust their inputs (shapes,
dtypes, contiguity) and only release the GIL and split output rows across OpenMP threads.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from bitnet.gguf.constants import GGMLType

# the ternary type ids, from their one statement (bitnet.gguf.constants)
cdef int T_I2_S = GGMLType.I2_S, T_TQ2_0 = GGMLType.TQ2_0

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int bn_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int bn_omp_max_threads(void) { return 1; }
    #endif
    """
    int bn_omp_max_threads() nogil

cdef const bn_kernels *_active = NULL

cdef const bn_kernels *active_kernels() noexcept nogil:
    return _active


cdef int _NV = BN_V_COUNT, _NK = BN_K_COUNT
VARIANT_NAMES = tuple(bn_variant_names[i].decode() for i in range(_NV))
KERNEL_NAMES = tuple(bn_kernel_names[i].decode() for i in range(_NK))
# the type ids the C code reads (kernels.h), for the test that holds them equal to bitnet.gguf.constants.GGMLType
C_TYPE_IDS = {"F32": BN_T_F32, "F16": BN_T_F16, "Q8_0": BN_T_Q8_0, "BF16": BN_T_BF16}


def detect_features() -> dict:
    cdef bn_cpu_features f
    bn_cpu_detect(&f)
    return {"avx2": bool(f.avx2), "fma": bool(f.fma), "f16c": bool(f.f16c), "avx512f": bool(f.avx512f),
            "avx512bw": bool(f.avx512bw), "avx512vl": bool(f.avx512vl), "avx512vnni": bool(f.avx512vnni),
            "neon": bool(f.neon), "dotprod": bool(f.dotprod), "wasm_simd": bool(f.wasm_simd),
            "amx_tile": bool(f.amx_tile), "amx_int8": bool(f.amx_int8), "amx_os": bool(f.amx_os)}


cdef const bn_kernels *_compiled(int v) noexcept nogil:
    if v == BN_V_SCALAR:
        return bn_kernels_scalar()
    if v == BN_V_AVX2:
        return bn_kernels_avx2()
    if v == BN_V_AVX512:
        return bn_kernels_avx512()
    if v == BN_V_NEON:
        return bn_kernels_neon()
    if v == BN_V_WASM:
        return bn_kernels_wasm()
    if v == BN_V_AMX:
        return bn_kernels_amx()
    if v == BN_V_AMX_MODEL:
        return bn_kernels_amx_model()
    return NULL


def is_compiled(int v) -> bool:
    return _compiled(v) != NULL


def is_supported(int v) -> bool:
    return bn_variant_supported(v) != 0


def best_variant() -> int:
    return bn_best_variant()


def neon_needs_dotprod() -> bool:
    return bn_neon_needs_dotprod() != 0


def omp_max_threads() -> int:
    return bn_omp_max_threads()


def activate(int v) -> None:
    """Make variant v the active table (the caller checked that it is supported)."""
    global _active
    _active = bn_kernels_for(v)


def active_index() -> int:
    return _active.variant


def ran_flags() -> list:
    cdef int v, k
    return [(v, k) for v in range(_NV) for k in range(_NK) if bn_ran[v][k]]


def reset_ran() -> None:
    cdef int v, k
    for v in range(_NV):
        for k in range(_NK):
            bn_ran[v][k] = 0


cdef inline int _threads(object n_threads):
    return bn_omp_max_threads() if n_threads is None else max(1, <int>n_threads)


cdef inline int64_t _chunk_rows(int64_t M, int64_t K, int nthreads, int64_t bytes_per_row_elem4):
    """Rows per parallel task: about eight tasks per thread, handed out dynamically so that a thread slowed by
    another process (or a slower core) takes fewer, and at most ~128 KiB of weights so that a task's rows stay
    in L2 while its token tiles pass over them."""
    cdef int64_t by_balance = (M + 8 * nthreads - 1) // (8 * nthreads)
    cdef int64_t by_cache = (4 * 131072) // max(1, K * bytes_per_row_elem4)
    cdef int64_t c = min(by_balance, max(by_cache, 8))
    return max(c, 1)


def quantize_act(int v, const float[:, ::1] x, int8_t[:, ::1] q, uint8_t[::1] qinfo) -> None:
    """Quantize each row of x (T tokens) into q with variant v; qinfo receives T packed bn_qinfo."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef int64_t t, T = x.shape[0], K = x.shape[1]
    cdef bn_qinfo *qi = <bn_qinfo *>&qinfo[0]
    with nogil:
        for t in range(T):
            kt.quantize_act(&x[t, 0], K, &q[t, 0], &qi[t])


def ternary_matmul(int v, int ggml_type, const uint8_t[::1] data, int64_t K, int64_t M, const int8_t[:, ::1] q,
                   const uint8_t[::1] qinfo, float wscale, float[:, ::1] y, object n_threads=None,
                   bint use_gemm=False, object row_chunk=None) -> None:
    """y[T, M] = ternary weights (I2_S 36 / TQ1_0 34 / TQ2_0 35) x quantized activations q[T, K].
    One token goes through gemv unless use_gemm, and row_chunk overrides the rows per task (tests use both)."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef const bn_qinfo *qi = <const bn_qinfo *>&qinfo[0]
    cdef int64_t T = q.shape[0]
    cdef bint gemv = T == 1 and not use_gemm
    cdef int nt = _threads(n_threads)
    # weight bytes per 4 elements: I2_S 1, TQ2_0 ~1.03, TQ1_0 ~0.84
    cdef int64_t chunk = _chunk_rows(M, K, nt, 1) if row_chunk is None else max(1, <int64_t>row_chunk)
    cdef int64_t nchunks = (M + chunk - 1) // chunk
    cdef int64_t c, r0, r1
    cdef const uint8_t *w = &data[0]
    cdef const int8_t *qp = &q[0, 0]
    cdef float *yp = &y[0, 0]
    for c in prange(nchunks, nogil=True, num_threads=nt, schedule="dynamic"):
        r0 = c * chunk
        r1 = min(r0 + chunk, M)
        if ggml_type == T_I2_S:
            if gemv:
                kt.i2s_gemv(w, K, r0, r1, qp, qi, wscale, yp)
            else:
                kt.i2s_gemm(w, K, r0, r1, qp, qi, T, wscale, yp, M)
        elif ggml_type == T_TQ2_0:
            if gemv:
                kt.tq2_gemv(w, K, r0, r1, qp, qi, yp)
            else:
                kt.tq2_gemm(w, K, r0, r1, qp, qi, T, yp, M)
        else:
            if gemv:
                kt.tq1_gemv(w, K, r0, r1, qp, qi, yp)
            else:
                kt.tq1_gemm(w, K, r0, r1, qp, qi, T, yp, M)


def lut_bytes(int64_t K, int64_t M) -> int:
    return bn_lut_bytes(K, M)


def lut_table_bytes(int64_t K) -> int:
    return bn_lut_table_bytes(K)


def lut_pack(const uint8_t[::1] data, int64_t K, int64_t M, uint8_t[::1] out, object n_threads=None) -> None:
    """Pack an I2_S weight [M, K] into its LUT form (`out` of lut_bytes(K, M)), tiles of rows in parallel."""
    cdef int nt = _threads(n_threads)
    cdef int64_t tiles = (M + BN_LUT_ROWS - 1) // BN_LUT_ROWS, t
    for t in prange(tiles, nogil=True, num_threads=nt, schedule="static"):
        bn_lut_pack(&data[0], K, M, t * BN_LUT_ROWS, min(M, (t + 1) * BN_LUT_ROWS), &out[0])


def i2g_pack(const uint8_t[::1] data, uint32_t[::1] out, object n_threads=None) -> None:
    """The I2G words of an I2_S tensor (bitnet/backends/cpu/kernels/src/repack.c): len(out) words, in slices in parallel."""
    cdef int nt = _threads(n_threads)
    cdef int64_t n = out.shape[0], step = 1 << 16, s
    if data.shape[0] < n * 4:
        raise ValueError(f"{n} I2G words need {4 * n} bytes of I2_S data, got {data.shape[0]}")
    for s in prange((n + step - 1) // step, nogil=True, num_threads=nt, schedule="static"):
        bn_i2g_pack(&data[0], s * step, min(n, (s + 1) * step), &out[0])


def lut_matmul(int v, const uint8_t[::1] lut, int64_t K, int64_t M, const int8_t[:, ::1] q,
               const uint8_t[::1] qinfo, float wscale, float[:, ::1] y, object n_threads=None,
               bint use_gemm=False, object row_chunk=None) -> None:
    """ternary_matmul for an I2_S weight in its LUT form: tables per token, then gemv (one token) or gemm."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef const bn_qinfo *qi = <const bn_qinfo *>&qinfo[0]
    cdef int64_t T = q.shape[0], tb = bn_lut_table_bytes(K), t
    cdef bint gemv = T == 1 and not use_gemm
    cdef int nt = _threads(n_threads)
    # whole tiles per task unless a test asks for ranges that cut them
    cdef int64_t chunk = ((_chunk_rows(M, K, nt, 1) + BN_LUT_ROWS - 1) // BN_LUT_ROWS * BN_LUT_ROWS
                          if row_chunk is None else max(1, <int64_t>row_chunk))
    cdef int64_t nchunks = (M + chunk - 1) // chunk
    cdef int64_t c, r0, r1
    cdef int8_t *tables = <int8_t *>malloc(T * tb)
    if tables == NULL:
        raise MemoryError("cannot allocate the LUT tables")
    try:
        with nogil:
            for t in range(T):
                kt.lut_tables(&q[t, 0], K, tables + t * tb)
        for c in prange(nchunks, nogil=True, num_threads=nt, schedule="dynamic"):
            r0 = c * chunk
            r1 = min(r0 + chunk, M)
            if gemv:
                kt.i2l_gemv(&lut[0], K, r0, r1, tables, qi, wscale, &y[0, 0])
            else:
                kt.i2l_gemm(&lut[0], K, r0, r1, tables, qi, T, wscale, &y[0, 0], M)
    finally:
        free(tables)


def float_matmul(int v, int ggml_type, const uint8_t[::1] data, int64_t K, int64_t M, const float[:, ::1] x,
                 float[:, ::1] y, object n_threads=None) -> None:
    """y[T, M] = float-type weights (F32 0 / F16 1 / Q8_0 8 / BF16 30) x float activations x[T, K]."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef int64_t T = x.shape[0]
    cdef int nt = _threads(n_threads)
    cdef int64_t elem4 = 16 if ggml_type == 0 else 8   # weight bytes per 4 elements, roughly
    cdef int64_t chunk = _chunk_rows(M, K, nt, elem4)
    cdef int64_t nchunks = (M + chunk - 1) // chunk
    cdef int64_t c, r0, r1
    cdef const uint8_t *w = &data[0]
    cdef const float *xp = &x[0, 0]
    cdef float *yp = &y[0, 0]
    for c in prange(nchunks, nogil=True, num_threads=nt, schedule="dynamic"):
        r0 = c * chunk
        r1 = min(r0 + chunk, M)
        if ggml_type == 1:
            kt.f16_gemm(w, K, r0, r1, xp, T, yp, M)
        elif ggml_type == 30:
            kt.bf16_gemm(w, K, r0, r1, xp, T, yp, M)
        elif ggml_type == 8:
            kt.q80_gemm(w, K, r0, r1, xp, T, yp, M)
        else:
            kt.f32_gemm(w, K, r0, r1, xp, T, yp, M)


def q8_matmul(int v, const uint8_t[::1] data, int64_t K, int64_t M, const int8_t[:, ::1] xq,
              const float[:, ::1] xd, float[:, ::1] y, object n_threads=None) -> None:
    """y[T, M] = Q8_0 weights x Q8 activations (xq [T, K] int8, xd [T, K/32] block scales)."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef int64_t T = xq.shape[0]
    cdef int nt = _threads(n_threads)
    cdef int64_t chunk = _chunk_rows(M, K, nt, 5)
    cdef int64_t nchunks = (M + chunk - 1) // chunk
    cdef int64_t c, r0, r1
    for c in prange(nchunks, nogil=True, num_threads=nt, schedule="dynamic"):
        r0 = c * chunk
        r1 = min(r0 + chunk, M)
        kt.q80_q8_gemm(&data[0], K, r0, r1, &xq[0, 0], &xd[0, 0], T, &y[0, 0], M)


def quantize_q8(const float[:, ::1] x, int8_t[:, ::1] q, float[:, ::1] d) -> None:
    cdef int64_t t
    with nogil:
        for t in range(x.shape[0]):
            bn_quantize_q8(&x[t, 0], x.shape[1], &q[t, 0], &d[t, 0])


def encode_q80(int ggml_type, const uint8_t[::1] data, int64_t K, int64_t M, uint8_t[::1] out,
               object n_threads=None) -> int:
    """Re-encode a float-type matrix (F32/F16/BF16/Q8_0 rows) as Q8_0 rows into `out`, rows in parallel.
    Returns 0, or -1 for a type bn_dequant_row does not know."""
    cdef int nt = _threads(n_threads)
    cdef int64_t r, row_bytes = K // 32 * 34
    cdef float *rowbuf
    cdef int bad = 0
    with nogil, parallel(num_threads=nt):
        rowbuf = <float *>malloc(K * sizeof(float))   # one row of floats per thread
        for r in prange(M, schedule="static"):
            if rowbuf == NULL or bn_dequant_row(ggml_type, &data[0], K, r, rowbuf) != 0:
                bad = 1
            else:
                bn_encode_q80_row(rowbuf, K, &out[r * row_bytes])
        free(rowbuf)
    return -1 if bad else 0


def attention(int v, const float[:, ::1] q, const uint8_t[:, ::1] k, const uint8_t[:, ::1] vv, float scale,
              float[:, ::1] out, float[:, ::1] ml, bint q8, const uint8_t[::1] ahead=None) -> None:
    """out[n_q, head_dim]: the n_q heads of q[n_q, head_dim] against the same k, vv rows (f16, or Q8_0 with q8);
    ml[n_q, 2]: each head's max score and sum of exponentials. `ahead`: bytes to fetch on the way (a hint)."""
    cdef const bn_kernels *kt = bn_kernels_for(v)
    cdef int64_t n_q = q.shape[0], head_dim = q.shape[1], n_kv = k.shape[0], row_bytes = k.shape[1]
    cdef const uint8_t *ahead_at = NULL if ahead is None or ahead.shape[0] == 0 else &ahead[0]
    cdef int64_t ahead_bytes = 0 if ahead_at == NULL else ahead.shape[0]
    cdef float *scores = <float *>malloc(max(n_q * n_kv, 1) * sizeof(float))
    if scores == NULL:
        raise MemoryError()
    try:
        with nogil:
            if q8:
                kt.attention_q8(&q[0, 0], n_q, &k[0, 0], &vv[0, 0], row_bytes, n_kv, head_dim, scale, scores,
                                &out[0, 0], &ml[0, 0], ahead_at, ahead_bytes)
            else:
                kt.attention(&q[0, 0], n_q, <const bn_f16 *>&k[0, 0], <const bn_f16 *>&vv[0, 0], row_bytes // 2,
                             n_kv, head_dim, scale, scores, &out[0, 0], &ml[0, 0], ahead_at, ahead_bytes)
    finally:
        free(scores)


def attention_merge(const float[:, :, ::1] parts, const float[:, :, ::1] ml, float[:, ::1] out) -> None:
    """parts[n_parts, n_q, head_dim] and their ml[n_parts, n_q, 2] folded left to right into out[n_q, head_dim]
    (as the forward pass folds a row's spans)."""
    cdef int64_t i, n_q = parts.shape[1], hd = parts.shape[2]
    cdef float *acc_ml = <float *>malloc(2 * n_q * sizeof(float))
    if acc_ml == NULL:
        raise MemoryError()
    out[:, :] = parts[0]
    for i in range(n_q):
        acc_ml[2 * i] = ml[0, i, 0]
        acc_ml[2 * i + 1] = ml[0, i, 1]
    with nogil:
        for i in range(1, parts.shape[0]):
            bn_attention_fold(&out[0, 0], acc_ml, &parts[i, 0, 0], &ml[i, 0, 0], n_q, hd)
    free(acc_ml)


def rmsnorm(const float[::1] x, const float[::1] w, float eps, float[::1] out) -> None:
    cdef const float *wp = NULL
    if w is not None:
        wp = &w[0]
    with nogil:
        bn_rmsnorm(&x[0], wp, x.shape[0], eps, &out[0])


def rope_table(float[:, ::1] out, float base) -> None:
    """out[p] = the (cos, sin) pairs of position p's angles, for every row p (the CUDA backend's RoPE table)."""
    cdef int64_t p
    with nogil:
        for p in range(out.shape[0]):
            bn_rope_angles(p, out.shape[1], base, &out[p, 0])


def rope(float[:, ::1] x, int64_t rope_dim, int64_t pos, float base, bint neox) -> None:
    cdef float *cs = <float *>malloc(max(rope_dim, 2) * sizeof(float))
    if cs == NULL:
        raise MemoryError("rope: cannot allocate the angle table")
    with nogil:
        bn_rope_angles(pos, rope_dim, base, cs)
        bn_rope_apply(&x[0, 0], x.shape[0], x.shape[1], rope_dim, cs, neox)
    free(cs)


def softmax(float[::1] x) -> None:
    with nogil:
        bn_softmax(&x[0], x.shape[0])


def relu2_mul(const float[::1] g, const float[::1] u, float[::1] out) -> None:
    with nogil:
        bn_relu2_mul(&g[0], &u[0], g.shape[0], &out[0])


def silu_mul(const float[::1] g, const float[::1] u, float[::1] out) -> None:
    with nogil:
        bn_silu_mul(&g[0], &u[0], g.shape[0], &out[0])


def f32_to_f16(const float[::1] x, uint16_t[::1] out) -> None:
    with nogil:
        bn_f32_to_f16(&x[0], &out[0], x.shape[0])


def f16_to_f32(const uint16_t[::1] x, float[::1] out) -> None:
    with nogil:
        bn_f16_to_f32(&x[0], &out[0], x.shape[0])


def bf16_to_f32(const uint16_t[::1] x, float[::1] out) -> None:
    with nogil:
        bn_bf16_to_f32(&x[0], &out[0], x.shape[0])


def dequant_row(int ggml_type, const uint8_t[::1] data, int64_t K, int64_t row, float[::1] out) -> int:
    cdef int rc
    with nogil:
        rc = bn_dequant_row(ggml_type, &data[0], K, row, &out[0])
    return rc


def stream_read(const uint64_t[::1] data, int n_threads) -> int:
    """Read every word of `data` once and return their sum (so the reads cannot be optimised away): contiguous
    slices over `n_threads` OpenMP threads, each read as 8 interleaved sequential streams as the matmul kernels
    read 8 weight rows at once (more requests in flight than one stream). Benchmarks time it to measure the
    machine's read bandwidth, the ceiling of batch-1 decoding."""
    cdef int64_t n = data.shape[0], c, j, lo, L, s
    cdef int64_t step = (n + n_threads - 1) // n_threads
    cdef uint64_t total = 0, part
    for c in prange(n_threads, nogil=True, num_threads=n_threads, schedule="static"):
        lo = c * step
        L = (min(n, lo + step) - lo) // 8
        part = 0
        for j in range(L):
            part = part + (data[lo + j] + data[lo + L + j] + data[lo + 2 * L + j] + data[lo + 3 * L + j]
                           + data[lo + 4 * L + j] + data[lo + 5 * L + j] + data[lo + 6 * L + j]
                           + data[lo + 7 * L + j])
        for s in range(lo + 8 * L, min(n, lo + step)):   # the slice's last few words
            part = part + data[s]
        total += part
    return total
