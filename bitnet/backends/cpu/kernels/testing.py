"""The kernels as numpy functions, for tests, benchmarks and tools (not used by the engine, whose compiled
forward pass calls the kernel table directly; the LUT-or-mac choice measures through that forward pass too).
Each function takes ``variant=`` to run one ISA table, and re-exports the selection API, so that
``import bitnet.backends.cpu.kernels.testing as bk`` is all a test needs.

Weight shapes are numpy order: a matrix of M output rows of K inputs is ``[M, K]`` (GGUF dims ``[K, M]``).
"""
from __future__ import annotations

import numpy as np

from bitnet.backends.cpu.kernels import (  # noqa: F401 - the selection API, re-exported for tests
    _FLOAT,
    _TERNARY,
    _TYPE_NAMES,
    GGML_BF16,
    GGML_F16,
    GGML_F32,
    GGML_I2_S,
    GGML_Q8_0,
    GGML_TQ1_0,
    GGML_TQ2_0,
    KERNEL_NAMES,
    TERNARY_PATHS,
    VARIANT_FEATURES,
    VARIANTS,
    _bytes,
    _check_matmul,
    _table,
    _weight_bytes,
    active_variant,
    compiled_variants,
    cpu_info,
    encode_q80,
    i2g_pack,
    ran_kernels,
    requested_ternary_path,
    reset_ran,
    rope_table,
    set_variant,
    supported_variants,
)
from bitnet.backends.cpu.kernels import _kernels as _k
from bitnet.errors import KernelError
from bitnet.gguf.constants import I2S_SCALE_BYTES, i2s_code_bytes


def _f32_2d(x: np.ndarray, K: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.shape[-1] != K:
        raise ValueError(f"{what} must have shape [K] or [T, K] with K={K}, got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    return np.ascontiguousarray(x.reshape(-1, K), dtype=np.float32)


def _i2s_scale(buf: np.ndarray, n: int) -> float:
    at = i2s_code_bytes(n)
    return float(buf[at:at + I2S_SCALE_BYTES].view(np.float32)[0])


def quantize_act(x: np.ndarray, variant: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token int8 quantization of x ([K] or [T, K]): (q int8 [T, K], scale float32 [T], sum int32 [T])."""
    v = _table(variant)
    x2 = _f32_2d(x, np.shape(x)[-1], "x")
    q = np.empty(x2.shape, dtype=np.int8)
    info = np.empty(x2.shape[0] * 8, dtype=np.uint8)
    _k.quantize_act(v, x2, q, info)
    scale = info.view(np.float32)[0::2].copy()
    total = info.view(np.int32)[1::2].copy()
    return q, scale, total


def ternary_matmul(data, ggml_type: int, K: int, M: int, x: np.ndarray, variant: str | None = None,
                   n_threads: int | None = None) -> np.ndarray:
    """y = W x for a ternary weight (I2_S, TQ2_0, TQ1_0) of numpy shape [M, K].

    x is float32 [K] or [T, K]; it is quantized per token, then multiplied with gemv (T == 1) or gemm.
    Returns float32 [M] or [T, M] like x.
    """
    buf = _check_matmul(data, ggml_type, K, M, _TERNARY, "ternary_matmul")
    v = _table(variant)
    x2 = _f32_2d(x, K, "x")
    q = np.empty(x2.shape, dtype=np.int8)
    info = np.empty(x2.shape[0] * 8, dtype=np.uint8)
    _k.quantize_act(v, x2, q, info)
    wscale = _i2s_scale(buf, K * M) if ggml_type == GGML_I2_S else 1.0
    y = np.empty((x2.shape[0], M), dtype=np.float32)
    _k.ternary_matmul(v, ggml_type, buf, K, M, q, info, wscale, y, n_threads)
    return y if np.ndim(x) == 2 else y[0]


def _quantized(q, scale, qsum, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Given int8 activations [T, K] with their scales and sums: (q, the packed bn_qinfo array)."""
    q = np.ascontiguousarray(np.asarray(q, dtype=np.int8).reshape(-1, K))
    T = q.shape[0]
    info = np.empty(T * 8, dtype=np.uint8)
    info.view(np.float32)[0::2] = np.broadcast_to(np.asarray(scale, np.float32), (T,))
    info.view(np.int32)[1::2] = np.broadcast_to(np.asarray(qsum, np.int32), (T,))
    return q, info


def ternary_matmul_q(data, ggml_type: int, K: int, M: int, q: np.ndarray, scale: np.ndarray, qsum: np.ndarray,
                     variant: str | None = None, n_threads: int | None = None, gemm: bool = False,
                     row_chunk: int | None = None) -> np.ndarray:
    """Like ternary_matmul but with already-quantized activations q int8 [T, K] (any int8 values), their
    scales and sums: for exercising the integer kernels directly. gemm=True sends a single token through the
    gemm kernel instead of gemv; row_chunk sets how many rows each kernel call gets (row ranges [r0, r1)
    that start anywhere). Returns float32 [T, M]."""
    buf = _check_matmul(data, ggml_type, K, M, _TERNARY, "ternary_matmul_q")
    v = _table(variant)
    q, info = _quantized(q, scale, qsum, K)
    T = q.shape[0]
    wscale = _i2s_scale(buf, K * M) if ggml_type == GGML_I2_S else 1.0
    y = np.empty((T, M), dtype=np.float32)
    _k.ternary_matmul(v, ggml_type, buf, K, M, q, info, wscale, y, n_threads, gemm, row_chunk)
    return y


def lut_pack(data, K: int, M: int, n_threads: int | None = None) -> np.ndarray:
    """The LUT form of an I2_S weight of numpy shape [M, K] (layout in src/kernels.h): uint8, the same 2 bits
    per weight in tiles of 32 rows, for lut_matmul and the forward pass."""
    buf = _check_matmul(data, GGML_I2_S, K, M, (GGML_I2_S,), "lut_pack")
    out = np.empty(_k.lut_bytes(K, M), dtype=np.uint8)
    _k.lut_pack(buf, K, M, out, n_threads)
    return out


def lut_matmul(lut: np.ndarray, K: int, M: int, q: np.ndarray, scale: np.ndarray, qsum: np.ndarray,
               wscale: float, variant: str | None = None, n_threads: int | None = None, gemm: bool = False,
               row_chunk: int | None = None) -> np.ndarray:
    """ternary_matmul_q for a weight in the LUT form (lut_pack): float32 [T, M], the I2_S kernels' bits."""
    lut = np.ascontiguousarray(lut, dtype=np.uint8).reshape(-1)
    if lut.size != _k.lut_bytes(K, M):
        raise ValueError(f"a LUT-form weight of [{M}, {K}] has {_k.lut_bytes(K, M)} bytes, got {lut.size}")
    v = _table(variant)
    q, info = _quantized(q, scale, qsum, K)
    y = np.empty((q.shape[0], M), dtype=np.float32)
    _k.lut_matmul(v, lut, K, M, q, info, float(wscale), y, n_threads, gemm, row_chunk)
    return y


def float_matmul(data, ggml_type: int, K: int, M: int, x: np.ndarray, variant: str | None = None,
                 n_threads: int | None = None) -> np.ndarray:
    """y = W x for a float-type weight (F32, F16, Q8_0, BF16), numpy shape [M, K]; x float32 [K] or [T, K]."""
    buf = _check_matmul(data, ggml_type, K, M, _FLOAT, "float_matmul")
    v = _table(variant)
    x2 = _f32_2d(x, K, "x")
    y = np.empty((x2.shape[0], M), dtype=np.float32)
    _k.float_matmul(v, ggml_type, buf, K, M, x2, y, n_threads)
    return y if np.ndim(x) == 2 else y[0]


def quantize_q8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activations [T, K] (K % 32 == 0) -> int8 codes [T, K] and float block scales [T, K/32], as ggml's Q8_0
    quantizer (d = amax / 127, q = roundf(x / d)) but with d kept in float32."""
    x2 = _f32_2d(x, np.shape(x)[-1], "x")
    if x2.shape[1] % 32:
        raise ValueError(f"Q8 activations need K % 32 == 0, got K={x2.shape[1]}")
    q = np.empty(x2.shape, dtype=np.int8)
    d = np.empty((x2.shape[0], x2.shape[1] // 32), dtype=np.float32)
    _k.quantize_q8(x2, q, d)
    return q, d


def q8_matmul(data, K: int, M: int, x: np.ndarray, variant: str | None = None,
              n_threads: int | None = None) -> np.ndarray:
    """y = W x for Q8_0 weights [M, K] with the activations quantized to Q8 (the int8 LM head's path); x float32
    [K] or [T, K]. Same bits from every variant (the lane order of kernels.h)."""
    buf = _check_matmul(data, GGML_Q8_0, K, M, (GGML_Q8_0,), "q8_matmul")
    q, d = quantize_q8(_f32_2d(x, K, "x"))
    y = np.empty((q.shape[0], M), dtype=np.float32)
    _k.q8_matmul(_table(variant), buf, K, M, q, d, y, n_threads)
    return y if np.ndim(x) == 2 else y[0]


def _as_u16(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.float16:
        a = a.view(np.uint16)
    if a.dtype != np.uint16:
        raise ValueError(f"{what} must be float16 (or its uint16 bits), got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def _heads(q: np.ndarray) -> np.ndarray:
    qa = np.asarray(q)
    if qa.ndim not in (1, 2) or qa.size == 0:
        raise ValueError(f"q must be a non-empty [head_dim] or [n_q, head_dim], got shape {qa.shape}")
    return np.ascontiguousarray(qa, dtype=np.float32).reshape(-1, qa.shape[-1])


def _attend(qa, k: np.ndarray, v: np.ndarray, scale: float, variant: str | None, with_ml: bool, q8: bool,
            ahead: np.ndarray | None = None):
    qf = _heads(qa)
    out = np.empty(qf.shape, dtype=np.float32)
    ml = np.empty((qf.shape[0], 2), dtype=np.float32)
    _k.attention(_table(variant), qf, k, v, float(scale), out, ml, q8,
                 None if ahead is None else np.ascontiguousarray(ahead).reshape(-1).view(np.uint8))
    out = out.reshape(np.shape(qa))
    return (out, ml) if with_ml else out


def attention(q: np.ndarray, k_f16: np.ndarray, v_f16: np.ndarray, scale: float,
              variant: str | None = None, with_ml: bool = False, ahead: np.ndarray | None = None):
    """softmax(q . k_i * scale) weighted sum of v_i for one head, q [head_dim], or for the n_q heads of a GQA
    group sharing k and v, q [n_q, head_dim] (the result has q's shape); k, v [n_kv, S] f16 with row stride
    S >= head_dim (the first head_dim entries of each row are used). with_ml: also each head's max score and
    sum of exponentials, [n_q, 2] (what attention_merge folds). ahead: an array the kernel may fetch into
    cache on the way (the hint kernels.h describes; results never depend on it)."""
    hd = _heads(q).shape[1]
    k16, v16 = _as_u16(k_f16, "k"), _as_u16(v_f16, "v")
    if k16.ndim != 2 or k16.shape != v16.shape or k16.shape[1] < hd or k16.shape[0] == 0:
        raise ValueError(f"k and v must both be [n_kv >= 1, S >= head_dim={hd}], got {k16.shape} and {v16.shape}")
    return _attend(q, k16.view(np.uint8), v16.view(np.uint8), scale, variant, with_ml, False, ahead)


def encode_q80_rows(x: np.ndarray) -> np.ndarray:
    """float rows [n, K] (K % 32 == 0) -> their Q8_0 encoding [n, K/32*34] (what the 8-bit KV cache stores)."""
    x2 = _f32_2d(x, np.shape(x)[-1], "x")
    if x2.shape[1] % 32:
        raise ValueError(f"Q8_0 rows need K % 32 == 0, got K={x2.shape[1]}")
    return encode_q80(x2.reshape(-1).view(np.uint8), GGML_F32, x2.shape[1], x2.shape[0]).reshape(x2.shape[0], -1)


def attention_q8(q: np.ndarray, k_q8: np.ndarray, v_q8: np.ndarray, scale: float,
                 variant: str | None = None, with_ml: bool = False, ahead: np.ndarray | None = None):
    """attention over a Q8_0 cache: k, v [n_kv, head_dim/32*34] uint8 rows (encode_q80_rows)."""
    hd = _heads(q).shape[1]
    kq, vq = np.ascontiguousarray(k_q8, dtype=np.uint8), np.ascontiguousarray(v_q8, dtype=np.uint8)
    if hd % 32 or kq.ndim != 2 or kq.shape != vq.shape or kq.shape[1] != hd // 32 * 34 or kq.shape[0] == 0:
        raise ValueError(f"k and v must both be [n_kv >= 1, {hd // 32 * 34}] Q8_0 rows of head_dim={hd} "
                         f"(a multiple of 32), got {kq.shape} and {vq.shape}")
    return _attend(q, kq, vq, scale, variant, with_ml, True, ahead)


def attention_merge(parts: np.ndarray, ml: np.ndarray) -> np.ndarray:
    """Fold the attention results of consecutive spans, parts [n_parts, n_q, head_dim] with their ml
    [n_parts, n_q, 2], in order (bn_attention_merge) -> [n_q, head_dim]."""
    p = np.ascontiguousarray(parts, dtype=np.float32)
    m = np.ascontiguousarray(ml, dtype=np.float32)
    if p.ndim != 3 or p.shape[0] == 0 or m.shape != (*p.shape[:2], 2):
        raise ValueError(f"parts [n_parts >= 1, n_q, head_dim] and ml [n_parts, n_q, 2], got {p.shape}, {m.shape}")
    out = np.empty(p.shape[1:], dtype=np.float32)
    _k.attention_merge(p, m, out)
    return out


def _vec(x: np.ndarray, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what} is empty")
    return x


def rmsnorm(x: np.ndarray, w: np.ndarray | None, eps: float) -> np.ndarray:
    xf = _vec(x, "x")
    wf = None if w is None else _vec(w, "w")
    if wf is not None and wf.size != xf.size:
        raise ValueError(f"rmsnorm weight has {wf.size} entries for {xf.size} inputs")
    out = np.empty_like(xf)
    _k.rmsnorm(xf, wf, float(eps), out)
    return out


def rope(x: np.ndarray, pos: int, base: float, rope_dim: int | None = None, neox: bool = True) -> np.ndarray:
    """Rotary embedding of x [n_heads, head_dim] at position pos (a rotated copy)."""
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.ndim != 2 or out.size == 0:
        raise ValueError(f"rope expects [n_heads, head_dim], got {out.shape}")
    rd = out.shape[1] if rope_dim is None else int(rope_dim)
    if rd <= 0 or rd > out.shape[1] or rd % 2:
        raise ValueError(f"rope_dim must be even and within head_dim={out.shape[1]}, got {rd}")
    _k.rope(out, rd, int(pos), float(base), bool(neox))
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    out = _vec(x, "x").copy()
    _k.softmax(out)
    return out


def _pair(g: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gf, uf = _vec(g, "gate"), _vec(u, "up")
    if gf.size != uf.size:
        raise ValueError(f"gate and up differ in size: {gf.size} vs {uf.size}")
    return gf, uf


def relu2_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    gf, uf = _pair(gate, up)
    out = np.empty_like(gf)
    _k.relu2_mul(gf, uf, out)
    return out


def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    gf, uf = _pair(gate, up)
    out = np.empty_like(gf)
    _k.silu_mul(gf, uf, out)
    return out


def f32_to_f16(x: np.ndarray) -> np.ndarray:
    """float32 -> float16, round to nearest even (returned as a float16 array)."""
    xf = _vec(x, "x")
    out = np.empty(xf.size, dtype=np.uint16)
    _k.f32_to_f16(xf, out)
    return out.view(np.float16)


def f16_to_f32(h: np.ndarray) -> np.ndarray:
    hu = _as_u16(h, "h").reshape(-1)
    out = np.empty(hu.size, dtype=np.float32)
    if hu.size:
        _k.f16_to_f32(hu, out)
    return out


def bf16_to_f32(h: np.ndarray) -> np.ndarray:
    hu = np.ascontiguousarray(h, dtype=np.uint16).reshape(-1)
    out = np.empty(hu.size, dtype=np.float32)
    if hu.size:
        _k.bf16_to_f32(hu, out)
    return out


def dequant_row(ggml_type: int, data, K: int, row: int) -> np.ndarray:
    """Row `row` of a [rows, K] F32 / F16 / Q8_0 / BF16 tensor as float32 (the embedding lookup)."""
    if ggml_type not in _FLOAT:
        raise KernelError(f"dequant_row supports ggml types F32, F16, Q8_0, BF16; got type {ggml_type}")
    buf = _bytes(data)
    per_row = _weight_bytes(ggml_type, K, 1)
    if row < 0 or (row + 1) * per_row > buf.size:
        raise ValueError(f"row {row} is outside the tensor ({buf.size // per_row} rows of {per_row} bytes)")
    out = np.empty(K, dtype=np.float32)
    _k.dequant_row(ggml_type, buf, K, row, out)
    return out
