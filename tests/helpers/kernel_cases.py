"""Weight packers and random float tensors written from docs/formats.md, independently of the C code: the kernel
tests (unit) and the cross-ISA and GPU tests (integration) build their cases with them."""
from __future__ import annotations

import numpy as np

import bitnet.backends.cpu.kernels.testing as bk


def pack_i2s(codes: np.ndarray, scale: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """I2_S bytes of a flat code array (0..3, length a multiple of 128) + float scale + 28 tail bytes."""
    c = np.asarray(codes, dtype=np.uint8).reshape(-1, 4, 32)  # [block, plane l, m]: element 32l + m
    packed = (c[:, 0] << 6) | (c[:, 1] << 4) | (c[:, 2] << 2) | c[:, 3]
    tail = (rng.integers(0, 256, 28, dtype=np.uint8) if rng is not None else np.zeros(28, np.uint8))
    return np.concatenate([packed.reshape(-1), np.frombuffer(np.float32(scale).tobytes(), np.uint8), tail])


def pack_tq2(codes: np.ndarray, d: np.ndarray) -> np.ndarray:
    """TQ2_0 bytes of codes [M, K] (0..3) with per-block f16 scales d [M, K/256]."""
    M, K = codes.shape
    c = codes.astype(np.uint8).reshape(M * K // 256, 2, 4, 32)  # [block, h, l, m]
    qs = (c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)).reshape(-1, 64)
    dd = np.asarray(d, np.float16).reshape(-1, 1).view(np.uint8)
    return np.concatenate([qs, dd], axis=1).reshape(-1)


def _base3(digits: np.ndarray) -> np.ndarray:
    """Digits [..., n] (first most significant) -> stored byte ceil(q*256/243)."""
    q = np.zeros(digits.shape[:-1], np.int64)
    for i in range(digits.shape[-1]):
        q = q * 3 + digits[..., i]
    return ((q * 256 + 242) // 243).astype(np.uint8)


def pack_tq1(codes: np.ndarray, d: np.ndarray) -> np.ndarray:
    """TQ1_0 bytes of codes [M, K] (0..2) with per-block f16 scales d [M, K/256]."""
    c = codes.astype(np.int64).reshape(-1, 256)
    qs0 = _base3(np.stack([c[:, m + 32 * np.arange(5)] for m in range(32)], axis=1))           # [nb, 32]
    qs1 = _base3(np.stack([c[:, 160 + m + 16 * np.arange(5)] for m in range(16)], axis=1))     # [nb, 16]
    qh_digits = np.stack([c[:, 240 + j + 4 * np.arange(4)] for j in range(4)], axis=1)         # [nb, 4, 4]
    qh = _base3(np.concatenate([qh_digits, np.zeros(qh_digits.shape[:-1] + (1,), np.int64)], axis=-1))
    dd = np.asarray(d, np.float16).reshape(-1, 1).view(np.uint8)
    return np.concatenate([qs0, qs1, qh, dd], axis=1).reshape(-1)



def float_case(ggml_type: int, M: int, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, float64 weights [M, K]) of a random tensor of the type."""
    w = rng.standard_normal((M, K)).astype(np.float32)
    if ggml_type == bk.GGML_F32:
        return w.view(np.uint8).reshape(-1), w.astype(np.float64)
    if ggml_type == bk.GGML_F16:
        h = w.astype(np.float16)
        return h.view(np.uint8).reshape(-1), h.astype(np.float64)
    if ggml_type == bk.GGML_BF16:
        bits = (w.view(np.uint32) >> 16).astype(np.uint16)  # truncation is a valid bf16 value
        values = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return bits.view(np.uint8).reshape(-1), values
    blocks = w.reshape(-1, 32)
    d = (np.abs(blocks).max(1) / 127).astype(np.float16)
    qs = np.clip(np.rint(blocks / np.maximum(d.astype(np.float32), 1e-8)[:, None]), -127, 127).astype(np.int8)
    raw = np.concatenate([d.reshape(-1, 1).view(np.uint8), qs.view(np.uint8)], axis=1).reshape(-1)
    return raw, (qs.astype(np.float64) * d.astype(np.float64)[:, None]).reshape(M, K)


FLOAT_TYPES = [bk.GGML_F32, bk.GGML_F16, bk.GGML_BF16, bk.GGML_Q8_0]
