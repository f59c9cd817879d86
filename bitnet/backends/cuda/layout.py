"""The device layout of ternary weights (I2G, described in kernels.cu) and a host model of its dot product.

I2_S is repacked into I2G once at load (in C: bitnet/backends/cpu/kernels/src/repack.c): per row K/16 uint32 words,
element 16w + 4j + i of the row in bits 8i + 2j of word w (code = ternary + 1), so that the kernel gets four
int8 codes for __dp4a with one shift and one mask. `i2g_dots` computes what the kernel computes, word by
word, on the host: the tests hold it to the CPU kernels' integers, which pins the layout and the kernel's
decoding of it without a GPU.
"""
from __future__ import annotations

import numpy as np

from bitnet.errors import ModelError

# bit position of element (j, i) of a 16-element word: 8i + 2j, indexed by the element's place 4j + i
_SHIFTS = np.array([8 * (e % 4) + 2 * (e // 4) for e in range(16)], dtype=np.uint32)


def i2s_codes(data, K: int, M: int) -> np.ndarray:
    """The codes (0..2, code 3 read as 1) of an I2_S tensor of numpy shape [M, K], as uint8 [M, K]."""
    raw = np.frombuffer(memoryview(data), dtype=np.uint8, count=M * K // 4).reshape(-1, 32)
    planes = np.stack([(raw >> s) & 3 for s in (6, 4, 2, 0)], axis=1)   # [block, plane, 32]: element 32l + m
    codes = planes.reshape(M, K)
    return np.where(codes == 3, 1, codes).astype(np.uint8)


def i2s_to_i2g(data, K: int, M: int, n_threads: int | None = None) -> np.ndarray:
    """I2G words, uint32 [M, K/16], of an I2_S tensor [M, K] (bitnet/backends/cpu/kernels/src/repack.c, in
    parallel: the 2B model's 0.5 GB of ternary weights repack in well under a second)."""
    from bitnet.backends.cpu.kernels import i2g_pack

    if K % 16:
        raise ModelError(f"the CUDA backend needs rows of a multiple of 16 inputs, got K = {K}")
    return i2g_pack(data, K, M, n_threads)


def i2g_dots(words: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The kernel's integer dots sum(code * q), int64 [T, M], from I2G words [M, K/16] and int8 q [T, K]:
    per word, lanes (word >> 2j) & 0x03030303 for j = 0..3 against q[16w + 4j .. 16w + 4j + 3] (a dp4a each)."""
    M, W = words.shape
    q = np.asarray(q, dtype=np.int64).reshape(-1, W, 4, 4)                    # [T, word, j, i]
    lanes = np.stack([(words >> (2 * j)) & 0x03030303 for j in range(4)], axis=2)   # [M, word, j]
    codes = np.stack([(lanes >> (8 * i)) & 0xFF for i in range(4)], axis=3).astype(np.int64)  # [M, word, j, i]
    return np.einsum("mwji,twji->tm", codes, q)


__all__ = ["i2g_dots", "i2s_codes", "i2s_to_i2g"]
