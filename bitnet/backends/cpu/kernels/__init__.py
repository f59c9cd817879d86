"""CPU kernels: one table of C kernels per instruction set, chosen at import time.

The variant comes from the environment variable ``BITNET_KERNEL`` (scalar, avx2, avx512, amx, neon, wasm,
amx-model) when set, else it is the best one this CPU runs (amx-model, the AMX bodies on a C model of the tiles,
only when asked for). ``set_variant`` changes it later. ``BITNET_KERNEL`` may also
name the ternary path, alone or after the variant (``lut``, ``mac``, ``avx2+lut``): the LUT kernels or the
multiply-add ones, which `choice` otherwise picks per CPU by measuring them once. The forward pass reaches the
active table from Cython (``from bitnet.backends.cpu.kernels._kernels cimport active_kernels``). The numpy
functions here are the host-side packing the backends use at load; the kernels as numpy functions for tests,
benchmarks and tools are in `testing`.

Weight shapes are numpy order: a matrix of M output rows of K inputs is ``[M, K]`` (GGUF dims ``[K, M]``).
"""
from __future__ import annotations

try:
    import numpy as np
except ImportError:   # the browser build has no numpy: the forward pass needs only the variant selection here
    np = None

from bitnet import settings
from bitnet.backends.cpu.kernels import _kernels as _k
from bitnet.errors import KernelError
from bitnet.gguf.constants import BLOCK_LAYOUT, I2S_BLOCK, I2S_SCALE_BYTES, GGMLType, i2s_code_bytes

__all__ = [
    "GGML_BF16", "GGML_F16", "GGML_F32", "GGML_I2_S", "GGML_Q8_0", "GGML_TQ1_0", "GGML_TQ2_0", "KERNEL_NAMES",
    "TERNARY_PATHS", "VARIANT_FEATURES", "active_variant", "compiled_variants", "cpu_info", "encode_q80", "i2g_pack",
    "ran_kernels", "requested_ternary_path", "reset_ran", "rope_table", "set_variant", "supported_variants",
]

# The type ids, block layouts and the I2_S size rule are stated once, in bitnet.gguf.constants.
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = (int(GGMLType.F32), int(GGMLType.F16), int(GGMLType.Q8_0),
                                            int(GGMLType.BF16))
GGML_TQ1_0, GGML_TQ2_0, GGML_I2_S = int(GGMLType.TQ1_0), int(GGMLType.TQ2_0), int(GGMLType.I2_S)

VARIANTS: tuple[str, ...] = _k.VARIANT_NAMES
KERNEL_NAMES: tuple[str, ...] = tuple(_k.KERNEL_NAMES)
_TERNARY = (GGML_I2_S, GGML_TQ2_0, GGML_TQ1_0)
_FLOAT = (GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16)
_TYPE_NAMES = {int(t): t.name for t in GGMLType}

# CPU features each variant needs at run time (dispatch.c checks the same; receipts check them too).
VARIANT_FEATURES: dict[str, tuple[str, ...]] = {
    "scalar": (),
    "avx2": ("avx2", "fma", "f16c"),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512vnni", "fma", "f16c"),
    "neon": ("neon",),
    "wasm": ("wasm_simd",),
    # amx_os: the OS saves the tile state and (Linux) granted this process its use
    "amx": ("avx512f", "avx512bw", "avx512vl", "avx512vnni", "fma", "f16c", "amx_tile", "amx_int8", "amx_os"),
    "amx-model": (),
}
_WHERE = {"avx2": "x86-64", "avx512": "x86-64", "amx": "x86-64 with GCC or Clang", "neon": "aarch64",
          "wasm": "WebAssembly (SIMD128)", "amx-model": "every build"}


def _needs(name: str) -> tuple[str, ...]:
    if name == "neon" and _k.neon_needs_dotprod():
        return ("neon", "dotprod")
    if name == "amx" and not _k.detect_features()["amx_tile"]:
        return VARIANT_FEATURES[name][:-1]   # the OS's leave is moot without the tiles: name what the CPU lacks
    return VARIANT_FEATURES[name]


def _index(name: str) -> int:
    """Variant index of a name, with a KernelError that says what is wrong when it cannot run here."""
    if name not in VARIANTS:
        raise KernelError(f"unknown kernel variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    v = VARIANTS.index(name)
    if not _k.is_compiled(v):
        raise KernelError(f"kernel variant {name!r} is not compiled into this build (it is built only for "
                          f"{_WHERE[name]}); this build has: {', '.join(compiled_variants())}")
    if not _k.is_supported(v):
        features = _k.detect_features()
        missing = [f for f in _needs(name) if not features[f]]
        raise KernelError(f"kernel variant {name!r} cannot run on this CPU: missing CPU features "
                          f"{', '.join(missing)}; supported variants: {', '.join(supported_variants())}")
    return v


def _table(variant: str | None) -> int:
    return _k.active_index() if variant is None else _index(variant)


def compiled_variants() -> list[str]:
    return [name for v, name in enumerate(VARIANTS) if _k.is_compiled(v)]


def supported_variants() -> list[str]:
    """Variants this build contains and this CPU can run (in enum order; cpu_info() names the best)."""
    return [name for v, name in enumerate(VARIANTS) if _k.is_supported(v)]


def active_variant() -> str:
    return VARIANTS[_k.active_index()]


def set_variant(name: str) -> None:
    """Switch the active kernel table (the one the forward pass uses); KernelError if it cannot run here."""
    _k.activate(_index(name))


def cpu_info() -> dict:
    """Detected CPU features, compiled / supported / best / active variants and the OpenMP thread count."""
    return {
        "features": _k.detect_features(),
        "compiled_variants": compiled_variants(),
        "supported_variants": supported_variants(),
        "best_variant": VARIANTS[_k.best_variant()],
        "variant": active_variant(),
        "omp_max_threads": _k.omp_max_threads(),
    }


def ran_kernels() -> list[str]:
    """Kernels that ran since the last reset_ran(), as 'kernel.variant' (e.g. 'i2s_gemv.avx2')."""
    return [f"{_k.KERNEL_NAMES[k]}.{VARIANTS[v]}" for v, k in _k.ran_flags()]


def reset_ran() -> None:
    _k.reset_ran()


# ---- host-side packing the backends use at load (numpy) ----

def _bytes(data: np.ndarray | bytes | memoryview) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if buf.dtype != np.uint8:
        raise ValueError(f"weight data must be uint8 bytes, got dtype {buf.dtype}")
    return np.ascontiguousarray(buf.reshape(-1))


def _weight_bytes(ggml_type: int, K: int, M: int) -> int:
    """Bytes a [M, K] tensor of this type needs (I2_S: its codes and the scale after them, not the rest of the
    file's tail)."""
    n = K * M
    if ggml_type == GGML_I2_S:
        if n % I2S_BLOCK:
            raise ValueError(f"I2_S needs M*K to be a multiple of {I2S_BLOCK}, got M={M} K={K}")
        return i2s_code_bytes(n) + I2S_SCALE_BYTES
    if ggml_type not in _TYPE_NAMES:
        raise KernelError(f"no matmul kernel for ggml type {ggml_type}")
    block, block_bytes = BLOCK_LAYOUT[GGMLType(ggml_type)]
    if K % block:
        raise ValueError(f"{_TYPE_NAMES[ggml_type]} needs K to be a multiple of {block}, got K={K}")
    return M * (K // block) * block_bytes


def _check_matmul(data, ggml_type: int, K: int, M: int, allowed: tuple[int, ...], what: str) -> np.ndarray:
    if ggml_type not in allowed:
        names = ", ".join(f"{_TYPE_NAMES[t]} ({t})" for t in allowed)
        raise KernelError(f"{what} supports ggml types {names}; got type {ggml_type}")
    if K <= 0 or M <= 0:
        raise ValueError(f"matrix dims must be positive, got M={M} K={K}")
    buf = _bytes(data)
    need = _weight_bytes(ggml_type, K, M)
    if buf.size < need:
        raise ValueError(f"{_TYPE_NAMES[ggml_type]} weight [M={M}, K={K}] needs {need} bytes, got {buf.size}")
    return buf


def i2g_pack(data, K: int, M: int, n_threads: int | None = None) -> np.ndarray:
    """The CUDA backend's I2G form of an I2_S weight of numpy shape [M, K]: uint32 [M, K/16] (layout in
    bitnet/backends/cuda/kernels.cu), repacked on the host in parallel."""
    buf = _check_matmul(data, GGML_I2_S, K, M, (GGML_I2_S,), "i2g_pack")
    if K % 16:
        raise ValueError(f"the I2G layout needs rows of a multiple of 16 inputs, got K = {K}")
    out = np.empty((M, K // 16), dtype=np.uint32)
    _k.i2g_pack(buf, out.reshape(-1), n_threads)
    return out


def encode_q80(data, ggml_type: int, K: int, M: int, n_threads: int | None = None) -> np.ndarray:
    """A float-type matrix [M, K] (F32, F16, BF16 or Q8_0) re-encoded as Q8_0 bytes, bit-identical to
    `bitnet.gguf.quants.quantize(rows as float32, Q8_0)`: rows in parallel, one row of floats per thread."""
    buf = _check_matmul(data, ggml_type, K, M, _FLOAT, "encode_q80")
    if K % 32:
        raise ValueError(f"Q8_0 needs K % 32 == 0, got K={K}")
    out = np.empty(M * (K // 32) * 34, dtype=np.uint8)
    if _k.encode_q80(ggml_type, buf, K, M, out, n_threads) != 0:
        raise MemoryError("encode_q80: cannot allocate a row buffer")
    return out


def rope_table(n_pos: int, rope_dim: int, base: float) -> np.ndarray:
    """float32 [n_pos, rope_dim]: row p holds cos, sin of each of position p's rope_dim / 2 angles, exactly as the
    CPU forward pass computes them (the CUDA backend uploads this table once)."""
    if n_pos < 1 or rope_dim < 2 or rope_dim % 2:
        raise ValueError(f"rope_table needs n_pos >= 1 and an even rope_dim >= 2, got {n_pos}, {rope_dim}")
    out = np.empty((int(n_pos), int(rope_dim)), dtype=np.float32)
    _k.rope_table(out, float(base))
    return out


TERNARY_PATHS = ("mac", "lut")


def _kernel_env() -> tuple[str | None, str | None]:
    """BITNET_KERNEL as (variant or None, ternary path or None): 'avx2', 'lut', 'avx2+lut'."""
    raw = settings.kernel().strip().lower()
    variant = path = None
    for part in filter(None, (p.strip() for p in raw.split("+"))):
        if part in TERNARY_PATHS and path is None:
            path = part
        elif part not in TERNARY_PATHS and variant is None:
            variant = part
        else:
            raise KernelError(f"BITNET_KERNEL={raw}: expected a variant ({', '.join(VARIANTS)}), a ternary path "
                              f"({', '.join(TERNARY_PATHS)}) or both as VARIANT+PATH")
    return variant, path


def requested_ternary_path() -> str | None:
    """The ternary path BITNET_KERNEL forces ('mac' or 'lut'), or None when it is left to the measured choice."""
    return _kernel_env()[1]


def _initial_variant() -> None:
    name = _kernel_env()[0]
    if name:
        try:
            set_variant(name)
        except KernelError as e:
            raise KernelError(f"BITNET_KERNEL={settings.kernel()}: {e}") from None
    else:
        _k.activate(_k.best_variant())


_initial_variant()
