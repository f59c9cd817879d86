"""Ternary weights from a checkpoint: absmean ternarization of master weights, unpacking of packed ones.

Both paths give the same thing: int8 codes in {-1, 0, +1} of shape [out, in] and one float32 scale per
tensor, the effective weight being code * scale (docs/formats.md §6).
"""
from __future__ import annotations

import numpy as np

from bitnet.errors import ConversionError

ABSMEAN_FLOOR = np.float32(1e-5)
LINEAR_CLASSES = ("autobitlinear", "bitlinear")


def check_finite(name: str, w: np.ndarray) -> None:
    """ConversionError naming the tensor when it holds a NaN or an infinity."""
    if w.dtype.kind == "f" and not np.isfinite(w).all():
        bad = np.flatnonzero(~np.isfinite(w.reshape(-1)))
        what = "NaN" if np.isnan(w.reshape(-1)[bad[0]]) else "Inf"
        raise ConversionError(f"tensor {name!r} holds {bad.size} non-finite value(s) ({what} at flat index "
                              f"{int(bad[0])}); the checkpoint is damaged")


def absmean(w: np.ndarray) -> np.float32:
    """mean(|w|) as the reference computes it: a float32 sum divided by the float32 count.

    The reference reduces in float32 with torch (a blocked, thread-count dependent summation order).
    Summing in float64 and rounding once gives the correctly rounded float32 sum, from which torch's result
    differs by an ulp at most on typical tensors; the division is then done in float32 as torch does it.
    """
    total = np.float32(np.add.reduce(np.abs(w), axis=None, dtype=np.float64))
    return np.float32(total / np.float32(w.size))


def ternarize(name: str, w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Absmean ternarization of float32 master weights: codes = clamp(round_half_even(w·s), -1, 1) with
    s = 1 / max(mean|w|, 1e-5); the scale returned is 1/s (float32), the value the reference stores."""
    w = np.asarray(w, dtype=np.float32)
    check_finite(name, w)
    s = np.float32(1) / np.maximum(absmean(w), ABSMEAN_FLOOR)
    codes = np.clip(np.rint(w * s), -1, 1).astype(np.int8)
    return codes, np.float32(np.float32(1) / s)


def unpack_codes(name: str, packed: np.ndarray, out_features: int) -> np.ndarray:
    """Unpack a uint8 [out/4, in] tensor: packed row p holds rows p, P+p, 2P+p, 3P+p (P = out/4) in bits
    1:0, 3:2, 5:4, 7:6, each as code + 1. Returns int8 codes [out, in]."""
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise ConversionError(f"packed tensor {name!r}: expected a 2-D uint8 array, got {packed.ndim}-D "
                              f"{packed.dtype}")
    rows, cols = packed.shape
    if rows * 4 != out_features:
        raise ConversionError(f"packed tensor {name!r}: shape {packed.shape} packs {rows * 4} rows, the "
                              f"config says {out_features} output features")
    codes = np.empty((4, rows, cols), dtype=np.int8)
    for i in range(4):
        codes[i] = (packed >> (2 * i)) & 3
    if (codes == 3).any():
        raise ConversionError(f"packed tensor {name!r} holds the 2-bit value 3, which no ternary weight "
                              "packs to")
    codes -= 1
    return codes.reshape(out_features, cols)


def packed_scale(name: str, weight_scale: np.ndarray, linear_class: str) -> np.float32:
    """The per-tensor float32 scale of a packed linear: "autobitlinear" multiplies the codes by
    `weight_scale`, the older "bitlinear" divides them by it."""
    values = np.asarray(weight_scale, dtype=np.float32).reshape(-1)
    if values.size != 1:
        raise ConversionError(f"{name!r}: expected one scale per tensor, found {values.size} values")
    value = values[0]
    if not np.isfinite(value) or value == 0:
        raise ConversionError(f"{name!r}: weight scale {float(value)} is not a usable number")
    if linear_class == "autobitlinear":
        return np.float32(value)
    if linear_class == "bitlinear":
        return np.float32(np.float32(1) / value)
    raise ConversionError(f"quantization_config.linear_class {linear_class!r} is unknown; known: "
                          + ", ".join(LINEAR_CLASSES))
