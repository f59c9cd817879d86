"""The forward pass on an NVIDIA GPU: the graph of the CPU's (bitnet/backends/cpu/_forward.pyx), step for step, as
launches of the kernels in kernels.cu on a CudaDevice (bitnet/backends/cuda/driver.py).

`CudaTransformer` has the CPU Transformer's interface (see bitnet.backends): contexts, `forward`,
`forward_batch`, `greedy`. Weights are uploaded once at construction (I2_S repacked to I2G), after checking
that they, the scratch buffers and the RoPE table fit in the GPU's free memory; each context's K/V cache is
allocated on the device when the context is made. A decode step (one token, logits of it) is captured once
per context as a CUDA graph that reads its token and position from device memory, and replayed for every
later token: one upload of 8 bytes, one graph launch and one download per token, no Python per layer. A
prompt's full chunks of UBATCH tokens replay one more graph per context (the launches of a chunk are some
9,000 for the 2B shape, too many to issue one by one from Python). With BITNET_CUDA_SYNC=1 (the device's
`sync_launches`) nothing is captured: every launch is issued and synchronized on its own, so that a fault names
its kernel.

No device memory is freed while a graph is being captured: a free (cuMemFree synchronizes) on the capturing
thread is refused by the driver and invalidates the capture, and a context's __del__ may run on that thread in
the middle of one (the garbage collector runs anywhere). A context closed while the model's lock is held
elsewhere or a capture runs hands its graphs and caches to the model, which frees them after `end_capture`,
under that lock.

Per layer (T tokens), 11 launches: norm+quantize -> q, k, v in one ternary launch -> RoPE and the K/V store ->
split-K attention -> its merge -> sub-norm+quantize -> Wo added into the residual -> norm+quantize -> gate and
up in one launch -> relu²/SiLU gating+sub-norm+quantize -> Wdown added into the residual. Float (F16/BF16/
F32/Q8_0) matrices take the normalised floats instead. Results agree with the CPU's to float rounding
(reductions sum in another order); the ternary integer dots are exact.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from bitnet.backends.checks import UBATCH, batch_runs, check_logits_out, check_span, check_tokens
from bitnet.errors import BitNetError, ModelError, non_finite_logit
from bitnet.gguf.constants import GGMLType, i2s_code_bytes

T_F32, T_F16, T_Q8_0, T_BF16, T_TQ1_0, T_TQ2_0, T_I2_S = (int(GGMLType[name]) for name in (
    "F32", "F16", "Q8_0", "BF16", "TQ1_0", "TQ2_0", "I2_S"))
FLOAT_KERNELS = {T_F16: "f16_matmul", T_BF16: "bf16_matmul", T_F32: "f32_matmul", T_Q8_0: "q80_matmul"}

MATMUL_TOKENS = 8        # tokens per matmul launch: the kernels keep one accumulator per token in registers
MATMUL_ROWS = 8          # output rows (warps) per block of a matmul
BLOCK = 256              # threads per block of the row-wise and elementwise kernels
ATTENTION_CHUNK = 64     # cached positions per split-K attention block
ATTENTION_WARPS = 4      # warps per attention block, each walking every fourth position of the chunk
ATTENTION_TOKENS = 16    # tokens per attention launch (bounds the split-K partials)
LOGIT_ROWS = 8           # rows of logits per LM-head launch
ARGMAX_PARTS = 128       # blocks of the greedy arg-max's first stage (~ one per SM of an H100's 132)
ARGMAX_BLOCK = 256       # threads per block of its first stage
GATING_NONE, GATING_RELU2, GATING_SILU = 0, 1, 2   # norm_quant's gating argument (kernels.cu)


class CudaMemoryError(BitNetError):
    """The model or a context does not fit in the GPU's free memory (the message names the sizes)."""


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _blocks(n: int, per: int) -> int:
    return (n + per - 1) // per


@dataclass(frozen=True)
class DeviceMatrix:
    """A weight matrix [M rows of K] in device memory: I2G words for I2_S, the file's bytes otherwise."""

    name: str
    gtype: int
    K: int
    M: int
    ptr: int
    wscale: float

    @property
    def ternary(self) -> bool:
        return self.gtype == T_I2_S


def _device_bytes(m) -> int:
    """What a BoundMatrix occupies on the device."""
    return i2s_code_bytes(m.M * m.K) if m.ggml_type == T_I2_S else memoryview(m.data).nbytes


class CudaContext:
    """One sequence's K and V caches on the device ([n_layer, n_ctx, kv_dim] f16 each, as the CPU keeps them)
    and the CUDA graphs that bake its cache addresses in."""

    def __init__(self, model: CudaTransformer, n_ctx: int):
        if not isinstance(n_ctx, int) or n_ctx < 1:
            raise ValueError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        if n_ctx > model.max_ctx:
            raise ValueError(f"a context of {n_ctx} positions exceeds the {model.max_ctx} this CUDA model was "
                             "loaded for")
        self.model, self.n_ctx = model, n_ctx
        self.kcache = self.vcache = 0
        # CUDA graphs captured on first use (CudaTransformer._graph): "logits" and "greedy" (the decode step
        # returning the logits / only the argmax) and "chunk" (a full UBATCH of prompt tokens through the layers)
        self.graphs: dict[str, object] = {}
        self.n_split = _blocks(n_ctx, ATTENTION_CHUNK)
        self.layer_bytes = n_ctx * model.d["n_head_kv"] * model.d["head_dim"] * 2
        self._kv_bytes = model.d["n_layer"] * self.layer_bytes
        model._check_fits(2 * self._kv_bytes, f"a KV cache of {n_ctx} positions")
        dev = model.dev
        dev.activate()
        self.kcache = dev.alloc(self._kv_bytes)
        self.vcache = dev.alloc(self._kv_bytes)

    def nbytes(self) -> int:
        return 2 * self._kv_bytes

    # host threads of the last forward: the calling thread alone drives the device
    threads_used = 1

    def close(self) -> None:
        graphs, ptrs = list(self.graphs.values()), [p for p in (self.kcache, self.vcache) if p]
        self.graphs = {}
        self.kcache = self.vcache = 0
        self.model._release(graphs, ptrs)

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown: the device may already be gone
            pass


class CudaTransformer:
    """The model's weights on one GPU and the forward pass over them (the CPU Transformer's interface)."""

    def __init__(self, dims: dict, tok_embd, output, output_norm, layers: list, head_int8: bool = False, *,
                 max_ctx: int, device=None):
        """The CPU Transformer's arguments (bitnet.models.common.bind_weights) plus max_ctx, the largest context
        to be made (the RoPE table and the attention partials are sized for it), and the device (a CudaDevice
        for GPU 0 by default). head_int8: the LM head is the Q8_0 re-encoding; on the GPU it is read with float
        activations (q80_matmul), not with the CPU's Q8-quantized ones."""
        self.d = dict(dims)
        d = self.d
        self.max_ctx = int(max_ctx)
        self.head_int8 = bool(head_int8)
        self.n_threads = 1          # the contract's host threads: the calling thread alone drives the device
        # one forward at a time (the scratch buffers are shared); reentrant so that a context collected on the
        # thread that holds it can see that it does (_release)
        self._lock = threading.RLock()
        self._capturing = False              # a CUDA graph capture is under way (set and cleared under _lock)
        self._deferred: list[tuple[list, list[int]]] = []   # (graphs, pointers) of contexts closed meanwhile
        E, HD = d["n_embd"], d["head_dim"]
        self.q_dim, self.kv_dim = d["n_head"] * HD, d["n_head_kv"] * HD
        self.max_dim = max(E, self.q_dim, d["n_ff"])
        self.att_scale = float(np.float32(1.0) / np.sqrt(np.float32(HD)))
        if HD > 256:
            raise ModelError(f"the CUDA backend supports heads of up to 256 dimensions, got {HD}")
        for layer in layers:
            for m in layer.values():
                if hasattr(m, "ggml_type") and m.ggml_type in (T_TQ1_0, T_TQ2_0):
                    raise ModelError(f"tensor '{m.name}' is {'TQ1_0' if m.ggml_type == T_TQ1_0 else 'TQ2_0'}: "
                                     "the CUDA backend runs ternary layers in I2_S (convert the file with "
                                     "`bitnet convert --outtype i2_s`) or use device='cpu'")
        if device is None:
            from bitnet.backends.cuda.driver import CudaDevice

            device = CudaDevice()
        self.dev = device
        tied = output is tok_embd
        # matrices and float32 norm vectors of every layer, then the embedding, a separate head, the output norm
        weight_bytes = sum(_device_bytes(v) if hasattr(v, "ggml_type") else memoryview(v).nbytes
                           for layer in layers for v in layer.values() if v is not None)
        weight_bytes += _device_bytes(tok_embd) + (0 if tied else _device_bytes(output)) + 4 * E
        self._sizes = self._scratch_sizes()
        self._check_fits(weight_bytes + sum(self._sizes.values()),
                         f"the model ({_gib(weight_bytes)} of weights, "
                         f"{_gib(sum(self._sizes.values()))} of scratch and RoPE table)")
        try:
            self._upload(tok_embd, output, output_norm, layers, tied)
        except BaseException:
            device.close()          # nothing stays allocated on the GPU for a model that did not load
            raise
        self._io = np.zeros(2, dtype=np.int32)           # the decode step's token and position, to s['step']
        self._greedy_out = np.zeros(2, dtype=np.int32)   # its argmax and non-finite flag, from s['step'] + 8

    # -- memory
    def _scratch_sizes(self) -> dict[str, int]:
        d, U = self.d, UBATCH
        n_split = _blocks(self.max_ctx, ATTENTION_CHUNK)
        return dict(
            x=4 * U * d["n_embd"], xn=4 * U * self.max_dim, q=4 * U * self.q_dim, k=4 * U * self.kv_dim,
            v=4 * U * self.kv_dim, att=4 * U * self.q_dim, gate=4 * U * d["n_ff"], up=4 * U * d["n_ff"],
            xq=U * self.max_dim, qi=8 * U, tokens=4 * U, pos=4 * U, step=16, argmax=16 * ARGMAX_PARTS,
            logits=4 * LOGIT_ROWS * d["n_vocab"],
            part_o=4 * ATTENTION_TOKENS * d["n_head"] * n_split * d["head_dim"],
            part_ml=8 * ATTENTION_TOKENS * d["n_head"] * n_split,
            rope=4 * self.max_ctx * d["head_dim"])

    def _upload(self, tok_embd, output, output_norm, layers: list, tied: bool) -> None:
        from bitnet.backends.cpu.kernels import rope_table

        device, d = self.dev, self.d
        self.s = {name: device.alloc(n) for name, n in self._sizes.items()}
        device.upload(self.s["rope"], rope_table(self.max_ctx, d["head_dim"], d["rope_base"]))
        self.tok_embd = self._upload_matrix(tok_embd)
        self.output = self.tok_embd if tied else self._upload_matrix(output)
        self.output_norm = self._upload_vector(output_norm)
        self.layers = [{key: (self._upload_matrix(v) if hasattr(v, "ggml_type") else
                              None if v is None else self._upload_vector(v)) for key, v in layer.items()}
                       for layer in layers]
        device.synchronize()

    def _check_fits(self, nbytes: int, what: str) -> None:
        free, total = self.dev.mem_info()
        if nbytes > free:
            raise CudaMemoryError(f"{what} needs {_gib(nbytes)} of GPU memory; {self.dev.name} has {_gib(free)} "
                                  f"free of {_gib(total)}")

    def _upload_matrix(self, m) -> DeviceMatrix:
        if m.ggml_type == T_I2_S:
            from bitnet.backends.cuda.layout import i2s_to_i2g

            host = i2s_to_i2g(m.data, m.K, m.M)
        elif m.ggml_type in FLOAT_KERNELS:
            host = memoryview(m.data)
        else:
            raise ModelError(f"tensor '{m.name}' has a type the CUDA backend cannot compute with ({m.ggml_type})")
        if m.ggml_type in (T_F16, T_BF16) and m.K % 2:
            # half_matmul reads two values per 32-bit load and float2 of x (kernels.cu): rows must be even
            raise ModelError(f"tensor '{m.name}' is {'F16' if m.ggml_type == T_F16 else 'BF16'} with rows of "
                             f"{m.K} values: the CUDA backend's F16/BF16 matmul needs an even row length")
        ptr = self.dev.alloc(memoryview(host).nbytes)
        self.dev.upload(ptr, host)
        self.dev.synchronize()     # the host copy (the repacked words) may go now
        return DeviceMatrix(m.name, m.ggml_type, m.K, m.M, ptr, float(m.wscale))

    def _upload_vector(self, v) -> int:
        host = np.frombuffer(v, dtype=np.float32)
        ptr = self.dev.alloc(host.nbytes)
        self.dev.upload(ptr, host)
        return ptr

    def close(self) -> None:
        """Free the weights and scratch (contexts free their caches when they go)."""
        self._deferred.clear()        # the device frees every allocation
        self.dev.close()

    # -- frees never during a capture
    def _release(self, graphs: list, ptrs: list[int]) -> None:
        """Destroy a closed context's graphs and free its caches: now when no forward holds the lock, else when the
        one holding it ends (never while a capture runs). Never waits: it runs in __del__, on any thread."""
        if self._lock.acquire(blocking=False):
            try:
                if not self._capturing:
                    self._free(graphs, ptrs)
                    return
            finally:
                self._lock.release()
        self._deferred.append((graphs, ptrs))
        # the holder may have drained and released between the first try and the append
        if self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def _free(self, graphs: list, ptrs: list[int]) -> None:
        self.dev.activate()     # a context's cache may be freed by the garbage collector on any thread
        for g in graphs:
            self.dev.destroy_graph(g)
        for ptr in ptrs:
            self.dev.free(ptr)

    def _drain(self) -> None:
        """Free what contexts closed during a capture or another thread's forward left (with the lock held)."""
        while self._deferred and not self._capturing:
            self._free(*self._deferred.pop())

    # -- the backend interface
    @property
    def n_vocab(self) -> int:
        return self.d["n_vocab"]

    @property
    def head_type(self) -> int:
        return self.output.gtype

    @property
    def device_name(self) -> str:
        return self.dev.name

    def ran_kernels(self) -> list[str]:
        """The kernels launched since reset_ran, as receipt ids '<kernel>.cuda' (bitnet.receipts)."""
        return sorted(f"{name}.cuda" for name in self.dev.ran)

    def reset_ran(self) -> None:
        self.dev.reset_ran()

    def new_context(self, n_ctx: int) -> CudaContext:
        return CudaContext(self, n_ctx)

    def forward(self, ctx: CudaContext, tokens, pos0: int, logits_out, all_logits: bool) -> None:
        """As the CPU Transformer's: evaluate `tokens` at positions pos0.. into ctx's cache; logits_out None, a
        float32 [1, vocab] array (last position) or, with all_logits, [len(tokens), vocab]."""
        toks = self._token_ids(tokens)
        n = len(toks)
        self._check_context(ctx)
        check_span(pos0, n, ctx.n_ctx)
        rows = n if all_logits else 1
        if logits_out is not None and (logits_out.shape != (rows, self.n_vocab) or logits_out.dtype != np.float32
                                       or not logits_out.flags.c_contiguous):
            raise ValueError(f"logits_out must be a C-contiguous float32 array of shape ({rows}, {self.n_vocab})")
        with self._lock:
            self.dev.activate()
            self._drain()
            if n == 1 and logits_out is not None:
                self._step(ctx, int(toks[0]), pos0, logits_out)
                return
            for start in range(0, n, UBATCH):
                chunk = toks[start:start + UBATCH]
                T = len(chunk)
                self.dev.upload(self.s["tokens"], chunk)
                self.dev.upload(self.s["pos"], np.arange(pos0 + start, pos0 + start + T, dtype=np.int32))
                if T == UBATCH and not self.dev.sync_launches:   # ~300 launches per layer from one graph
                    self.dev.replay(self._graph(ctx, "chunk"))
                else:
                    self._layers(ctx, T, self.s["tokens"], self.s["pos"])
                if logits_out is None:
                    continue
                if all_logits:
                    self._head(0, T, logits_out[start:start + T])
                elif start + T == n:
                    self._head(T - 1, 1, logits_out)
            self.dev.synchronize()

    def greedy(self, ctx: CudaContext, token: int, pos: int) -> int:
        """Evaluate one token at `pos` and return the index of its largest logit (the first on ties), computed on
        the device: 4 bytes come back instead of the logits. ModelError when a logit is not finite."""
        (tok,) = self._token_ids([token])
        self._check_context(ctx)
        check_span(pos, 1, ctx.n_ctx)
        with self._lock:
            self.dev.activate()
            self._drain()
            self._step(ctx, int(tok), pos, None)
            best, bad = int(self._greedy_out[0]), int(self._greedy_out[1])
        if bad:
            raise non_finite_logit(pos)
        return best

    def forward_batch(self, contexts, tokens, positions, owners, logit_rows, logits_out) -> None:
        """As the CPU Transformer's: row r evaluates tokens[r] at positions[r] in contexts[owners[r]]; the rows of
        one context are one run of consecutive positions. Each run is evaluated with `forward` (on the GPU one
        sequence's step is already a wide launch; rows of different sequences would not share a graph)."""
        toks = self._token_ids(tokens)
        pos, own, wanted = ([int(v) for v in np.asarray(a, dtype=np.int64).reshape(-1)]
                            for a in (positions, owners, logit_rows))
        for ctx in contexts:
            self._check_context(ctx)
        runs = batch_runs(pos, own, [ctx.n_ctx for ctx in contexts], wanted, len(toks))
        check_logits_out(None if logits_out is None else logits_out.shape, len(wanted), self.n_vocab)
        for o, r0, r1 in runs:
            inside = [i for i, w in enumerate(wanted) if r0 <= w < r1]
            ctx, chunk, p0 = contexts[o], toks[r0:r1], int(pos[r0])
            if not inside:
                self.forward(ctx, chunk, p0, None, False)
            elif [int(wanted[i]) for i in inside] == [r1 - 1]:
                out = np.empty((1, self.n_vocab), dtype=np.float32)
                self.forward(ctx, chunk, p0, out, False)
                logits_out[inside[0]] = out[0]
            else:
                out = np.empty((r1 - r0, self.n_vocab), dtype=np.float32)
                self.forward(ctx, chunk, p0, out, True)
                for i in inside:
                    logits_out[i] = out[int(wanted[i]) - r0]

    # -- checks shared by the entry points
    def _token_ids(self, tokens) -> np.ndarray:
        toks = np.asarray(tokens)
        if toks.ndim != 1 or (toks.size and not np.issubdtype(toks.dtype, np.integer)):
            raise TypeError("tokens must be a sequence of integers")
        check_tokens(toks.tolist(), self.n_vocab)
        return toks.astype(np.int32)

    def _check_context(self, ctx) -> None:
        if not isinstance(ctx, CudaContext) or ctx.model is not self:
            raise ValueError("the context was made for a different model")

    # -- CUDA graphs
    def _step(self, ctx: CudaContext, token: int, pos: int, logits_out) -> None:
        """One token through the model by replaying ctx's captured graph (capturing it the first time): with
        logits_out, the logits come back; without, only the device argmax (into self._greedy_out)."""
        greedy = logits_out is None
        kind = "greedy" if greedy else "logits"
        self._io[0], self._io[1] = token, pos
        dev, step = self.dev, self.s["step"]
        if dev.sync_launches:            # each launch on its own, synchronized (BITNET_CUDA_SYNC=1)
            dev.upload(step, self._io)
            self._record(ctx, kind)
        else:
            graph = self._graph(ctx, kind)
            dev.upload(step, self._io)
            dev.replay(graph)
        if greedy:
            dev.download(self._greedy_out, step + 8, 8)
        else:
            dev.download(logits_out, self.s["logits"], 4 * self.n_vocab)

    def _graph(self, ctx: CudaContext, kind: str):
        """ctx's graph of `kind` (see CudaContext.graphs), captured now if it is the first use."""
        if kind in ctx.graphs:
            return ctx.graphs[kind]
        self.dev.begin_capture()
        self._capturing = True
        try:
            self._record(ctx, kind)
        finally:
            try:
                graph = self.dev.end_capture()     # also ends a capture that failed half-way
            finally:
                self._capturing = False
                self._drain()
        ctx.graphs[kind] = graph
        return graph

    def _record(self, ctx: CudaContext, kind: str) -> None:
        """The launches of a graph of `kind` (captured by _graph, or issued one by one with BITNET_CUDA_SYNC=1)."""
        s, step = self.s, self.s["step"]
        if kind == "chunk":       # reads the tokens and positions uploaded to s['tokens'] and s['pos']
            self._layers(ctx, UBATCH, s["tokens"], s["pos"])
            return
        self._layers(ctx, 1, step, step + 4)       # reads its token and position from s['step']
        self._head(0, 1, None)
        if kind == "greedy":     # two stages: the 128,256 logits of LLaMA-3 over many SMs, then the merge
            self.dev.launch("argmax_blocks", (ARGMAX_PARTS,), ARGMAX_BLOCK, s["logits"], self.n_vocab, s["argmax"])
            self.dev.launch("argmax", (1,), ARGMAX_PARTS, s["argmax"], ARGMAX_PARTS, step + 8)

    # -- the layers
    def _layers(self, ctx: CudaContext, T: int, tokens: int, pos: int) -> None:
        """T tokens (ids at device address `tokens`, positions at `pos`) through every layer into s['x']."""
        d, s, dev = self.d, self.s, self.dev
        E, F, HD = d["n_embd"], d["n_ff"], d["head_dim"]
        dev.launch("embed_rows", (_blocks(E, BLOCK), T), BLOCK, self.tok_embd.ptr, self.tok_embd.gtype, E, tokens,
                   s["x"])
        for li, L in enumerate(self.layers):
            kc, vc = ctx.kcache + li * ctx.layer_bytes, ctx.vcache + li * ctx.layer_bytes
            self._project(s["x"], L["attn_norm"], E, T, [L["attn_q"], L["attn_k"], L["attn_v"]],
                          [s["q"], s["k"], s["v"]])
            work = (d["n_head"] + d["n_head_kv"]) * HD // 2 + self.kv_dim
            dev.launch("rope_store", (_blocks(work, BLOCK), T), BLOCK, s["q"], s["k"], s["v"], d["n_head"],
                       d["n_head_kv"], HD, s["rope"], pos, 1 if d["rope_neox"] else 0, kc, vc)
            for t0 in range(0, T, ATTENTION_TOKENS):
                g = min(ATTENTION_TOKENS, T - t0)
                dev.launch("attention_split", (d["n_head"], ctx.n_split, g), 32 * ATTENTION_WARPS,
                           s["q"] + 4 * t0 * self.q_dim, kc, vc, d["n_head"], d["n_head_kv"], HD, pos + 4 * t0,
                           ATTENTION_CHUNK, self.att_scale, s["part_o"], s["part_ml"])
                dev.launch("attention_combine", (d["n_head"], g), _blocks(HD, 32) * 32, s["part_o"], s["part_ml"],
                           d["n_head"], HD, ctx.n_split, s["att"] + 4 * t0 * self.q_dim)
            self._project(s["att"], L.get("attn_sub_norm"), self.q_dim, T, [L["attn_output"]], [s["x"]],
                          accumulate=True)
            self._project(s["x"], L["ffn_norm"], E, T, [L["ffn_gate"], L["ffn_up"]], [s["gate"], s["up"]])
            self._project(s["gate"], L.get("ffn_sub_norm"), F, T, [L["ffn_down"]], [s["x"]], accumulate=True,
                          gating=(GATING_SILU if d["ffn_silu"] else GATING_RELU2, s["up"]))

    def _project(self, src: int, norm: int | None, n: int, T: int, mats: list[DeviceMatrix], outs: list[int],
                 accumulate: bool = False, gating: tuple[int, int] = (GATING_NONE, 0)) -> None:
        """outs[i][T, M_i] = (or +=) mats[i] applied to RMSNorm(h[T, n]) (h itself when norm is None), where h is
        src, or with gating (kind, up) the FFN gating of src and up. The ternary matrices read it quantized (one
        norm_quant, which also does the gating, for all of them; one launch for up to three); float ones read
        the floats (the gating then written into src first)."""
        d, s, dev = self.d, self.s, self.dev
        ternary = [(m, y) for m, y in zip(mats, outs) if m.ternary]
        floats = [(m, y) for m, y in zip(mats, outs) if not m.ternary]
        kind, up = gating
        if floats and kind != GATING_NONE:     # in place into src: relu2_mul/silu_mul allow out == gate
            dev.launch("silu_mul" if kind == GATING_SILU else "relu2_mul", (_blocks(T * n, BLOCK),), BLOCK, src, up,
                       T * n, src)
            kind, up = GATING_NONE, 0
        if ternary:
            dev.launch("norm_quant", (T,), BLOCK, src, up, kind, norm or 0, n, d["eps"], 0 if norm is None else 1,
                       s["xq"], s["qi"])
            for t0 in range(0, T, MATMUL_TOKENS):
                self._ternary_matmul(ternary, t0, min(MATMUL_TOKENS, T - t0), accumulate)
        if floats:
            x = src
            if norm is not None:
                dev.launch("rmsnorm", (T,), BLOCK, src, norm, n, d["eps"], s["xn"])
                x = s["xn"]
            for m, y in floats:
                self._float_matmul(m, x, T, y, m.M, accumulate)

    def _ternary_matmul(self, pairs: list[tuple[DeviceMatrix, int]], t0: int, g: int, accumulate: bool) -> None:
        """One i2g_matmul launch: tokens t0..t0+g-1 of the quantized input in s['xq'] through up to three
        (matrix, output) pairs sharing it."""
        s, n = self.s, pairs[0][0].K
        (m0, y0), (m1, y1), (m2, y2) = (pairs + [(None, 0)] * 2)[:3]
        rows = sum(m.M for m, _ in pairs)
        self.dev.launch("i2g_matmul", (_blocks(rows, MATMUL_ROWS),), 32 * MATMUL_ROWS,
                        m0.ptr, m1.ptr if m1 else 0, m2.ptr if m2 else 0, n, m0.M, m1.M if m1 else 0,
                        m2.M if m2 else 0, s["xq"] + t0 * n, s["qi"] + 8 * t0, g, m0.wscale,
                        m1.wscale if m1 else 0.0, m2.wscale if m2 else 0.0, y0 + 4 * t0 * m0.M,
                        y1 + 4 * t0 * m1.M if m1 else 0, y2 + 4 * t0 * m2.M if m2 else 0, 1 if accumulate else 0)

    def _float_matmul(self, m: DeviceMatrix, x: int, T: int, y: int, ldy: int, accumulate: bool) -> None:
        for t0 in range(0, T, MATMUL_TOKENS):
            g = min(MATMUL_TOKENS, T - t0)
            self.dev.launch(FLOAT_KERNELS[m.gtype], (_blocks(m.M, MATMUL_ROWS),), 32 * MATMUL_ROWS, m.ptr, m.K, m.M,
                            x + 4 * t0 * m.K, g, y + 4 * t0 * ldy, ldy, 1 if accumulate else 0)

    def _head(self, row0: int, rows: int, logits_out) -> None:
        """Logits of the residual rows row0..row0+rows-1 into logits_out (host, [rows, vocab]) in groups of
        LOGIT_ROWS; with logits_out None (graph capture) they stay in s['logits'] (rows must be 1)."""
        d, s, dev, E, V = self.d, self.s, self.dev, self.d["n_embd"], self.d["n_vocab"]
        for r0 in range(0, rows, LOGIT_ROWS):
            g = min(LOGIT_ROWS, rows - r0)
            dev.launch("rmsnorm", (g,), BLOCK, s["x"] + 4 * (row0 + r0) * E, self.output_norm, E, d["eps"], s["xn"])
            self._float_matmul(self.output, s["xn"], g, s["logits"], V, False)
            if logits_out is not None:
                dev.download(logits_out[r0:r0 + g], s["logits"], 4 * g * V)


__all__ = ["CudaContext", "CudaMemoryError", "CudaTransformer", "DeviceMatrix"]
