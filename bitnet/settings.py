"""The environment variables the engine reads: each one read here, with one meaning for every surface (Python,
CLI, server, C ABI, browser build).

- BITNET_SEED: the sampler's seed when a call gives none (an integer in [0, 2**64)).
- BITNET_DETERMINISTIC=1: repeatable runs: one thread (even over an explicit thread count) and seed 0 when
  neither the call nor BITNET_SEED gives one.
- BITNET_DEVICE: "cpu" (default) or "cuda", when a call names no device.
- BITNET_CUDA_SYNC=1: the CUDA backend synchronizes after every kernel launch (no CUDA graphs), so that a fault is
  reported by the kernel that caused it (debugging; slow).
- BITNET_KERNEL: force a kernel variant and/or ternary path (parsed by bitnet.backends.cpu.kernels).
- BITNET_CACHE_DIR: where measured choices are kept (default: the user cache directory).
- BITNET_API_KEY: the key `bitnet serve` requires when --api-key is not given.
- BITNET_GGUF: the model file used when none is given (instead of the embedded model); a missing file is an error.
- BITNET_STRICT_MODE=1: every fallback the engine would take with a warning is an error (bitnet.errors.fallback).
- OMP_NUM_THREADS: the thread count when none is given (before "every CPU this process may use").

Numpy-free: the browser build imports it.
"""
from __future__ import annotations

import operator
import os

SEED_LIMIT = 2**64


def deterministic() -> bool:
    return os.environ.get("BITNET_DETERMINISTIC") == "1"


def check_seed(value: object, source: str = "seed") -> int:
    """`value` (an integer, numpy's included; text only from the environment) as a seed: a TypeError for a
    non-integer, a ValueError naming `source` for text that is no integer or a value outside [0, 2**64)."""
    if isinstance(value, str):
        try:
            seed = int(value.strip())
        except ValueError:
            raise ValueError(f"{source} must be an integer, got {value!r}") from None
    elif isinstance(value, bool):
        raise TypeError(f"{source} must be an integer or None, got a bool")
    else:
        try:
            seed = operator.index(value)
        except TypeError:
            raise TypeError(f"{source} must be an integer or None, got {type(value).__name__}") from None
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{source} must be between 0 and 2**64-1, got {seed}")
    return seed


def seed(explicit: int | None) -> int | None:
    """The seed a generation uses: the call's, else BITNET_SEED, else 0 in deterministic mode, else None
    (a fresh random seed)."""
    if explicit is not None:
        if isinstance(explicit, str):
            raise TypeError("seed must be an integer or None, got str")
        return check_seed(explicit)
    env = os.environ.get("BITNET_SEED", "").strip()
    if env:
        return check_seed(env, "BITNET_SEED")
    return 0 if deterministic() else None


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def strict_mode() -> bool:
    return os.environ.get("BITNET_STRICT_MODE") == "1"


def threads(explicit: int | None) -> int:
    """The threads a model runs on: 1 in deterministic mode (what it promises, over an explicit count), else the
    call's, else OMP_NUM_THREADS (its first level: "4,2" means 4), else every CPU this process may use."""
    if deterministic():
        return 1
    if explicit is not None:
        return explicit
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp:
        first = omp.split(",")[0].strip()
        if not first.isdigit() or int(first) < 1:
            raise ValueError(f"OMP_NUM_THREADS must be a positive integer, got {omp!r}")
        return int(first)
    return available_cpus()


def model_file() -> str | None:
    """BITNET_GGUF: the model file to use where a call gives none (None when unset)."""
    return os.environ.get("BITNET_GGUF", "").strip() or None


def device(explicit: str | None) -> tuple[str, str]:
    """(the device name asked for, where it came from): the call's, else BITNET_DEVICE, else "cpu"."""
    if explicit is not None:
        return explicit, "device"
    return os.environ.get("BITNET_DEVICE") or "cpu", "BITNET_DEVICE"


def cuda_sync() -> bool:
    return os.environ.get("BITNET_CUDA_SYNC") == "1"


def kernel() -> str:
    return os.environ.get("BITNET_KERNEL", "")


def api_key() -> str | None:
    return os.environ.get("BITNET_API_KEY") or None


def cache_dir() -> str:
    base = os.environ.get("BITNET_CACHE_DIR")
    if not base:
        from platformdirs import user_cache_dir

        base = user_cache_dir("bitnet")
    return base


__all__ = ["SEED_LIMIT", "api_key", "available_cpus", "cache_dir", "check_seed", "cuda_sync", "deterministic", "device",
           "kernel", "model_file", "seed", "strict_mode", "threads"]
