"""Tensor codecs (vectorised numpy): I2_S, TQ2_0, TQ1_0, Q8_0, BF16, F16, F32 (docs/formats.md §2-4).

Encoders follow ggml's reference quantizers bit for bit (d = block absmax or absmax/127 computed in float32,
stored as f16; codes from float32 `x * (1/d)` rounded half away from zero), so files written here are the
files llama.cpp would write. Shapes are numpy order (rows last = ne0 last).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bitnet.errors import GGUFError
from bitnet.gguf.constants import I2S_BLOCK, I2S_TAIL_BYTES, GGMLType, tensor_nbytes_dims

QK_K = 256
QK8_0 = 32
# I2_S packing block (elements) per layout: the official x86 one, and bitnet.cpp's ARM build since Nov 2025.
I2S_LAYOUTS = {"x86": I2S_BLOCK, "arm": 64}
# code -> ternary value; code 3 is never written and decodes as 0
_I2S_VALUES = np.array([-1, 0, 1, 0], dtype=np.int8)
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if not shape or any(d <= 0 for d in shape):
        raise GGUFError(f"invalid tensor shape {shape}: needs at least one dimension, all positive")
    return shape


def tensor_nbytes(ggml_type: GGMLType | int, shape: Sequence[int]) -> int:
    """Encoded size in bytes of a tensor of numpy `shape`, validating the block rules of `ggml_type`."""
    shape = _shape(shape)
    return tensor_nbytes_dims(GGMLType(ggml_type), shape[::-1], f"shape {shape}")


def _raw_bytes(raw: bytes | np.ndarray, expected: int, what: str) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise GGUFError(f"{what}: encoded data must be uint8 bytes, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if arr.size != expected:
        raise GGUFError(f"{what}: expected {expected} bytes, got {arr.size}")
    return arr


def _float_blocks(w: np.ndarray, block: int, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """float32 values cut into rows of `block` elements; rows (last axis) must be a multiple of `block`."""
    x = np.asarray(w, dtype=np.float32)
    if x.ndim == 0 or x.size == 0:
        raise GGUFError(f"{what}: needs a non-empty array with at least one dimension, got shape {x.shape}")
    if x.shape[-1] % block:
        raise GGUFError(f"{what}: rows must be a multiple of {block} long, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise GGUFError(f"{what}: input contains NaN or infinity")
    return np.ascontiguousarray(x).reshape(-1, block), x.shape


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C roundf(): half away from zero, exact in float32 (no x + 0.5 double rounding)."""
    a = np.abs(x)
    floor = np.floor(a)
    return np.copysign(floor + (a - floor >= 0.5), x)


def _reciprocal(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _f16_bytes(d: np.ndarray, what: str) -> np.ndarray:
    if (d > np.finfo(np.float16).max).any():
        raise GGUFError(f"{what}: a block scale {float(d.max())} exceeds the float16 range")
    return d.astype("<f2").view(np.uint8)


def _f16_values(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


# ---------------------------------------------------------------------------------------------- I2_S

def pack_i2s(ternary: np.ndarray, scale: float, layout: str = "x86") -> np.ndarray:
    """Pack ternary weights (-1/0/+1) and one per-tensor scale into I2_S bytes (codes + f32 scale + 28 zeros).

    x86 layout (the official one): blocks of 128 over the FLAT index, 32 bytes each; element j of a block
    goes to byte j % 32 at bit shift 6 - 2*(j // 32). The ARM layout is the same with 64-element blocks.
    """
    block = _i2s_block(layout)
    t = np.asarray(ternary)
    if t.dtype.kind not in "iu":
        raise GGUFError(f"pack_i2s: ternary weights must be an integer array, got dtype {t.dtype}")
    if t.size == 0 or t.size % block:
        raise GGUFError(f"pack_i2s: element count must be a positive multiple of {block}, got {t.size}")
    if t.min() < -1 or t.max() > 1:
        raise GGUFError("pack_i2s: ternary weights must be -1, 0 or +1")
    if not np.isfinite(scale):
        raise GGUFError(f"pack_i2s: scale must be finite, got {scale}")
    codes = (t.reshape(-1, 4, block // 4).astype(np.int16) + 1).astype(np.uint8)
    packed = (codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]
    tail = np.zeros(I2S_TAIL_BYTES, dtype=np.uint8)
    tail[:4] = np.array([scale], dtype="<f4").view(np.uint8)
    return np.concatenate([packed.reshape(-1), tail])


def _i2s_split(raw: bytes | np.ndarray, shape: Sequence[int], layout: str) -> tuple[np.ndarray, float]:
    block = _i2s_block(layout)
    shape = _shape(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if n % block:
        raise GGUFError(f"I2_S: element count must be a multiple of {block}, shape {shape} has {n}")
    arr = _raw_bytes(raw, n // 4 + I2S_TAIL_BYTES, f"I2_S tensor of shape {shape}")
    packed = arr[: n // 4].reshape(-1, 1, block // 4)
    shifts = np.array([6, 4, 2, 0], dtype=np.uint8).reshape(1, 4, 1)
    codes = ((packed >> shifts) & 3).reshape(shape)
    scale = float(np.ascontiguousarray(arr[n // 4: n // 4 + 4]).view("<f4")[0])
    return codes, scale


def unpack_i2s_codes(raw: bytes | np.ndarray, shape: Sequence[int], layout: str = "x86") -> np.ndarray:
    """The raw 2-bit codes (0..3) of an I2_S tensor as uint8 in numpy `shape`."""
    return _i2s_split(raw, shape, layout)[0]


def unpack_i2s(raw: bytes | np.ndarray, shape: Sequence[int], layout: str = "x86") -> tuple[np.ndarray, float]:
    """(ternary int8 weights in numpy `shape`, per-tensor scale). Code 3 (never written) decodes as 0."""
    codes, scale = _i2s_split(raw, shape, layout)
    return _I2S_VALUES[codes], scale


def quantize_i2s(w: np.ndarray, layout: str = "x86") -> np.ndarray:
    """bitnet.cpp's I2_S quantizer for weights already of the form ternary x scale (docs/formats.md §3):
    scale = max|w| over the tensor; |w| >= 1e-6 becomes +/-1 by its sign, anything smaller 0."""
    x = np.asarray(w, dtype=np.float32)
    if x.size and not np.isfinite(x).all():
        raise GGUFError("quantize_i2s: input contains NaN or infinity")
    ternary = np.where(np.abs(x) < 1e-6, 0, np.sign(x)).astype(np.int8)
    scale = float(np.abs(x).max()) if x.size else 0.0
    return pack_i2s(ternary, scale, layout)


def _i2s_block(layout: str) -> int:
    try:
        return I2S_LAYOUTS[layout]
    except KeyError:
        raise GGUFError(f"unknown I2_S layout {layout!r} (known: {', '.join(I2S_LAYOUTS)})") from None


# ---------------------------------------------------------------------------------------------- TQ2_0

def quantize_tq2_0(w: np.ndarray) -> np.ndarray:
    """ggml's TQ2_0: per 256-block d = max|w| (f16), code = round(w/d) + 1, 4 codes a byte, low bits first."""
    blocks, _ = _float_blocks(w, QK_K, "TQ2_0")
    d = np.abs(blocks).max(axis=1, keepdims=True)
    codes = (_round_half_away(blocks * _reciprocal(d)) + 1).astype(np.uint8)
    # element 128h + 32l + m -> byte 32h + m, bits 2l
    codes = codes.reshape(-1, 2, 4, 32)
    packed = codes[:, :, 0] | (codes[:, :, 1] << 2) | (codes[:, :, 2] << 4) | (codes[:, :, 3] << 6)
    return np.concatenate([packed.reshape(-1, 64), _f16_bytes(d, "TQ2_0")], axis=1).reshape(-1)


def dequantize_tq2_0(raw: bytes | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    shape = _shape(shape)
    blocks = _raw_bytes(raw, tensor_nbytes(GGMLType.TQ2_0, shape), f"TQ2_0 tensor of shape {shape}")
    blocks = blocks.reshape(-1, 66)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    codes = (blocks[:, :64].reshape(-1, 2, 1, 32) >> shifts) & 3
    values = codes.reshape(-1, QK_K).astype(np.float32) - 1
    return (values * _f16_values(blocks[:, 64:66])).reshape(shape)


# ---------------------------------------------------------------------------------------------- TQ1_0

def quantize_tq1_0(w: np.ndarray) -> np.ndarray:
    """ggml's TQ1_0: 5 base-3 digits a byte (first element most significant), stored as ceil(q*256/243)."""
    blocks, _ = _float_blocks(w, QK_K, "TQ1_0")
    d = np.abs(blocks).max(axis=1, keepdims=True)
    codes = (_round_half_away(blocks * _reciprocal(d)) + 1).astype(np.int32)
    place = np.array([81, 27, 9, 3, 1], dtype=np.int32)
    q0 = (codes[:, :160].reshape(-1, 5, 32) * place[:, None]).sum(axis=1)      # elements m + 32n
    q1 = (codes[:, 160:240].reshape(-1, 5, 16) * place[:, None]).sum(axis=1)   # elements 160 + m + 16n
    qh = (codes[:, 240:].reshape(-1, 4, 4) * place[:4, None]).sum(axis=1)     # 240 + j + 4n, scaled by 3
    q = np.concatenate([q0, q1, qh], axis=1)
    q = ((q * 256 + 242) // 243).astype(np.uint8)
    return np.concatenate([q, _f16_bytes(d, "TQ1_0")], axis=1).reshape(-1)


def dequantize_tq1_0(raw: bytes | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    shape = _shape(shape)
    blocks = _raw_bytes(raw, tensor_nbytes(GGMLType.TQ1_0, shape), f"TQ1_0 tensor of shape {shape}")
    blocks = blocks.reshape(-1, 54)

    def digits(b: np.ndarray, pows: np.ndarray) -> np.ndarray:
        # digit n of a byte: ((uint8)(byte * 3^n) * 3) >> 8; the uint8 product wraps on purpose
        shifted = (b[:, None, :] * pows[None, :, None]).astype(np.uint8)
        return (shifted.astype(np.uint16) * 3) >> 8

    parts = [digits(blocks[:, :32], _POW3), digits(blocks[:, 32:48], _POW3), digits(blocks[:, 48:52], _POW3[:4])]
    codes = np.concatenate([p.reshape(len(blocks), -1) for p in parts], axis=1)
    values = codes.astype(np.float32) - 1
    return (values * _f16_values(blocks[:, 52:54])).reshape(shape)


# ---------------------------------------------------------------------------------------------- Q8_0

def quantize_q8_0(w: np.ndarray) -> np.ndarray:
    """ggml's Q8_0: per 32-block d = max|w| / 127 (f16), q = round(w / d) as int8."""
    blocks, _ = _float_blocks(w, QK8_0, "Q8_0")
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    q = _round_half_away(blocks * _reciprocal(d)).astype(np.int8)
    return np.concatenate([_f16_bytes(d, "Q8_0"), q.view(np.uint8)], axis=1).reshape(-1)


def dequantize_q8_0(raw: bytes | np.ndarray, shape: Sequence[int]) -> np.ndarray:
    shape = _shape(shape)
    blocks = _raw_bytes(raw, tensor_nbytes(GGMLType.Q8_0, shape), f"Q8_0 tensor of shape {shape}")
    blocks = blocks.reshape(-1, 34)
    q = np.ascontiguousarray(blocks[:, 2:]).view(np.int8).astype(np.float32)
    return (q * _f16_values(blocks[:, :2])).reshape(shape)


# ---------------------------------------------------------------------------------------------- BF16

def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even, NaN kept quiet (as ggml does)."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16
    return np.where(is_nan, (u >> 16) | 64, rounded).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, or the raw little-endian bytes) -> float32."""
    b = np.asarray(bits)
    if b.dtype == np.uint8:
        b = np.ascontiguousarray(b).view("<u2")
    return (b.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------- dispatch

def quantize(w: np.ndarray, ggml_type: GGMLType | int) -> np.ndarray:
    """Encode float values as the bytes of a `ggml_type` tensor (I2_S via bitnet.cpp's quantizer)."""
    ggml_type = GGMLType(ggml_type)
    if ggml_type == GGMLType.F32:
        return np.ascontiguousarray(np.asarray(w, dtype="<f4")).reshape(-1).view(np.uint8)
    if ggml_type == GGMLType.F16:
        return np.ascontiguousarray(np.asarray(w, dtype=np.float32).astype("<f2")).reshape(-1).view(np.uint8)
    if ggml_type == GGMLType.BF16:
        return to_bf16(w).astype("<u2").reshape(-1).view(np.uint8)
    encoders = {GGMLType.Q8_0: quantize_q8_0, GGMLType.TQ1_0: quantize_tq1_0,
                GGMLType.TQ2_0: quantize_tq2_0, GGMLType.I2_S: quantize_i2s}
    return encoders[ggml_type](w)


def dequantize(raw: bytes | np.ndarray, ggml_type: GGMLType | int, shape: Sequence[int]) -> np.ndarray:
    """Decode the bytes of a `ggml_type` tensor to float32 in numpy `shape`."""
    ggml_type = GGMLType(ggml_type)
    shape = _shape(shape)
    if ggml_type == GGMLType.I2_S:
        ternary, scale = unpack_i2s(raw, shape)
        return ternary.astype(np.float32) * np.float32(scale)
    if ggml_type == GGMLType.TQ2_0:
        return dequantize_tq2_0(raw, shape)
    if ggml_type == GGMLType.TQ1_0:
        return dequantize_tq1_0(raw, shape)
    if ggml_type == GGMLType.Q8_0:
        return dequantize_q8_0(raw, shape)
    arr = _raw_bytes(raw, tensor_nbytes(ggml_type, shape), f"{ggml_type.name} tensor of shape {shape}")
    if ggml_type == GGMLType.BF16:
        return from_bf16(arr).reshape(shape)
    dtype = {GGMLType.F32: "<f4", GGMLType.F16: "<f2"}[ggml_type]
    return np.ascontiguousarray(arr).view(dtype).astype(np.float32).reshape(shape)

