"""Which ternary path a CPU runs I2_S weights with: the multiply-add kernels or the LUT ones.

Which one is faster depends on the core (the LUT kernels trade multiplies for table lookups: meant for CPUs
without VNNI), so it is measured rather than guessed: once per CPU model, kernel variant, thread count and engine
version, on a fixed matrix of the 2B4T FFN width (55296 x 2560, 35 MB: past the last-level cache, so that it
streams from memory as a decode step does), both kernels alternating, medians compared. It is a decode choice:
the LUT prefill runs at about half the multiply-add one (benchmarks/README.md). The answer is kept in the user
cache directory (``kernel-choice.json`` under platformdirs' user_cache_dir, e.g. ~/.cache/bitnet) so that later
loads take no time; ``BITNET_KERNEL=lut`` / ``=mac`` (or ``avx2+lut``) overrides it.
"""
from __future__ import annotations

import json
import os
import time

from bitnet import kernels

# Variants with SIMD LUT kernels; elsewhere the LUT entries are the scalar reference, never the faster path.
LUT_VARIANTS = ("avx2", "avx512")
# The LUT path must win by this much to be chosen (the two differ by a few percent on most cores; the
# multiply-add path needs no repacking at load).
MARGIN = 0.97
_SHAPE = (8 * 6912, 2560)   # rows M, inputs K
_ROUNDS = 9


def cache_path() -> str:
    from platformdirs import user_cache_dir

    return os.path.join(user_cache_dir("bitnet"), "kernel-choice.json")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's description of it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def _key(variant: str, n_threads: int) -> str:
    from bitnet._version import __version__

    return f"{cpu_model()} | {variant} | {n_threads} threads | bitnet {__version__}"


def _read_cache() -> dict:
    try:
        with open(cache_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict) -> None:
    """Best effort: a read-only home only means measuring again next time."""
    path = cache_path()
    data = _read_cache()
    data[key] = entry
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def measure(n_threads: int = 1, rounds: int = _ROUNDS) -> dict:
    """Median microseconds of one token through each path on the fixed matrix, with the active variant."""
    import numpy as np

    M, K = _SHAPE
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.integers(0, 256, M * K // 4, dtype=np.uint8),
                           np.frombuffer(np.float32(0.5).tobytes(), np.uint8)])
    lut = kernels.lut_pack(data, K, M, n_threads)
    q, scale, qsum = kernels.quantize_act(rng.standard_normal(K).astype(np.float32))
    runs = {
        "mac": lambda: kernels.ternary_matmul_q(data, kernels.GGML_I2_S, K, M, q, scale, qsum, n_threads=n_threads),
        "lut": lambda: kernels.lut_matmul(lut, K, M, q, scale, qsum, 0.5, n_threads=n_threads),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: round(float(np.median(ts)) * 1e6, 1) for name, ts in times.items()}


def ternary_path(n_threads: int = 1) -> str:
    """'lut' or 'mac' for this process: BITNET_KERNEL, else the cached or freshly measured choice."""
    forced = kernels.requested_ternary_path()
    if forced:
        return forced
    variant = kernels.active_variant()
    if variant not in LUT_VARIANTS:
        return "mac"
    key = _key(variant, n_threads)
    entry = _read_cache().get(key)
    if isinstance(entry, dict) and entry.get("choice") in kernels.TERNARY_PATHS:
        return entry["choice"]
    us = measure(n_threads)
    choice = "lut" if us["lut"] < MARGIN * us["mac"] else "mac"
    _write_cache(key, {"choice": choice, "mac_us": us["mac"], "lut_us": us["lut"], "threads": n_threads,
                       "shape": list(_SHAPE), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return choice


__all__ = ["LUT_VARIANTS", "cache_path", "cpu_model", "measure", "ternary_path"]
