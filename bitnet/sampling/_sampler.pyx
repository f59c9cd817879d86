"""Token sampler: repetition penalty → top-k → top-p → min-p → temperature → draw, in compiled code.

The pipeline follows llama.cpp's default chain. Everything that decides which token comes out is
platform-independent: the RNG is xoshiro256** seeded through splitmix64 (integer arithmetic only), the
exponential is our own (no libm, no fused multiply-add), and the candidate order is a strict total order
(higher logit first, then lower token id), so a seed, the settings and a logits sequence give the same tokens
on every IEEE-754 machine, whatever numpy or the thread count.
"""
import operator
import os

from array import array

from libc.math cimport exp, log
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, qsort, realloc
from libc.string cimport memset

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    #if defined(_MSC_VER) && !defined(__clang__)
    #pragma fp_contract(off)
    #endif

    /* exp(x) from basic IEEE-754 operations only, so that every platform computes the same bits (libm's exp
       may differ in the last place between C libraries). Contraction into fused multiply-adds is switched
       off because it would change the rounding on CPUs that have FMA (arm64, x86 with -march). */
    static const double bn_exp2_table[64] = {   /* 2^(j/64), correctly rounded */
        1.0, 1.0108892860517005, 1.0218971486541166, 1.0330248790212284,
        1.0442737824274138, 1.0556451783605572, 1.0671404006768237, 1.0787607977571199,
        1.0905077326652577, 1.102382583307841, 1.1143867425958924, 1.1265216186082418,
        1.1387886347566916, 1.1511892299529827, 1.1637248587775775, 1.1763969916502812,
        1.189207115002721, 1.202156731452703, 1.215247359980469, 1.22848053610687,
        1.241857812073484, 1.255380757024691, 1.2690509571917332, 1.2828700160787783,
        1.2968395546510096, 1.3109612115247644, 1.3252366431597413, 1.339667524053303,
        1.3542555469368927, 1.3690024229745905, 1.383909881963832, 1.3989796725383112,
        1.4142135623730951, 1.42961333839197, 1.4451808069770467, 1.460917794180647,
        1.4768261459394993, 1.4929077282912648, 1.5091644275934228, 1.5255981507445384,
        1.5422108254079407, 1.559004400237837, 1.5759808451078865, 1.593142151342267,
        1.6104903319492543, 1.6280274218573478, 1.645755478153965, 1.6636765803267364,
        1.681792830507429, 1.7001063537185235, 1.718619298122478, 1.7373338352737062,
        1.7562521603732995, 1.7753764925265212, 1.7947090750031072, 1.8142521755003989,
        1.8340080864093424, 1.8539791250833855, 1.8741676341103, 1.8945759815869656,
        1.9152065613971474, 1.9360617934922943, 1.9571441241754002, 1.978456026387951,
    };

    /* Never inlined: a caller compiled with contraction could otherwise fuse the final product with its own
       additions (GCC decides contraction per function, after inlining). */
    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((noinline, optimize("fp-contract=off")))
    #elif defined(__GNUC__)
    __attribute__((noinline))
    #elif defined(_MSC_VER)
    __declspec(noinline)
    #endif
    static double bn_sampler_exp(double x) {
    #if defined(__clang__)
    #pragma clang fp contract(off)
    #endif
        double kd, r, q, t, scale;
        int64_t k, j, m;
        uint64_t bits;
        if (x != x) return x;
        if (x < -745.2) return 0.0;
        if (x > 709.78) return HUGE_VAL;
        /* x = (64 m + j) ln2/64 + r with |r| <= ln2/128; ln2/64 is split in two (Cody-Waite) so that
           kd * LN2_64_HI is exact. */
        kd = floor(x * 92.33248261689366 + 0.5);
        r = (x - kd * 0.010830424696905538) - kd * -6.563929801064195e-13;
        k = (int64_t)kd;
        j = k & 63;
        m = (k - j) / 64;
        /* exp(r) - 1 to degree 5: the truncation error (< 4e-17) is below double rounding. */
        q = r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0)))));
        t = bn_exp2_table[j];
        t = t + t * q;
        /* Multiply by 2^m built from its bits; that (correctly rounded) product is the last rounding. */
        if (m < -1000) { t *= 7.888609052210118e-31; m += 100; }   /* 2^-100, exact */
        bits = (uint64_t)(m + 1023) << 52;
        memcpy(&scale, &bits, sizeof scale);
        return t * scale;
    }
    """
    double bn_sampler_exp(double x) nogil


cdef double INF = float("inf")
cdef double MAX_FINITE = 1.7976931348623157e308
# Below this many candidates a region is sorted outright instead of partitioned further.
cdef Py_ssize_t SMALL_REGION = 32


# ---------------------------------------------------------------- RNG: xoshiro256** seeded by splitmix64

cdef inline uint64_t rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef void rng_seed(uint64_t* state, uint64_t seed) noexcept nogil:
    # splitmix64 spreads any 64-bit seed (0 included) over the 256-bit state; it never yields all zeros.
    cdef uint64_t z
    cdef int i
    for i in range(4):
        seed += <uint64_t>0x9E3779B97F4A7C15ULL
        z = seed
        z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
        z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
        state[i] = z ^ (z >> 31)


cdef uint64_t rng_next(uint64_t* s) noexcept nogil:
    cdef uint64_t result = rotl(s[1] * 5, 7) * 9
    cdef uint64_t t = s[1] << 17
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return result


cdef double rng_uniform(uint64_t* state) noexcept nogil:
    # The top 53 bits give a double in [0, 1) exactly (no rounding, so no platform dependence).
    return <double>(rng_next(state) >> 11) * (1.0 / 9007199254740992.0)


# ---------------------------------------------------------------- candidate ordering

cdef inline bint ranks_before(const Candidate* a, const Candidate* b) noexcept nogil:
    # Strict total order: higher logit first, ties broken by the lower token id.
    return a.logit > b.logit or (a.logit == b.logit and a.index < b.index)


cdef int compare_rank(const void* a, const void* b) noexcept nogil:
    if ranks_before(<const Candidate*>a, <const Candidate*>b):
        return -1
    if ranks_before(<const Candidate*>b, <const Candidate*>a):
        return 1
    return 0


cdef int compare_int64(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0]
    cdef int64_t y = (<const int64_t*>b)[0]
    return (x > y) - (x < y)


cdef inline void swap(Candidate* c, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef Candidate t = c[i]
    c[i] = c[j]
    c[j] = t


# ---------------------------------------------------------------- scratch memory

cdef bint work_reserve(SamplerWork* work, Py_ssize_t n_cand, Py_ssize_t n_pen) noexcept nogil:
    cdef void* p
    if n_cand > work.cand_capacity:
        p = realloc(work.cand, <size_t>n_cand * sizeof(Candidate))
        if p == NULL:
            return False
        work.cand = <Candidate*>p
        work.cand_capacity = n_cand
    if n_pen > work.pen_capacity:
        p = realloc(work.pen_ids, <size_t>n_pen * sizeof(int64_t))
        if p == NULL:
            return False
        work.pen_ids = <int64_t*>p
        p = realloc(work.pen_logits, <size_t>n_pen * sizeof(double))
        if p == NULL:
            return False
        work.pen_logits = <double*>p
        work.pen_capacity = n_pen
    return True


cdef void work_free(SamplerWork* work) noexcept nogil:
    free(work.cand)
    free(work.pen_ids)
    free(work.pen_logits)
    memset(work, 0, sizeof(SamplerWork))


# ---------------------------------------------------------------- pipeline stages

cdef inline Py_ssize_t penalty_window(const SamplerParams* params, Py_ssize_t n_history) noexcept nogil:
    # How many of the most recent history tokens the repetition penalty reads.
    if params.repeat_penalty == 1.0 or params.repeat_last_n == 0 or n_history <= 0:
        return 0
    return n_history if params.repeat_last_n < 0 else min(params.repeat_last_n, n_history)


cdef Py_ssize_t penalized_tokens(const SamplerParams* params, SamplerWork* work, const float* logits,
                                 Py_ssize_t n_vocab, const int64_t* history,
                                 Py_ssize_t n_history) noexcept nogil:
    """Sorted distinct ids of the penalty window and their penalized logits; count or an error code."""
    cdef Py_ssize_t n_win = penalty_window(params, n_history), i, n = 0
    cdef int64_t tok
    cdef double v
    if n_win == 0:
        return 0
    history += n_history - n_win
    for i in range(n_win):
        tok = history[i]
        if tok < 0 or tok >= n_vocab:
            return SAMPLE_ERR_BAD_TOKEN
        work.pen_ids[i] = tok
    qsort(work.pen_ids, <size_t>n_win, sizeof(int64_t), compare_int64)
    for i in range(n_win):
        if n > 0 and work.pen_ids[i] == work.pen_ids[n - 1]:
            continue
        tok = work.pen_ids[i]
        work.pen_ids[n] = tok
        v = logits[tok]
        # CTRL / llama.cpp: shrink positive logits, push negative ones further down; once per distinct token.
        work.pen_logits[n] = v / params.repeat_penalty if v > 0 else v * params.repeat_penalty
        n += 1
    return n


cdef inline double logit_at(const float* logits, Py_ssize_t i, const SamplerWork* work, Py_ssize_t n_pen,
                            Py_ssize_t* pen_pos) noexcept nogil:
    # Tokens are visited in ascending order, so the sorted penalty list is merged in with one cursor.
    if pen_pos[0] < n_pen and work.pen_ids[pen_pos[0]] == i:
        pen_pos[0] += 1
        return work.pen_logits[pen_pos[0] - 1]
    return logits[i]


cdef inline Py_ssize_t invalid_code(double v) noexcept nogil:
    return SAMPLE_ERR_NAN if v != v else SAMPLE_ERR_POSINF


cdef Py_ssize_t scan_argmax(const float* logits, Py_ssize_t n_vocab, const SamplerWork* work,
                            Py_ssize_t n_pen, double* best_logit) noexcept nogil:
    """Arg-max (lowest id among ties) after the penalty, or an error code."""
    cdef Py_ssize_t i, pen_pos = 0, best = -1
    cdef double v, best_v = -INF
    for i in range(n_vocab):
        v = logit_at(logits, i, work, n_pen, &pen_pos)
        if v == -INF:
            continue
        if not (v <= MAX_FINITE):
            return invalid_code(v)
        if v > best_v or best < 0:
            best_v = v
            best = i
    best_logit[0] = best_v
    return best if best >= 0 else SAMPLE_ERR_ALL_NEG_INF


cdef inline void heap_sift_down(Candidate* h, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    # Min-heap by rank: the root is the lowest-ranked of the k kept so far.
    cdef Candidate item = h[i]
    cdef Py_ssize_t child
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and ranks_before(&h[child], &h[child + 1]):
            child += 1
        if not ranks_before(&item, &h[child]):
            break
        h[i] = h[child]
        i = child
    h[i] = item


cdef inline void heap_push(Candidate* h, Py_ssize_t n, Candidate item) noexcept nogil:
    cdef Py_ssize_t i = n, parent
    while i > 0:
        parent = (i - 1) // 2
        if not ranks_before(&h[parent], &item):
            break
        h[i] = h[parent]
        i = parent
    h[i] = item


cdef Py_ssize_t scan_top_k(const float* logits, Py_ssize_t n_vocab, Py_ssize_t k, SamplerWork* work,
                           Py_ssize_t n_pen) noexcept nogil:
    """Keeps the k best finite candidates in one pass with a size-k heap (no full sort); count or error."""
    cdef Candidate* h = work.cand
    cdef Candidate item
    cdef Py_ssize_t i, n = 0, pen_pos = 0
    cdef double v
    for i in range(n_vocab):
        v = logit_at(logits, i, work, n_pen, &pen_pos)
        if v == -INF:
            continue
        if not (v <= MAX_FINITE):
            return invalid_code(v)
        if n < k:
            item.logit = v
            item.weight = 0.0
            item.index = i
            heap_push(h, n, item)
            n += 1
        elif v > h[0].logit:
            # Ids arrive in ascending order, so an equal logit ranks below the root and is rejected.
            h[0].logit = v
            h[0].index = i
            heap_sift_down(h, n, 0)
    return n


cdef Py_ssize_t scan_all(const float* logits, Py_ssize_t n_vocab, double min_p, double temperature,
                         SamplerWork* work, Py_ssize_t n_pen, double max_logit, double* total) noexcept nogil:
    """Every finite token as a candidate with weight exp((logit - max) / temperature); their mass to total.

    Tokens that min-p will drop are not stored at all: min-p and top-p both keep a prefix of the same order,
    so filtering by min-p first and giving top-p the full mass as its reference yields the same set.
    A temperature other than 1 is only passed when neither top-p nor min-p needs the unit weights.
    """
    cdef Candidate* c = work.cand
    cdef Py_ssize_t i, n = 0, pen_pos = 0
    cdef double v, e, z = 0.0
    for i in range(n_vocab):
        v = logit_at(logits, i, work, n_pen, &pen_pos)
        if v == -INF:
            continue
        e = bn_sampler_exp(v - max_logit if temperature == 1.0 else (v - max_logit) / temperature)
        z += e
        if e >= min_p:
            c[n].logit = v
            c[n].weight = e
            c[n].index = i
            n += 1
    total[0] = z
    return n


cdef Py_ssize_t keep_min_p(Candidate* c, Py_ssize_t n, double min_p) noexcept nogil:
    # weight = p / p_max because the top candidate has weight exp(0) = 1 exactly.
    cdef Py_ssize_t i, kept = 0
    for i in range(n):
        if c[i].weight >= min_p:
            c[kept] = c[i]
            kept += 1
    return kept


cdef Py_ssize_t sort_and_take(Candidate* c, Py_ssize_t lo, Py_ssize_t hi, double need) noexcept nogil:
    cdef Py_ssize_t i
    cdef double mass = 0.0
    qsort(c + lo, <size_t>(hi - lo), sizeof(Candidate), compare_rank)
    for i in range(lo, hi):
        mass += c[i].weight
        if mass >= need:
            return i + 1
    return hi


cdef Py_ssize_t keep_top_p(Candidate* c, Py_ssize_t n, double need) noexcept nogil:
    """Moves the smallest top-ranked set whose weight reaches `need` to c[0:count] and returns count.

    Quickselect on the rank order: partition around a median-of-three pivot, keep the side where the
    boundary lies, so the whole set is never sorted; only the last small region is. If rounding keeps the
    mass from reaching `need`, every candidate is kept.
    """
    cdef Py_ssize_t lo = 0, hi = n, mid, store, i, budget = 16
    cdef double mass
    cdef Candidate pivot
    i = n
    while i > 1:          # budget = 2 log2(n) + 16 partitions before falling back to a plain sort
        budget += 2
        i >>= 1
    while hi - lo > SMALL_REGION and budget > 0:
        budget -= 1
        mid = lo + (hi - lo) // 2
        if ranks_before(&c[mid], &c[lo]):
            swap(c, lo, mid)
        if ranks_before(&c[hi - 1], &c[mid]):
            swap(c, mid, hi - 1)
            if ranks_before(&c[mid], &c[lo]):
                swap(c, lo, mid)
        swap(c, mid, hi - 1)
        pivot = c[hi - 1]
        store = lo
        mass = 0.0
        for i in range(lo, hi - 1):
            if ranks_before(&c[i], &pivot):
                mass += c[i].weight
                swap(c, i, store)
                store += 1
        swap(c, store, hi - 1)
        if mass >= need:
            hi = store
        elif mass + pivot.weight >= need:
            return store + 1
        else:
            need -= mass + pivot.weight
            lo = store + 1
    return sort_and_take(c, lo, hi, need)


# ---------------------------------------------------------------- the whole pipeline

cdef Py_ssize_t sample_logits(const SamplerParams* params, uint64_t* rng, SamplerWork* work,
                              const float* logits, Py_ssize_t n_vocab,
                              const int64_t* history, Py_ssize_t n_history,
                              double* probs_out) noexcept nogil:
    cdef Py_ssize_t n_pen, n, i, best = 0
    cdef Candidate* c
    cdef double max_logit, total = 0.0, target, cum
    cdef bint use_heap = params.top_k > 0 and params.top_k < n_vocab
    cdef bint weights_final = False

    if n_vocab < 1:
        return SAMPLE_ERR_EMPTY
    if not work_reserve(work, params.top_k if use_heap else n_vocab, penalty_window(params, n_history)):
        return SAMPLE_ERR_NO_MEMORY
    c = work.cand
    n_pen = penalized_tokens(params, work, logits, n_vocab, history, n_history)
    if n_pen < 0:
        return n_pen

    if params.temperature <= 0.0 or not use_heap:
        # One pass validates every logit and finds the arg-max: the answer when greedy, else the reference
        # maximum that scan_all needs before it can compute weights.
        best = scan_argmax(logits, n_vocab, work, n_pen, &max_logit)
        if best < 0 or params.temperature <= 0.0:
            if best >= 0 and probs_out != NULL:
                memset(probs_out, 0, <size_t>n_vocab * sizeof(double))
                probs_out[best] = 1.0
            return best
        # Without top-p and min-p the unit-temperature weights are never looked at: compute the final ones.
        if params.top_p >= 1.0 and params.min_p <= 0.0:
            weights_final = True
        n = scan_all(logits, n_vocab, params.min_p, params.temperature if weights_final else 1.0, work, n_pen,
                     max_logit, &total)
    else:
        n = scan_top_k(logits, n_vocab, params.top_k, work, n_pen)
        if n <= 0:
            return SAMPLE_ERR_ALL_NEG_INF if n == 0 else n
        best = 0
        for i in range(1, n):
            if ranks_before(&c[i], &c[best]):
                best = i
        max_logit = c[best].logit
        best = c[best].index
        for i in range(n):
            c[i].weight = bn_sampler_exp(c[i].logit - max_logit)
            total += c[i].weight
        if params.min_p > 0.0:
            n = keep_min_p(c, n, params.min_p)
    if params.top_p < 1.0 and n > 1:
        n = keep_top_p(c, n, params.top_p * total)

    if not weights_final:
        total = 0.0
        for i in range(n):
            if params.temperature != 1.0:
                c[i].weight = bn_sampler_exp((c[i].logit - max_logit) / params.temperature)
            total += c[i].weight

    if probs_out != NULL:
        memset(probs_out, 0, <size_t>n_vocab * sizeof(double))
        for i in range(n):
            probs_out[c[i].index] = c[i].weight / total
        return best

    target = rng_uniform(rng) * total
    cum = 0.0
    for i in range(n):
        cum += c[i].weight
        if cum > target:
            return c[i].index
    # Rounding left target at or above the accumulated total: take the last token that has any weight.
    i = n - 1
    while i > 0 and c[i].weight == 0.0:
        i -= 1
    return c[i].index


# ---------------------------------------------------------------- Python surface

def _seed_value(seed) -> int:
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    if isinstance(seed, bool):
        raise TypeError("seed must be an integer or None, got a bool")
    try:
        value = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer or None, got {type(seed).__name__}") from None
    if not 0 <= value < 2 ** 64:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def _real(name: str, value) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got a bool")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def _integer(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _numpy():
    """numpy, imported on first use: the browser build passes `array`/memoryview buffers and has no numpy."""
    import numpy

    return numpy


def _as_logits(logits):
    """A 1-D contiguous float32 buffer (used as it is), or the conversion of any other array-like by numpy."""
    try:
        view = memoryview(logits)
    except TypeError:
        view = None
    if view is not None and view.ndim == 1 and view.format == "f" and view.c_contiguous and view.shape[0]:
        return view
    np = _numpy()
    arr = np.asarray(logits)
    if arr.ndim != 1:
        raise ValueError(f"logits must be a 1-D array (a score per vocabulary entry), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("logits is empty: the vocabulary must have at least one token")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"logits must be a real-valued array (float32), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def first_non_finite(logits) -> int:
    """Index of the first NaN or infinite score in `logits` (a 1-D float32 buffer), -1 when all are finite: the
    decoding loop's check that the forward pass produced numbers (bitnet.generation)."""
    cdef const float[::1] v = _as_logits(logits)
    cdef Py_ssize_t i, found = -1
    with nogil:
        for i in range(v.shape[0]):
            if v[i] - v[i] != 0.0:        # NaN - NaN and inf - inf are NaN; every finite x - x is 0
                found = i
                break
    return found


def log_softmax_top(logits, Py_ssize_t k):
    """(log-sum-exp, the k largest entries as (token, logprob) pairs, best first, lower id first on ties) of
    finite float32 `logits`: the token log-probabilities OpenAI's `logprobs` report (of the raw logits, before
    temperature and penalties). A token's log-probability is then logits[token] - log-sum-exp."""
    cdef const float[::1] v = _as_logits(logits)
    cdef Py_ssize_t n = v.shape[0], i, j, kept = 0
    cdef double peak = -INF, total = 0.0, lse
    if k < 0 or k > 64:
        raise ValueError(f"k must be in [0, 64], got {k}")
    cdef Py_ssize_t ids[64]
    cdef float vals[64]
    with nogil:
        for i in range(n):
            if v[i] > peak:
                peak = v[i]
        for i in range(n):
            total += exp(v[i] - peak)
            if k == 0 or (kept == k and v[i] <= vals[k - 1]):
                continue
            j = kept if kept < k else k - 1        # insertion into the sorted top-k (strictly greater moves up)
            while j > 0 and v[i] > vals[j - 1]:
                if j < k:
                    ids[j] = ids[j - 1]
                    vals[j] = vals[j - 1]
                j -= 1
            ids[j] = i
            vals[j] = v[i]
            if kept < k:
                kept += 1
        lse = peak + log(total)
    return lse, [(int(ids[i]), float(vals[i] - lse)) for i in range(kept)]


def adjust_logits(logits, out, bias_ids, bias_values, count_ids, counts, double presence, double frequency,
                  mask):
    """out = logits + the logit bias - OpenAI's presence and frequency penalties (presence once for every token
    generated so far, frequency times its count), with every token the grammar mask forbids set to -inf.

    bias_ids/bias_values and count_ids/counts: int64 ids and float32 / int64 values (array('q'), array('f'), or
    numpy); mask: None, or llguidance's bitmask (bit i of little-endian 32-bit words: token i is allowed)."""
    cdef const float[::1] src = _as_logits(logits)
    cdef float[::1] dst = out
    cdef const int64_t[::1] b_ids = bias_ids
    cdef const float[::1] b_vals = bias_values
    cdef const int64_t[::1] c_ids = count_ids
    cdef const int64_t[::1] c_vals = counts
    cdef const unsigned char[::1] bits
    cdef Py_ssize_t n = src.shape[0], i, t
    if dst.shape[0] != n:
        raise ValueError(f"out has {dst.shape[0]} entries for {n} logits")
    if b_ids.shape[0] != b_vals.shape[0] or c_ids.shape[0] != c_vals.shape[0]:
        raise ValueError("ids and values differ in length")
    for i in range(b_ids.shape[0]):
        if not 0 <= b_ids[i] < n:
            raise ValueError(f"logit_bias names token {b_ids[i]}, outside the vocabulary [0, {n})")
    for i in range(c_ids.shape[0]):
        if not 0 <= c_ids[i] < n:
            raise ValueError(f"token id {c_ids[i]} is outside the vocabulary [0, {n})")
    cdef bint masked = mask is not None
    if masked:
        bits = mask
        if bits.shape[0] * 8 < n:
            raise ValueError(f"the mask has {bits.shape[0] * 8} bits for {n} tokens")
    with nogil:
        for i in range(n):
            dst[i] = src[i]
        for i in range(b_ids.shape[0]):
            dst[b_ids[i]] = dst[b_ids[i]] + b_vals[i]
        for i in range(c_ids.shape[0]):
            t = c_ids[i]
            dst[t] = <float>(dst[t] - presence - frequency * c_vals[i])
        if masked:
            for i in range(n):
                if not (bits[i >> 3] >> (i & 7)) & 1:
                    dst[i] = -INF


cdef class Sampler:
    """Turns a vector of logits into a token id.

    Sampler(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, repeat_last_n=64,
            seed=None)

    Stages, in llama.cpp's default order: repetition penalty over the distinct tokens among the last
    `repeat_last_n` of the history (-1: all of it) → top-k → top-p → min-p → temperature → softmax →
    draw.
    temperature=0 is greedy (arg-max after the penalty, lowest id on ties). top_k=0, top_p=1, min_p=0 and
    repeat_penalty=1 switch their stage off. seed=None seeds from os.urandom; the seed used is in `.seed`.

    One instance holds its RNG state and scratch memory: use one Sampler per concurrent generation.
    """

    def __cinit__(self):
        memset(&self.work, 0, sizeof(SamplerWork))
        self._busy = False

    def __init__(self, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
                 repeat_last_n=64, seed=None):
        temperature = _real("temperature", temperature)
        top_p = _real("top_p", top_p)
        min_p = _real("min_p", min_p)
        repeat_penalty = _real("repeat_penalty", repeat_penalty)
        top_k = _integer("top_k", top_k)
        repeat_last_n = _integer("repeat_last_n", repeat_last_n)
        if not (0.0 <= temperature < INF):
            raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables top-k), got {top_k}")
        if not (0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] (1 disables top-p), got {top_p}")
        if not (0.0 <= min_p <= 1.0):
            raise ValueError(f"min_p must be in [0, 1] (0 disables min-p), got {min_p}")
        if not (0.0 < repeat_penalty < INF):
            raise ValueError(f"repeat_penalty must be a finite number > 0 (1 disables it), "
                             f"got {repeat_penalty}")
        if repeat_last_n < -1:
            raise ValueError(f"repeat_last_n must be >= -1 (-1: whole history, 0: disabled), "
                             f"got {repeat_last_n}")
        self.params.temperature = temperature
        self.params.top_k = min(top_k, 2 ** 62)
        self.params.top_p = top_p
        self.params.min_p = min_p
        self.params.repeat_penalty = repeat_penalty
        self.params.repeat_last_n = min(repeat_last_n, 2 ** 62)
        self.reseed(seed)

    def __dealloc__(self):
        work_free(&self.work)

    def __repr__(self) -> str:
        p = self.params
        return (f"Sampler(temperature={p.temperature!r}, top_k={p.top_k}, top_p={p.top_p!r}, "
                f"min_p={p.min_p!r}, repeat_penalty={p.repeat_penalty!r}, repeat_last_n={p.repeat_last_n}, "
                f"seed={self._seed})")

    def reseed(self, seed=None) -> None:
        """Restarts the random stream from `seed` (None: a fresh seed from os.urandom)."""
        value = _seed_value(seed)
        self._seed = value
        rng_seed(self.rng, self._seed)

    @property
    def seed(self) -> int:
        """The seed the stream started from (the drawn one when seed=None), for reproducing a run."""
        return self._seed

    @property
    def greedy(self) -> bool:
        return self.params.temperature <= 0.0

    @property
    def temperature(self) -> float:
        return self.params.temperature

    @property
    def top_k(self) -> int:
        return self.params.top_k

    @property
    def top_p(self) -> float:
        return self.params.top_p

    @property
    def min_p(self) -> float:
        return self.params.min_p

    @property
    def repeat_penalty(self) -> float:
        return self.params.repeat_penalty

    @property
    def repeat_last_n(self) -> int:
        return self.params.repeat_last_n

    cdef Py_ssize_t sample_ptr(self, const float* logits, Py_ssize_t n_vocab,
                               const int64_t* history, Py_ssize_t n_history) noexcept nogil:
        """Draws a token from raw pointers without the GIL; a negative SAMPLE_ERR_* code on bad input."""
        return sample_logits(&self.params, self.rng, &self.work, logits, n_vocab, history, n_history, NULL)

    def sample(self, logits, history=()) -> int:
        """Draws the next token id from `logits` (float32 [vocab]) given the previous token ids."""
        return self._run(logits, history, None)

    def probabilities(self, logits, history=()):
        """The distribution `sample` would draw from (float64 [vocab], zeros for excluded tokens).

        Does not advance the random stream. For a greedy sampler it is one-hot on the arg-max.
        """
        arr = _as_logits(logits)
        probs = _numpy().empty(arr.shape[0], dtype="float64")
        self._run(arr, history, probs)
        return probs

    def _window(self, history, Py_ssize_t n_vocab):
        """The part of `history` the repetition penalty reads, as int64 (ids are checked by the core)."""
        if self.params.repeat_penalty == 1.0 or self.params.repeat_last_n == 0 or history is None:
            return None
        if self.params.repeat_last_n > 0:
            try:
                history = history[-self.params.repeat_last_n:]
            except TypeError:
                history = list(history)[-self.params.repeat_last_n:]
        if isinstance(history, array) and history.typecode == "q":    # the browser build's history: no numpy
            return _checked_window(history, n_vocab)
        np = _numpy()
        ids = np.asarray(history)
        if ids.size == 0:
            return None
        if ids.ndim != 1:
            raise ValueError(f"history must be a 1-D sequence of token ids, got shape {ids.shape}")
        if ids.dtype.kind == "O":
            try:
                ids = np.asarray(ids, dtype=np.int64)
            except (OverflowError, TypeError, ValueError):
                bad = [t for t in ids if not isinstance(t, (int, np.integer)) or not 0 <= t < n_vocab]
                raise ValueError(f"history contains {bad[0]!r}, which is not a token id in [0, {n_vocab})")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"history must contain integer token ids, got dtype {ids.dtype}")
        out_of_range = np.flatnonzero((ids < 0) | (ids >= n_vocab))
        if out_of_range.size:
            raise ValueError(f"history contains token id {int(ids[out_of_range[0]])}, outside the vocabulary "
                             f"[0, {n_vocab})")
        return np.ascontiguousarray(ids, dtype=np.int64)

    def _run(self, logits, history, probs) -> int:
        arr = _as_logits(logits)
        cdef Py_ssize_t n_vocab = arr.shape[0]
        ids = self._window(history, n_vocab)
        cdef const float[::1] lv = arr
        cdef const int64_t[::1] hv
        cdef double[::1] pv
        cdef const int64_t* hptr = NULL
        cdef Py_ssize_t n_history = 0
        cdef double* pptr = NULL
        cdef Py_ssize_t token
        if ids is not None:
            hv = ids
            hptr = &hv[0]
            n_history = hv.shape[0]
        if probs is not None:
            pv = probs
            pptr = &pv[0]
        if self._busy:
            raise RuntimeError("this Sampler is in use by another thread; give each thread its own Sampler")
        self._busy = True
        try:
            with nogil:
                if pptr == NULL:
                    token = self.sample_ptr(&lv[0], n_vocab, hptr, n_history)
                else:
                    token = sample_logits(&self.params, self.rng, &self.work, &lv[0], n_vocab,
                                          hptr, n_history, pptr)
        finally:
            self._busy = False
        if token < 0:
            _raise_for(token, arr)
        return token


def _checked_window(history, Py_ssize_t n_vocab):
    cdef const int64_t[::1] ids = history
    cdef Py_ssize_t i
    for i in range(ids.shape[0]):
        if ids[i] < 0 or ids[i] >= n_vocab:
            raise ValueError(f"history contains token id {ids[i]}, outside the vocabulary [0, {n_vocab})")
    return history if ids.shape[0] else None


def _first_index(const float[::1] values, bint nan) -> int:
    """Index of the first NaN (nan=True) or +inf in `values`, -1 if none (error messages only)."""
    cdef Py_ssize_t i
    for i in range(values.shape[0]):
        if (values[i] != values[i]) if nan else values[i] == INF:
            return i
    return -1


def _raise_for(Py_ssize_t code, arr):
    if code == SAMPLE_ERR_NAN:
        raise ValueError(f"logits contain NaN (first at token {_first_index(arr, True)}); the model output is "
                         "corrupt")
    if code == SAMPLE_ERR_POSINF:
        where = _first_index(arr, False)
        if where >= 0:
            raise ValueError(f"logits contain +inf (first at token {where}); cannot normalize")
        raise ValueError("the repetition penalty pushed a logit to +inf; use a repeat_penalty closer to 1")
    if code == SAMPLE_ERR_ALL_NEG_INF:
        raise ValueError("every logit is -inf: no token can be sampled")
    if code == SAMPLE_ERR_NO_MEMORY:
        raise MemoryError(f"cannot allocate sampler scratch memory for a vocabulary of {arr.shape[0]}")
    raise ValueError(f"sampler failed with code {code}")
