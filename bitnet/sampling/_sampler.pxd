# C-level interface of the sampler, for Cython code that samples without the GIL, e.g.
#
#     from bitnet.sampling._sampler cimport Sampler
#     cdef Sampler s = sampler
#     with nogil:
#         token = s.sample_ptr(logits_ptr, n_vocab, history_ptr, n_history)
#     if token < 0: ...   # one of the SAMPLE_ERR_* codes below
#
# A Sampler (and a SamplerWork) is not safe to share between threads that run at the same time.
from libc.stdint cimport int64_t, uint64_t


# Negative return codes of sample_logits / Sampler.sample_ptr (a token id is always >= 0).
cdef enum:
    SAMPLE_ERR_NAN = -1            # a logit is NaN
    SAMPLE_ERR_POSINF = -2         # a logit is +inf (after the repetition penalty)
    SAMPLE_ERR_ALL_NEG_INF = -3    # every logit is -inf: there is nothing to sample
    SAMPLE_ERR_BAD_TOKEN = -4      # a history token id is outside [0, n_vocab)
    SAMPLE_ERR_NO_MEMORY = -5      # scratch buffers could not be allocated
    SAMPLE_ERR_EMPTY = -6          # n_vocab < 1


cdef struct SamplerParams:
    double temperature      # 0 = greedy
    Py_ssize_t top_k        # 0 = disabled
    double top_p            # 1 = disabled
    double min_p            # 0 = disabled
    double repeat_penalty   # 1 = disabled
    Py_ssize_t repeat_last_n  # 0 = disabled, -1 = the whole history


cdef struct Candidate:
    double logit            # after the repetition penalty
    double weight           # exp(logit - max) first, exp((logit - max) / temperature) at the end
    int64_t index


# Scratch memory reused from token to token (grown on demand, released by work_free).
cdef struct SamplerWork:
    Candidate* cand
    Py_ssize_t cand_capacity
    int64_t* pen_ids
    double* pen_logits
    Py_ssize_t pen_capacity


cdef void rng_seed(uint64_t* state, uint64_t seed) noexcept nogil
cdef uint64_t rng_next(uint64_t* state) noexcept nogil
cdef double rng_uniform(uint64_t* state) noexcept nogil
cdef void work_free(SamplerWork* work) noexcept nogil

# Draws one token (advancing the 4-word xoshiro256** state), or, when probs_out is not NULL, writes the final
# distribution to probs_out[0:n_vocab] and returns the most probable token without touching the RNG.
cdef Py_ssize_t sample_logits(const SamplerParams* params, uint64_t* rng, SamplerWork* work,
                              const float* logits, Py_ssize_t n_vocab,
                              const int64_t* history, Py_ssize_t n_history,
                              double* probs_out) noexcept nogil


cdef class Sampler:
    cdef SamplerParams params
    cdef uint64_t rng[4]
    cdef uint64_t _seed
    cdef SamplerWork work
    cdef bint _busy

    cdef Py_ssize_t sample_ptr(self, const float* logits, Py_ssize_t n_vocab,
                               const int64_t* history, Py_ssize_t n_history) noexcept nogil
