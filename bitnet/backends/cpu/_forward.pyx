# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The transformer forward pass, entirely in compiled code with the GIL released.

One function serves every supported architecture; the differences are data (the `Dims` flags and which tensors
are bound, from bitnet.models.common.ArchSpec): the FFN activation (relu² for BitNet b1.58, SiLU for 1bitLLM /
llama), whether sub-norms exist, the RoPE style, and whether the LM head is the tied token embedding. Each op is a loop over tokens or an OpenMP-parallel matmul over output rows;
there is no Python call inside a forward.

Every output row is computed by a single thread in a fixed order, and the attention of a row is cut into spans
of ATTENTION_SPAN positions whose results are folded in span order, whichever threads computed them: results do
not depend on the thread count.
"""
from libc.math cimport isfinite, sqrtf
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy
from cython.parallel cimport parallel, prange, threadid

import threading
from array import array

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int bn_team_size(void) { return omp_get_num_threads(); }
    #else
    static int bn_team_size(void) { return 1; }
    #endif
    """
    int bn_team_size() noexcept nogil     # threads of the enclosing parallel region (1 outside one)

cdef extern from *:
    """
    #ifdef _MSC_VER
    #include <intrin.h>
    static int64_t bn_take_job(int64_t *next) { return _InterlockedExchangeAdd64((volatile long long *)next, 1); }
    #else
    static int64_t bn_take_job(int64_t *next) { return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED); }
    #endif
    """
    int64_t bn_take_job(int64_t *next) noexcept nogil    # the next job of a shared counter, to whoever asks first

from bitnet.backends.cpu.kernels._kernels cimport (
    active_kernels, bn_kernels, bn_qinfo, bn_rmsnorm, bn_rope_angles, bn_rope_apply, bn_relu2_mul, bn_silu_mul,
    bn_f32_to_f16, bn_dequant_row, bn_quantize_q8, bn_lut_table_bytes, bn_encode_q80_row, bn_attention_fold,
)

from bitnet.backends import kv_row_bytes
from bitnet.backends.checks import UBATCH as _UBATCH, batch_runs, check_logits_out, check_span, check_tokens
from bitnet.gguf.constants import GGMLType

# Tokens evaluated per internal step (bitnet.backends.checks: both backends' step size)
cdef int64_t UBATCH = _UBATCH

# ggml type ids used here, from their one statement (bitnet.gguf.constants; docs/formats.md §2)
cdef int T_F32 = GGMLType.F32, T_F16 = GGMLType.F16, T_Q8_0 = GGMLType.Q8_0, T_BF16 = GGMLType.BF16
cdef int T_TQ1_0 = GGMLType.TQ1_0, T_TQ2_0 = GGMLType.TQ2_0, T_I2_S = GGMLType.I2_S

cdef enum:
    # Below this much work (multiply-adds) an op runs on the calling thread: waking a team costs more than
    # it saves, and on a busy machine a descheduled team member stalls the whole op.
    PARALLEL_MIN_WORK = 1 << 22
    # Attention splits into jobs of a few microseconds even at decode: a lower bar than the matmuls' (a decode
    # step at position 128 of the 2B shape gains 4% from a parallel attention).
    ATTENTION_MIN_WORK = 1 << 17
    # A row's attention is computed span by span and the spans folded in order (bn_attention_fold). The span is
    # fixed, so the result never depends on the threads; 256 positions of one K/V head (64 KB of f16 K and as
    # much V at head_dim 128) stay in L2 while the query heads reading them go over them (up to eight a pass).
    ATTENTION_SPAN = 256
    # Up to this many rows (decode), the spans of a row are separate jobs (flash-decoding: a long context keeps
    # the whole team busy); more rows (a prompt) make enough jobs of whole rows, taken in blocks of up to
    # ATTENTION_BLOCK tokens per K/V head so that each span is read from memory once for the block.
    ATTENTION_SPLIT_ROWS = 4
    ATTENTION_BLOCK = 16
    # Row slices of a parallel matmul, taken dynamically (see _matmul): about this much work each (4 MB of F16
    # LM head at decode), and at least this many per thread.
    MATMUL_SLICE_WORK = 1 << 22
    MATMUL_SLICES_PER_THREAD = 4
    # Rows per cache block in multi-token matmuls (32 rows of 6912 ternary weights = 55 KB, L2-resident).
    GEMM_ROW_BLOCK = 32


cdef struct Mat:
    const uint8_t *data
    int gtype
    int64_t K        # inputs (ne0)
    int64_t M        # outputs (rows)
    float wscale     # I2_S per-tensor scale
    int act_q8       # Q8_0 weights read with Q8-quantized activations (the opt-in int8 LM head)
    int lut          # I2_S in the LUT form (bitnet.backends.cpu.kernels.lut_pack): read with per-token tables


cdef struct Layer:
    Mat wq, wk, wv, wo, gate, up, down
    const float *attn_norm
    const float *attn_sub_norm     # NULL when the architecture has none
    const float *ffn_norm
    const float *ffn_sub_norm


cdef struct Dims:
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, rope_dim
    int64_t q_dim, kv_dim
    float rope_base, eps
    int rope_neox, ffn_silu


cdef struct Weights:
    Dims d
    Layer *layers
    Mat tok_embd
    Mat output                   # the LM head (the token embedding itself when tied)
    const float *output_norm
    int64_t max_dim              # widest activation row: max(n_embd, q_dim, n_ff)
    int kv_q8                    # the KV cache holds Q8_0 blocks (cache_type "q8_0") instead of f16
    int64_t kv_row               # bytes of one position of one K/V head in the cache


cdef struct Scratch:
    # per-token activations for up to UBATCH tokens
    float *x          # [T, n_embd] residual stream
    float *xn         # [T, max_dim] normalised input of the next matmul
    float *q          # [T, q_dim]
    float *k          # [T, kv_dim]
    float *v          # [T, kv_dim]
    float *att        # [T, q_dim]
    float *gate       # [T, n_ff]
    float *up         # [T, n_ff]
    float *tmp        # [T, n_embd]
    int8_t *xq        # [T, max_dim] int8 activations
    int8_t *lut       # LUT tables of xq, token t at t * bn_lut_table_bytes(K) (only with LUT-form weights)
    bn_qinfo *qi      # [T]
    float *xd         # [T, n_embd / 32] Q8 block scales of the int8 LM head's input
    float *rope       # [T, rope_dim] cos/sin of each token's RoPE angles, shared by all layers
    float *att_tmp    # per thread, att_stripe floats: scores of a span, one span's result, running max/sums
    int64_t att_stripe
    float *parts      # [ATTENTION_SPLIT_ROWS, n_head, n_spans, head_dim + 2]: split rows' span results
    int64_t n_spans   # spans of the longest context the scratch is sized for
    int team             # the most threads a matmul of the last forward ran on (what tests and receipts check)


cdef struct Row:
    # One token of a (possibly batched) forward step: which sequence's KV cache it belongs to and where.
    int32_t token
    int64_t pos
    uint8_t *kcache    # that sequence's caches, [n_layer, n_head_kv, n_ctx] rows of Weights.kv_row bytes: the
    uint8_t *vcache    # positions of one K/V head are contiguous, as the attention kernel streams them
    int64_t n_ctx


cdef inline const uint8_t *_ptr(object arr):
    cdef const uint8_t[::1] view = arr
    return &view[0]


cdef Mat _make_mat(object t) except *:
    cdef Mat m
    m.data = _ptr(t.data)
    m.gtype = t.ggml_type
    m.K = t.K
    m.M = t.M
    m.wscale = t.wscale
    m.act_q8 = 0
    m.lut = 1 if t.lut else 0
    return m


cdef class Transformer:
    """Weights bound to raw pointers into the mmap'ed file, plus hyperparameters (immutable after init)."""
    cdef Weights w
    cdef bint has_lut          # some matrix is in the LUT form: sessions allocate table scratch
    cdef object _keep          # the buffer views (and through them the mmap) must outlive the pointers
    cdef int _n_threads
    cdef object _batch_ws      # the Workspace of forward_batch, and the lock that gives it to one step at a time
    cdef object _batch_lock

    def __cinit__(self):
        self.w.layers = NULL

    def __init__(self, dims: dict, tok_embd, output, output_norm, layers: list, bint head_int8=False,
                 int n_threads=1, str cache_type="f16"):
        """dims: hyperparameters; tok_embd/output: BoundMatrix; output_norm: float32 array; layers: list of
        dicts name -> BoundMatrix / float32 array (see bitnet.models.common). head_int8: `output` is Q8_0 and
        is computed with Q8 activations (int8 dot products) instead of float ones. n_threads: the threads every
        forward runs its parallel loops on (a setting of the backend, changed through the attribute).
        cache_type: "f16" (the exact cache) or "q8_0" (K/V rows as Q8_0 blocks: 1.06 bytes an element instead
        of 2; head_dim % 32 == 0)."""
        self._keep = (tok_embd, output, output_norm, layers)
        self.n_threads = n_threads
        self._batch_ws = Workspace()
        self._batch_lock = threading.Lock()
        cdef Dims *d = &self.w.d
        d.n_embd = dims["n_embd"]
        d.n_layer = dims["n_layer"]
        d.n_head = dims["n_head"]
        d.n_head_kv = dims["n_head_kv"]
        d.head_dim = dims["head_dim"]
        d.n_ff = dims["n_ff"]
        d.n_vocab = dims["n_vocab"]
        d.rope_dim = dims["rope_dim"]
        d.rope_base = dims["rope_base"]
        d.eps = dims["eps"]
        d.rope_neox = 1 if dims["rope_neox"] else 0
        d.ffn_silu = 1 if dims["ffn_silu"] else 0
        d.q_dim = d.n_head * d.head_dim
        d.kv_dim = d.n_head_kv * d.head_dim
        self.w.max_dim = max(d.n_embd, d.q_dim, d.n_ff)
        self.w.kv_row = kv_row_bytes(cache_type, d.head_dim)     # checks the type, and head_dim against it
        self.w.kv_q8 = cache_type == "q8_0"
        self.w.tok_embd = _make_mat(tok_embd)
        self.w.output = _make_mat(output)
        if head_int8:
            if output.ggml_type != T_Q8_0 or output.K % 32:
                raise ValueError("the int8 LM head needs Q8_0 weights with K % 32 == 0")
            self.w.output.act_q8 = 1
        self.w.output_norm = <const float *>_ptr(output_norm)
        self.w.layers = <Layer *>calloc(d.n_layer, sizeof(Layer))
        if self.w.layers == NULL:
            raise MemoryError()
        cdef Layer *L
        for i, spec in enumerate(layers):
            L = &self.w.layers[i]
            L.wq = _make_mat(spec["attn_q"])
            L.wk = _make_mat(spec["attn_k"])
            L.wv = _make_mat(spec["attn_v"])
            L.wo = _make_mat(spec["attn_output"])
            L.gate = _make_mat(spec["ffn_gate"])
            L.up = _make_mat(spec["ffn_up"])
            L.down = _make_mat(spec["ffn_down"])
            self.has_lut = self.has_lut or L.wq.lut or L.wk.lut or L.wv.lut or L.wo.lut or L.gate.lut or L.up.lut or L.down.lut
            L.attn_norm = <const float *>_ptr(spec["attn_norm"])
            L.ffn_norm = <const float *>_ptr(spec["ffn_norm"])
            L.attn_sub_norm = <const float *>_ptr(spec["attn_sub_norm"]) if spec.get("attn_sub_norm") is not None else NULL
            L.ffn_sub_norm = <const float *>_ptr(spec["ffn_sub_norm"]) if spec.get("ffn_sub_norm") is not None else NULL

    def __dealloc__(self):
        free(self.w.layers)

    @property
    def n_vocab(self) -> int:
        return self.w.d.n_vocab

    @property
    def n_threads(self) -> int:
        return self._n_threads

    @n_threads.setter
    def n_threads(self, int value):
        if value < 1:
            raise ValueError(f"n_threads must be >= 1, got {value}")
        self._n_threads = value

    @property
    def head_type(self) -> int:
        """The ggml type the LM head is computed from (F32 when an F16 head was widened at load)."""
        return self.w.output.gtype

    @property
    def head_int8(self) -> bool:
        return bool(self.w.output.act_q8)

    @property
    def cache_type(self) -> str:
        return "q8_0" if self.w.kv_q8 else "f16"

    @property
    def device_name(self) -> str:
        return "cpu"

    def ran_kernels(self) -> list:
        """The CPU kernels that ran since reset_ran, as the kernels recorded them (bitnet.backends.cpu.kernels)."""
        from bitnet.backends.cpu.kernels import ran_kernels

        return ran_kernels()

    def reset_ran(self) -> None:
        from bitnet.backends.cpu.kernels import reset_ran

        reset_ran()

    def close(self) -> None:
        """Nothing to free: the weights are views of the reader's mapping, which the Model closes."""

    def new_context(self, int64_t n_ctx) -> Context:
        return Context(self, n_ctx)

    def greedy(self, Context ctx, int32_t token, int64_t pos) -> int:
        """Evaluate one token at `pos` and return the index of its largest logit (the first on ties, as the
        sampler's greedy choice). ModelError when a logit is not finite."""
        cdef int64_t V = self.w.d.n_vocab, i, best = 0
        cdef bint bad = False
        logits_buf = array("f", bytes(4 * V))
        cdef float[:, ::1] logits = memoryview(logits_buf).cast("B").cast("f", (1, V))
        self.forward(ctx, array("i", [token]), pos, logits, False)
        with nogil:
            for i in range(V):
                if not isfinite(logits[0, i]):
                    bad = True
                elif logits[0, i] > logits[0, best]:      # a non-finite logits[0, 0] raises below
                    best = i
        if bad:
            from bitnet.errors import non_finite_logit

            raise non_finite_logit(pos)
        return best

    def forward(self, Context ctx, tokens, int64_t pos0, logits_out, bint all_logits):
        """Evaluate `tokens` at positions pos0.. in `ctx` (its KV cache is written there).

        logits_out: None (no LM head), a float32 [1, vocab] array (last position) or, with all_logits, a
        float32 [len(tokens), vocab] array. Raises ValueError on ids outside the vocabulary or a context overflow.
        """
        cdef const int32_t[::1] toks = _int32s(tokens, "tokens")
        cdef int64_t n = toks.shape[0]
        check_span(pos0, n, ctx.n_ctx)       # the tokens are checked in _run
        if logits_out is None:
            wanted = array("q")
        elif all_logits:
            wanted = array("q", range(n))
        else:
            wanted = array("q", [n - 1])
        self._run(ctx._workspace(), [ctx], toks, array("q", range(pos0, pos0 + n)), array("q", bytes(8 * n)),
                  wanted, logits_out, self.n_threads)

    def forward_batch(self, contexts, tokens, positions, owners, logit_rows, logits_out):
        """One step over several sequences: row r evaluates tokens[r] at positions[r] in contexts[owners[r]].

        The rows of one context form one contiguous run of consecutive positions (a single decode token, or a
        chunk of a prompt); each row attends to its own sequence only. The weights are read once for all rows.
        logits_out: float32 [len(logit_rows), vocab] receiving the logits of rows `logit_rows` (increasing), or
        None. Each row's result is bit-identical to evaluating its sequence alone: every kernel computes a row
        of output for one token the same way whatever the number of tokens beside it. The scratch is the
        backend's own (one batch step at a time; each sequence's Context keeps its own for `forward`).
        """
        with self._batch_lock:
            self._run(self._batch_ws, list(contexts), _int32s(tokens, "tokens"), _int64s(positions, "positions"),
                      _int64s(owners, "owners"), _int64s(logit_rows, "logit_rows"), logits_out, self.n_threads)

    cdef _run(self, Workspace ws, list contexts, const int32_t[::1] toks, const int64_t[::1] pos,
              const int64_t[::1] owner, const int64_t[::1] wanted, logits_out, int n_threads):
        cdef int64_t n = toks.shape[0], r, i, o, n_wanted = wanted.shape[0]
        cdef Context c
        check_tokens(toks, self.w.d.n_vocab)
        for i in range(len(contexts)):
            c = <Context?>contexts[i]
            if c.n_layer != self.w.d.n_layer or c.kv_dim != self.w.d.kv_dim or c.kv_row != self.w.kv_row:
                raise ValueError(f"context {i} was made for a different model")
        batch_runs(pos, owner, [(<Context>c).n_ctx for c in contexts], wanted, n)
        cdef float[:, ::1] out = None
        if logits_out is not None:
            out = logits_out
        check_logits_out(None if out is None else (out.shape[0], out.shape[1]), n_wanted, self.w.d.n_vocab)
        rows_buf = bytearray(n * sizeof(Row))
        cdef Row *rows = <Row *>_ptr(rows_buf)
        cdef int64_t max_ctx = 1
        for r in range(n):         # the layout is checked: fill the rows
            c = <Context>contexts[owner[r]]
            rows[r].token = toks[r]
            rows[r].pos = pos[r]
            rows[r].kcache = c.kcache
            rows[r].vcache = c.vcache
            rows[r].n_ctx = c.n_ctx
            max_ctx = max(max_ctx, c.n_ctx)
        ws._ensure(self, n_threads, max_ctx)
        ws.s.team = 1
        cdef const bn_kernels *kt = active_kernels()
        cdef int64_t start = 0, chunk, first = 0, last
        cdef float *lp
        with nogil:
            while start < n:
                chunk = min(<int64_t>UBATCH, n - start)
                last = first        # the wanted rows inside this chunk: wanted[first:last]
                while last < n_wanted and wanted[last] < start + chunk:
                    last += 1
                lp = &out[first, 0] if last > first else NULL
                _forward_ubatch(kt, &self.w, &ws.s, rows + start, chunk, lp,
                                &wanted[first] if last > first else NULL, last - first, start, n_threads)
                first = last
                start += chunk


cdef const int32_t[::1] _int32s(object values, str what):
    """`values` as int32s: a buffer of that type is used as it is (no copy), anything else (a list, a numpy
    array of another integer type) is converted with the stdlib `array`, so no numpy is needed (browser build)."""
    try:
        return values
    except (TypeError, ValueError, BufferError):
        return _converted("i", values, what)


cdef const int64_t[::1] _int64s(object values, str what):
    try:
        return values
    except (TypeError, ValueError, BufferError):
        return _converted("q", values, what)


cdef object _converted(str code, object values, str what):
    try:
        return array(code, values)
    except OverflowError:
        raise ValueError(f"{what} holds an integer outside the {8 * array(code).itemsize}-bit range") from None
    except TypeError:
        raise TypeError(f"{what} must be a sequence of integers, got {type(values).__name__}") from None


def _lazy_zeros(Py_ssize_t nbytes):
    """A zero-filled writable buffer whose pages are committed only as they are written, in 4 KiB pages: with
    transparent huge pages the first write to each layer's stripe of the KV cache would zero (and commit) 2 MiB,
    ~120 MB and tens of milliseconds for the first short prompt of a 2B model."""
    try:
        import mmap
    except ImportError:                           # WebAssembly: no mmap module, no huge pages
        mmap = None
    if mmap is None or not hasattr(mmap, "MADV_NOHUGEPAGE"):    # no transparent huge pages to keep out
        return bytearray(max(nbytes, 1))
    buf = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    except OSError:                               # advice only: a kernel built without THP may refuse it
        pass
    return buf


cdef class Context:
    """One sequence's KV cache for n_ctx positions, in the model's cache type (and, made on first use, the
    scratch buffers of a forward over this sequence alone; a batch brings its own Workspace)."""
    cdef readonly int64_t n_ctx
    cdef int64_t n_layer, kv_dim, kv_row
    cdef uint8_t *kcache
    cdef uint8_t *vcache
    cdef object _kv
    cdef int64_t _kv_bytes
    cdef Workspace _ws

    def __init__(self, Transformer model, int64_t n_ctx):
        if n_ctx < 1:
            raise ValueError("n_ctx must be >= 1")
        self.n_ctx = n_ctx
        self.n_layer = model.w.d.n_layer
        self.kv_dim = model.w.d.kv_dim
        self.kv_row = model.w.kv_row
        self._kv_bytes = model.w.d.n_layer * model.w.d.n_head_kv * n_ctx * model.w.kv_row
        k = _lazy_zeros(self._kv_bytes)
        v = _lazy_zeros(self._kv_bytes)
        self._kv = (k, v)
        cdef uint8_t[::1] kview = k
        cdef uint8_t[::1] vview = v
        self.kcache = &kview[0]
        self.vcache = &vview[0]

    @property
    def nbytes(self) -> int:
        return 2 * self._kv_bytes

    @property
    def threads_used(self) -> int:
        """The most threads a matmul of this context's last forward ran on (0 before the first)."""
        return 0 if self._ws is None else self._ws.threads_used

    cdef Workspace _workspace(self):
        if self._ws is None:
            self._ws = Workspace()
        return self._ws


cdef class Workspace:
    """The scratch buffers of a forward step (activations of up to UBATCH tokens, attention scores per
    thread), sized on first use. One per thread of evaluation: a single sequence's Context keeps its own, the
    Transformer keeps one for its batch steps."""
    cdef Scratch s
    cdef int64_t s_dim, s_threads

    def __cinit__(self):
        self.s.x = NULL
        self.s.att_tmp = NULL
        self.s.parts = NULL
        self.s.n_spans = 0
        self.s.team = 0
        self.s_dim = 0
        self.s_threads = 0

    @property
    def threads_used(self) -> int:
        """The most threads a matmul of the last forward through this workspace ran on (0 before the first)."""
        return self.s.team

    cdef _ensure(self, Transformer m, int64_t n_threads, int64_t n_ctx):
        if self.s.x == NULL or self.s_dim != m.w.max_dim:
            self._free_rows()
            self._alloc_rows(m)
        cdef const Dims *d = &m.w.d
        cdef int64_t group = d.n_head // d.n_head_kv, n_spans = (n_ctx + ATTENTION_SPAN - 1) // ATTENTION_SPAN
        cdef int64_t stripe = _prompt_stripe(group, d.head_dim)
        if self.s_threads < n_threads or self.s.n_spans < n_spans or self.s.att_stripe != stripe:
            free(self.s.att_tmp)
            free(self.s.parts)
            self.s.att_tmp = <float *>malloc(n_threads * stripe * sizeof(float))
            self.s.parts = <float *>malloc(ATTENTION_SPLIT_ROWS * d.n_head * n_spans * (d.head_dim + 2) * sizeof(float))
            if self.s.att_tmp == NULL or self.s.parts == NULL:
                self.s_threads = self.s.n_spans = 0
                raise MemoryError("cannot allocate the attention scratch buffers")
            self.s_threads = n_threads
            self.s.n_spans = n_spans
            self.s.att_stripe = stripe

    cdef _alloc_rows(self, Transformer m):
        cdef Dims *d = &m.w.d
        cdef int64_t T = UBATCH
        self.s.x = <float *>malloc(T * d.n_embd * sizeof(float))
        self.s.xn = <float *>malloc(T * m.w.max_dim * sizeof(float))
        self.s.q = <float *>malloc(T * d.q_dim * sizeof(float))
        self.s.k = <float *>malloc(T * d.kv_dim * sizeof(float))
        self.s.v = <float *>malloc(T * d.kv_dim * sizeof(float))
        self.s.att = <float *>malloc(T * d.q_dim * sizeof(float))
        self.s.gate = <float *>malloc(T * d.n_ff * sizeof(float))
        self.s.up = <float *>malloc(T * d.n_ff * sizeof(float))
        self.s.tmp = <float *>malloc(T * d.n_embd * sizeof(float))
        self.s.xq = <int8_t *>malloc(T * m.w.max_dim + 64)
        self.s.qi = <bn_qinfo *>malloc(T * sizeof(bn_qinfo))
        self.s.xd = <float *>malloc(T * (d.n_embd // 32 + 1) * sizeof(float))
        self.s.rope = <float *>malloc(T * max(d.rope_dim, 2) * sizeof(float))
        self.s.lut = <int8_t *>malloc(T * bn_lut_table_bytes(m.w.max_dim)) if m.has_lut else NULL
        if (self.s.x == NULL or self.s.xn == NULL or self.s.q == NULL or self.s.k == NULL or self.s.v == NULL
                or self.s.att == NULL or self.s.gate == NULL or self.s.up == NULL or self.s.tmp == NULL
                or self.s.xq == NULL or self.s.qi == NULL or self.s.xd == NULL or self.s.rope == NULL
                or (m.has_lut and self.s.lut == NULL)):
            self._free_rows()
            raise MemoryError("cannot allocate the forward pass scratch buffers")
        self.s_dim = m.w.max_dim

    cdef _free_rows(self):
        free(self.s.x); free(self.s.xn); free(self.s.q); free(self.s.k); free(self.s.v); free(self.s.att)
        free(self.s.gate); free(self.s.up); free(self.s.tmp); free(self.s.xq); free(self.s.qi); free(self.s.xd)
        free(self.s.rope); free(self.s.lut)
        self.s.x = NULL
        self.s.lut = NULL
        self.s_dim = 0

    def __dealloc__(self):
        self._free_rows()
        free(self.s.att_tmp)
        free(self.s.parts)

# ---------------------------------------------------------------------------------------------- matmuls

cdef inline void _rows(const bn_kernels *kt, const Mat *w, const float *x, const int8_t *q, const bn_qinfo *qi,
                       const float *xd, const int8_t *lt, int64_t T, float *y, int64_t r0,
                       int64_t r1) noexcept nogil:
    """Output rows [r0, r1) of y[T, M] = x W^T. With several tokens the rows go in small blocks, each block
    applied to every token while its weights are still in the core's cache (instead of streaming the whole
    slice of weights from memory once per tile of tokens)."""
    cdef int64_t rb = r0
    if T == 1:
        _rows_block(kt, w, x, q, qi, xd, lt, T, y, r0, r1)
        return
    while rb < r1:
        _rows_block(kt, w, x, q, qi, xd, lt, T, y, rb, min(rb + GEMM_ROW_BLOCK, r1))
        rb += GEMM_ROW_BLOCK


cdef inline void _rows_block(const bn_kernels *kt, const Mat *w, const float *x, const int8_t *q,
                             const bn_qinfo *qi, const float *xd, const int8_t *lt, int64_t T, float *y,
                             int64_t r0, int64_t r1) noexcept nogil:
    """lt: the LUT tables of q (token t at lt + t * bn_lut_table_bytes(K)), for LUT-form weights."""
    cdef int g = w.gtype
    if w.act_q8:
        kt.q80_q8_gemm(w.data, w.K, r0, r1, q, xd, T, y, w.M)
    elif w.lut:
        if T == 1:
            kt.i2l_gemv(w.data, w.K, r0, r1, lt, qi, w.wscale, y)
        else:
            kt.i2l_gemm(w.data, w.K, r0, r1, lt, qi, T, w.wscale, y, w.M)
    elif g == T_I2_S:
        if T == 1:
            kt.i2s_gemv(w.data, w.K, r0, r1, q, qi, w.wscale, y)
        else:
            kt.i2s_gemm(w.data, w.K, r0, r1, q, qi, T, w.wscale, y, w.M)
    elif g == T_TQ2_0:
        if T == 1:
            kt.tq2_gemv(w.data, w.K, r0, r1, q, qi, y)
        else:
            kt.tq2_gemm(w.data, w.K, r0, r1, q, qi, T, y, w.M)
    elif g == T_TQ1_0:
        if T == 1:
            kt.tq1_gemv(w.data, w.K, r0, r1, q, qi, y)
        else:
            kt.tq1_gemm(w.data, w.K, r0, r1, q, qi, T, y, w.M)
    elif g == T_F16:
        kt.f16_gemm(w.data, w.K, r0, r1, x, T, y, w.M)
    elif g == T_BF16:
        kt.bf16_gemm(w.data, w.K, r0, r1, x, T, y, w.M)
    elif g == T_Q8_0:
        kt.q80_gemm(w.data, w.K, r0, r1, x, T, y, w.M)
    elif g == T_F32:
        kt.f32_gemm(w.data, w.K, r0, r1, x, T, y, w.M)


cdef inline int64_t _n_slices(const Mat *w, int64_t T, int nt) noexcept nogil:
    """Row slices of one matrix in a parallel matmul: about MATMUL_SLICE_WORK multiply-adds each, at least
    MATMUL_SLICES_PER_THREAD per thread, at most one per 16 rows."""
    cdef int64_t n = w.M * w.K * T // MATMUL_SLICE_WORK
    n = max(n, <int64_t>MATMUL_SLICES_PER_THREAD * nt)
    return max(<int64_t>1, min(n, w.M // 16))


cdef void _matmul(const bn_kernels *kt, const Mat **ws, float **ys, int n, const float *x, const int8_t *q,
                  const bn_qinfo *qi, const float *xd, const int8_t *lt, int64_t T, int nt,
                  int *team) noexcept nogil:
    """ys[i][T, M_i] = W_i x for `n` (<= 4) matrices reading the same input, in ONE parallel region (one wake-up
    of the team for the group). Each matrix is cut into contiguous slices of rows (see _n_slices), handed out
    dynamically: on a shared VM one vCPU often runs slower than the other for a while, and with a static half
    each the faster one waited at the barrier for up to half a matrix — with the 657 MB LM head, milliseconds
    per token. A slice is still long and contiguous (the weights stream sequentially), and each row is computed
    whole by one thread, so results do not depend on which thread took which slice."""
    cdef int64_t work = 0, jobs = 0, job, step, c
    cdef int64_t slices[4]
    cdef int i
    for i in range(n):
        work += ws[i].M * ws[i].K * T
    if work < PARALLEL_MIN_WORK or nt == 1:
        for i in range(n):
            _rows(kt, ws[i], x, q, qi, xd, lt, T, ys[i], 0, ws[i].M)
        return
    for i in range(n):
        slices[i] = _n_slices(ws[i], T, nt)
        jobs += slices[i]
    with parallel(num_threads=nt):
        # Every member runs this line, slices or not (a descheduled one may get none): thread 0 is the one writer.
        if threadid() == 0:
            team[0] = max(team[0], bn_team_size())
        for job in prange(jobs, schedule='dynamic'):
            i = 0
            c = job
            while c >= slices[i]:
                c = c - slices[i]
                i = i + 1
            # whole 32-row tiles of a LUT-form weight per slice (BN_LUT_ROWS)
            step = (((ws[i].M + slices[i] - 1) // slices[i]) + 31) & ~(<int64_t>31)
            _rows(kt, ws[i], x, q, qi, xd, lt, T, ys[i], min(ws[i].M, c * step), min(ws[i].M, (c + 1) * step))


cdef inline void _matmul1(const bn_kernels *kt, const Mat *w, const float *x, const int8_t *q, const bn_qinfo *qi,
                          const float *xd, const int8_t *lt, int64_t T, float *y, int nt, int *team) noexcept nogil:
    cdef const Mat *ws[1]
    cdef float *ys[1]
    ws[0] = w
    ys[0] = y
    _matmul(kt, ws, ys, 1, x, q, qi, xd, lt, T, nt, team)


cdef inline bint _is_ternary(int g) noexcept nogil:
    return g == T_I2_S or g == T_TQ2_0 or g == T_TQ1_0


cdef void _quantize_rows(const bn_kernels *kt, const float *x, int64_t T, int64_t n, int8_t *q, bn_qinfo *qi,
                         int nt) noexcept nogil:
    cdef int64_t t
    for t in prange(T, num_threads=_team(T, n, nt), schedule='static'):
        kt.quantize_act(x + t * n, n, q + t * n, qi + t)


cdef inline int _team(int64_t T, int64_t n, int nt) noexcept nogil:
    """Threads for a loop over T tokens of about n elements of light work each: the calling thread alone when
    the loop is too small to pay for waking the team (every decode step). A prefill runs them all in parallel:
    left serial, these loops cost a 2-thread prefill a tenth of its time."""
    return 1 if T * n * 64 < PARALLEL_MIN_WORK else nt


cdef void _norm_rows(const float *x, const float *w, int64_t T, int64_t n, float eps, float *out,
                     int nt) noexcept nogil:
    cdef int64_t t
    for t in prange(T, num_threads=_team(T, n, nt), schedule='static'):
        bn_rmsnorm(x + t * n, w, n, eps, out + t * n)


cdef void _add_rows(float *x, const float *y, int64_t T, int64_t n, int nt) noexcept nogil:
    """x += y over T rows of n (the residual connection)."""
    cdef int64_t t, i
    for t in prange(T, num_threads=_team(T, n, nt), schedule='static'):
        for i in range(t * n, (t + 1) * n):
            x[i] += y[i]


cdef inline void _prepare(const bn_kernels *kt, const Mat *w, const float *x, int64_t T, Scratch *s,
                          int nt) noexcept nogil:
    """Quantize x to int8 once when the weight consuming it is ternary (and build its LUT tables once for all
    the LUT-form weights reading it)."""
    cdef int64_t t
    if _is_ternary(w.gtype):
        _quantize_rows(kt, x, T, w.K, s.xq, s.qi, nt)
        if s.lut != NULL:
            for t in prange(T, num_threads=_team(T, w.K * 8, nt), schedule='static'):
                kt.lut_tables(s.xq + t * w.K, w.K, s.lut + t * bn_lut_table_bytes(w.K))   # the kernels' stride


# ---------------------------------------------------------------------------------------------- forward

cdef inline int64_t _prompt_stripe(int64_t group, int64_t head_dim) noexcept nogil:
    """Floats of one thread's attention scratch: for a prompt block, the running (max, sum) pairs of its tokens'
    heads, then a kernel call over up to the whole block: query heads, results and their (max, sum) pairs, scores
    of a span. Decode uses its start for a span's scores."""
    return group * ATTENTION_BLOCK * (2 + head_dim + head_dim + 2 + ATTENTION_SPAN)


cdef inline void _attend_span(const bn_kernels *kt, const Weights *m, const float *q, int64_t n_q,
                              const uint8_t *k, const uint8_t *v, int64_t n, float *scores, float *out,
                              float *ml, const uint8_t *ahead=NULL, int64_t ahead_rows=0) noexcept nogil:
    """The attention kernel for n_q query heads over the n cache rows at k, v; `ahead`: the K rows of the
    thread's next span, fetched on the way (a hint, kernels.h)."""
    cdef float scale = 1.0 / sqrtf(<float>m.d.head_dim)
    if m.kv_q8:
        kt.attention_q8(q, n_q, k, v, m.kv_row, n, m.d.head_dim, scale, scores, out, ml, ahead,
                        ahead_rows * m.kv_row)
    else:
        kt.attention(q, n_q, <const uint16_t *>k, <const uint16_t *>v, m.kv_row // 2, n, m.d.head_dim, scale,
                     scores, out, ml, ahead, ahead_rows * m.kv_row)


cdef inline int64_t _span_rows(const Row *rows, int64_t job, int64_t KVH, int64_t most, int64_t l, int64_t kv_row,
                               int64_t *at) noexcept nogil:
    """Decode job `job` (row, K/V head, span: _attention's split): its cache rows' byte offset in *at and their
    count (0: the row is shorter than the span)."""
    cdef const Row *row = &rows[job // (KVH * most)]
    cdef int64_t kvh = job // most % KVH, sp = job % most, n_kv = row.pos + 1
    if sp * ATTENTION_SPAN >= n_kv:
        return 0
    at[0] = ((l * KVH + kvh) * row.n_ctx + sp * ATTENTION_SPAN) * kv_row
    return min(<int64_t>ATTENTION_SPAN, n_kv - sp * ATTENTION_SPAN)


cdef void _attention(const bn_kernels *kt, const Weights *m, Scratch *s, const Row *rows, int64_t T, int64_t l,
                     int nt) noexcept nogil:
    """s.att[t] = the attention of row t's query heads (s.q) over positions [0, pos] of its cache at layer l.

    A job takes one K/V head and the GQA group of query heads reading it. Each row's positions go in spans of
    ATTENTION_SPAN, folded in span order: the first span's result is written in place, each later one folded
    into it. Decode rows hand their spans to separate jobs and fold after (the team shares one long context);
    prompt rows take blocks of tokens, each job going over the spans once for its whole block."""
    cdef const Dims *d = &m.d
    cdef int64_t QD = d.q_dim, HD = d.head_dim, KVH = d.n_head_kv, S = ATTENTION_SPAN
    cdef int64_t group = d.n_head // KVH, span_floats = group * (HD + 2)
    cdef int64_t t, u, r, kvh, sp, job, n_kv, at, attended = 0, most = 1, block, n_blocks, t0, t1
    cdef int64_t jobs, next_job = 0, after, n_after, at_after = 0
    cdef float *tmp
    cdef float *part
    cdef float *out
    cdef float *running
    cdef float *qs
    cdef float *res
    cdef float *ml
    cdef const Row *row
    cdef int threads
    for t in range(T):
        attended += rows[t].pos + 1
        most = max(most, rows[t].pos // S + 1)          # spans of the longest row
    threads = nt if d.n_head * attended * HD * 2 >= ATTENTION_MIN_WORK else 1
    if T <= ATTENTION_SPLIT_ROWS and most > 1:
        # s.parts[t, kvh, sp]: the span's group * head_dim outputs, then its group (max, sum) pairs. Jobs are
        # handed out one ahead from a shared counter, so that each thread knows its next span and fetches its K
        # rows while finishing the current one (flash-decoding reads memory, not arithmetic, at depth).
        jobs = T * KVH * most
        with parallel(num_threads=threads):
            job = bn_take_job(&next_job)
            while job < jobs:
                after = bn_take_job(&next_job)
                at = at_after = 0       # assigned here, so private to each thread (_span_rows writes through &)
                n_kv = _span_rows(rows, job, KVH, most, l, m.kv_row, &at)
                if n_kv > 0:
                    n_after = _span_rows(rows, after, KVH, most, l, m.kv_row, &at_after) if after < jobs else 0
                    t = job // (KVH * most)
                    kvh = job // most % KVH
                    part = s.parts + job * span_floats
                    _attend_span(kt, m, s.q + t * QD + kvh * group * HD, group, rows[t].kcache + at,
                                 rows[t].vcache + at, n_kv, s.att_tmp + threadid() * s.att_stripe, part,
                                 part + group * HD, rows[after // (KVH * most)].kcache + at_after if n_after else NULL,
                                 n_after)
                job = after
        for job in prange(T * KVH, num_threads=_team(T * KVH, most * group * HD, threads), schedule='static'):
            t = job // KVH
            part = s.parts + job * most * span_floats
            out = s.att + t * QD + job % KVH * group * HD
            memcpy(out, part, group * HD * sizeof(float))
            for sp in range(1, rows[t].pos // S + 1):
                bn_attention_fold(out, part + group * HD, part + sp * span_floats,
                                  part + sp * span_floats + group * HD, group, HD)
        return
    block = max(1, min(<int64_t>ATTENTION_BLOCK, T * KVH // (4 * threads)))
    n_blocks = (T + block - 1) // block
    for job in prange(KVH * n_blocks, num_threads=threads, schedule='dynamic'):
        kvh = job % KVH
        t0 = job // KVH * block
        t1 = min(T, t0 + block)
        # this thread's stripe (_prompt_stripe): the block's running (max, sum) pairs and query heads side by side,
        # then one kernel call's results with their (max, sum) pairs, and scores
        running = s.att_tmp + threadid() * s.att_stripe
        qs = running + 2 * group * ATTENTION_BLOCK
        res = qs + group * ATTENTION_BLOCK * HD
        tmp = res + group * ATTENTION_BLOCK * (HD + 2)
        for t in range(t0, t1):
            memcpy(qs + (t - t0) * group * HD, s.q + t * QD + kvh * group * HD, group * HD * sizeof(float))
        for sp in range(most):
            t = t0
            while t < t1:
                row = &rows[t]
                n_kv = row.pos + 1
                if sp * S >= n_kv:
                    t = t + 1
                    continue
                # The tokens from t on that see this whole span of the same cache share one kernel call, their
                # query heads side by side: the span is fetched once and the later heads find it in L2. A span
                # that a token's position cuts short goes alone.
                u = t + 1
                while (n_kv >= (sp + 1) * S and u < t1 and rows[u].kcache == row.kcache
                       and rows[u].pos + 1 >= (sp + 1) * S):
                    u = u + 1
                at = ((l * KVH + kvh) * row.n_ctx + sp * S) * m.kv_row
                ml = res + (u - t) * group * HD
                _attend_span(kt, m, qs + (t - t0) * group * HD, (u - t) * group, row.kcache + at, row.vcache + at,
                             min(S, n_kv - sp * S), tmp, res, ml)
                for r in range(u - t):
                    out = s.att + (t + r) * QD + kvh * group * HD
                    if sp == 0:
                        memcpy(out, res + r * group * HD, group * HD * sizeof(float))
                        memcpy(running + (t + r - t0) * 2 * group, ml + r * 2 * group, 2 * group * sizeof(float))
                    else:
                        bn_attention_fold(out, running + (t + r - t0) * 2 * group, res + r * group * HD,
                                          ml + r * 2 * group, group, HD)
                t = u


cdef void _forward_ubatch(const bn_kernels *kt, const Weights *m, Scratch *s, const Row *rows, int64_t T,
                          float *logits, const int64_t *wanted, int64_t n_wanted, int64_t row0,
                          int nt) noexcept nogil:
    """Rows rows[0:T] through every layer; then the LM head for rows wanted[0:n_wanted] - row0 into
    logits[n_wanted, vocab]. Each row writes its K/V into its own sequence's cache before any row of the layer
    attends, so a chunk of one prompt sees its own earlier tokens."""
    cdef const Dims *d = &m.d
    cdef int64_t E = d.n_embd, QD = d.q_dim, KVD = d.kv_dim, F = d.n_ff, HD = d.head_dim
    cdef int64_t t, l, i, kvh, at
    cdef const Layer *L
    cdef const Row *row
    cdef const float *src
    cdef int64_t RD = max(d.rope_dim, 2)
    cdef const Mat *qkv_w[3]      # matrices sharing one input run in one parallel region
    cdef float *qkv_y[3]

    for t in range(T):
        bn_dequant_row(m.tok_embd.gtype, m.tok_embd.data, E, rows[t].token, s.x + t * E)
        bn_rope_angles(rows[t].pos, d.rope_dim, d.rope_base, s.rope + t * RD)

    for l in range(d.n_layer):
        L = &m.layers[l]

        # ---- attention
        _norm_rows(s.x, L.attn_norm, T, E, d.eps, s.xn, nt)
        _prepare(kt, &L.wq, s.xn, T, s, nt)        # q, k and v share one quantized input
        qkv_w[0] = &L.wq
        qkv_w[1] = &L.wk
        qkv_w[2] = &L.wv
        qkv_y[0] = s.q
        qkv_y[1] = s.k
        qkv_y[2] = s.v
        _matmul(kt, qkv_w, qkv_y, 3, s.xn, s.xq, s.qi, NULL, s.lut, T, nt, &s.team)
        for t in prange(T, num_threads=_team(T, QD, nt), schedule='static'):
            bn_rope_apply(s.q + t * QD, d.n_head, HD, d.rope_dim, s.rope + t * RD, d.rope_neox)
            bn_rope_apply(s.k + t * KVD, d.n_head_kv, HD, d.rope_dim, s.rope + t * RD, d.rope_neox)
            row = &rows[t]
            for kvh in range(d.n_head_kv):
                at = ((l * d.n_head_kv + kvh) * row.n_ctx + row.pos) * m.kv_row
                if m.kv_q8:
                    bn_encode_q80_row(s.k + t * KVD + kvh * HD, HD, row.kcache + at)
                    bn_encode_q80_row(s.v + t * KVD + kvh * HD, HD, row.vcache + at)
                else:
                    bn_f32_to_f16(s.k + t * KVD + kvh * HD, <uint16_t *>(row.kcache + at), HD)
                    bn_f32_to_f16(s.v + t * KVD + kvh * HD, <uint16_t *>(row.vcache + at), HD)
        _attention(kt, m, s, rows, T, l, nt)
        src = s.att
        if L.attn_sub_norm != NULL:
            _norm_rows(s.att, L.attn_sub_norm, T, QD, d.eps, s.xn, nt)
            src = s.xn
        _prepare(kt, &L.wo, src, T, s, nt)
        _matmul1(kt, &L.wo, src, s.xq, s.qi, NULL, s.lut, T, s.tmp, nt, &s.team)
        _add_rows(s.x, s.tmp, T, E, nt)

        # ---- feed-forward
        _norm_rows(s.x, L.ffn_norm, T, E, d.eps, s.xn, nt)
        _prepare(kt, &L.gate, s.xn, T, s, nt)
        qkv_w[0] = &L.gate
        qkv_w[1] = &L.up
        qkv_y[0] = s.gate
        qkv_y[1] = s.up
        _matmul(kt, qkv_w, qkv_y, 2, s.xn, s.xq, s.qi, NULL, s.lut, T, nt, &s.team)
        for t in prange(T, num_threads=_team(T, F, nt), schedule='static'):
            if d.ffn_silu:
                bn_silu_mul(s.gate + t * F, s.up + t * F, F, s.gate + t * F)
            else:
                bn_relu2_mul(s.gate + t * F, s.up + t * F, F, s.gate + t * F)
        src = s.gate
        if L.ffn_sub_norm != NULL:
            _norm_rows(s.gate, L.ffn_sub_norm, T, F, d.eps, s.up, nt)
            src = s.up
        _prepare(kt, &L.down, src, T, s, nt)
        _matmul1(kt, &L.down, src, s.xq, s.qi, NULL, s.lut, T, s.tmp, nt, &s.team)
        _add_rows(s.x, s.tmp, T, E, nt)

    if n_wanted == 0:
        return
    for i in prange(n_wanted, num_threads=_team(n_wanted, E, nt), schedule='static'):   # the wanted rows
        bn_rmsnorm(s.x + (wanted[i] - row0) * E, m.output_norm, E, d.eps, s.xn + i * E)
        if m.output.act_q8:
            bn_quantize_q8(s.xn + i * E, E, s.xq + i * E, s.xd + i * (E // 32))
    _matmul1(kt, &m.output, s.xn, s.xq, NULL, s.xd, NULL, n_wanted, logits, nt, &s.team)
