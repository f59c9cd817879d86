"""Which ternary path a CPU runs I2_S weights with: the multiply-add kernels ("mac") or the LUT ones.

Which one is faster depends on the core (the LUT kernels trade multiplies for table lookups: meant for CPUs
without VNNI), so it is measured rather than guessed, once per CPU model, kernel variant, thread count and
engine version. A path decides both what a decode step and what a prompt costs, so both are measured: a decode
token through a matrix of the 2B4T FFN width (55296 x 2560, 35 MB: past the last-level cache, so it streams from
memory as a decode step does) and a 32-token prefill through one FFN matrix (6912 x 2560). "lut" is chosen only
when it decodes faster by MARGIN and prefills no slower than that margin allows; otherwise the multiply-add
path, which needs no repacking at load, stays.

A machine that is busy while it measures must not decide for good (a first load on a busy machine once kept
the slower path forever). So the measurement is TRIALS trials of interleaved rounds, and a verdict is cached only
when it holds in every trial and the timings were quiet (see judge); otherwise the default "mac" is used and
nothing is cached, so a later load measures again. Thread counts beyond the CPUs this process
may run on are measured (and cached) as the count it has.

The answer is kept in ``kernel-choice.json`` in the cache directory: BITNET_CACHE_DIR when set (the test suite
points it at a temporary folder), else platformdirs' user_cache_dir (e.g. ~/.cache/bitnet).
``BITNET_KERNEL=lut`` / ``=mac`` (or ``avx2+lut``) overrides the choice.
"""
from __future__ import annotations

import json
import os
import statistics
import time

from bitnet import settings
from bitnet.backends.cpu import kernels
from bitnet.settings import available_cpus

# Variants with SIMD LUT kernels; elsewhere the LUT entries are the scalar reference, never the faster path.
LUT_VARIANTS = ("avx2", "avx512")
# The LUT path must decode this much faster (time ratio at most 1 - MARGIN) to be chosen, and may prefill at
# most this much slower (ratio at most 1 + MARGIN).
MARGIN = 0.10
# Relative spread (interquartile range / median) above which a trial's timings are noise, not a measurement.
NOISE = 0.10
TRIALS = 3
ROUNDS = 9          # interleaved rounds per trial and path
DECODE_SHAPE = (8 * 6912, 2560)     # rows M, inputs K: one token
PREFILL_SHAPE = (6912, 2560)
PREFILL_TOKENS = 32
DEFAULT = "mac"


def cache_path() -> str:
    return os.path.join(settings.cache_dir(), "kernel-choice.json")


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


def _runs(shape: tuple[int, int], n_tokens: int, n_threads: int, seed: int) -> dict:
    """Both paths over one random I2_S matrix of `shape` for `n_tokens` tokens, as zero-argument calls."""
    import numpy as np

    M, K = shape
    rng = np.random.default_rng(seed)
    data = np.concatenate([rng.integers(0, 256, M * K // 4, dtype=np.uint8),
                           np.frombuffer(np.float32(0.5).tobytes(), np.uint8)])
    lut = kernels.lut_pack(data, K, M, n_threads)
    q, scale, qsum = kernels.quantize_act(rng.standard_normal((n_tokens, K)).astype(np.float32))
    return {
        "mac": lambda: kernels.ternary_matmul_q(data, kernels.GGML_I2_S, K, M, q, scale, qsum,
                                                n_threads=n_threads),
        "lut": lambda: kernels.lut_matmul(lut, K, M, q, scale, qsum, 0.5, n_threads=n_threads),
    }


def _trial(runs: dict, rounds: int) -> dict:
    """One trial: `rounds` interleaved rounds (the order alternating), each path's median microseconds, the
    LUT/mac time ratio and the larger relative spread of the two paths' timings."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    spread = max(_spread(ts) for ts in times.values())
    return {"mac_us": round(medians["mac"] * 1e6, 1), "lut_us": round(medians["lut"] * 1e6, 1),
            "ratio": medians["lut"] / medians["mac"], "spread": spread}


def _spread(ts: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(ts, n=4)
    return (q3 - q1) / statistics.median(ts)


def measure(n_threads: int = 1, trials: int = TRIALS, rounds: int = ROUNDS) -> dict:
    """Trials of both paths at decode and at prefill: {"decode": [trial, ...], "prefill": [trial, ...]}."""
    decode = _runs(DECODE_SHAPE, 1, n_threads, seed=0)
    prefill = _runs(PREFILL_SHAPE, PREFILL_TOKENS, n_threads, seed=1)
    for run in (*decode.values(), *prefill.values()):     # page in and warm up before timing anything
        run()
    result: dict[str, list[dict]] = {"decode": [], "prefill": []}
    for _ in range(trials):
        result["decode"].append(_trial(decode, rounds))
        result["prefill"].append(_trial(prefill, rounds))
    return result


def judge(measured: dict) -> tuple[str, bool]:
    """(choice, trusted) from measure()'s trials; an untrusted verdict is DEFAULT and is not cached.

    "lut" needs every trial to say so (decode faster by MARGIN, prefill slower by at most MARGIN) and quiet
    timings in every trial. "mac" is trusted from quiet timings, or, however noisy, when every trial shows the
    LUT path losing (a slower decode, or a prefill slower than the margin allows): noise that large does not
    flip a loss that consistent. Trials that contradict each other are never trusted."""
    decode, prefill = measured["decode"], measured["prefill"]
    quiet = all(t["spread"] <= NOISE for t in decode + prefill)
    decode_wins = [t["ratio"] <= 1 - MARGIN for t in decode]
    decode_loses = [t["ratio"] >= 1 for t in decode]
    prefill_loses = [t["ratio"] > 1 + MARGIN for t in prefill]
    if any(decode_wins) and not all(decode_wins):
        return DEFAULT, False
    if all(decode_wins) and not any(prefill_loses):
        return ("lut", True) if quiet else (DEFAULT, False)
    return "mac", quiet or all(decode_loses) or all(prefill_loses)


def ternary_path(n_threads: int = 1) -> str:
    """'lut' or 'mac' for this process: BITNET_KERNEL, else the cached or freshly measured choice."""
    forced = kernels.requested_ternary_path()
    if forced:
        return forced
    variant = kernels.active_variant()
    if variant not in LUT_VARIANTS or kernels.np is None:    # no numpy to measure with: the browser build
        return DEFAULT
    n_threads = min(max(1, n_threads), available_cpus())
    key = _key(variant, n_threads)
    entry = _read_cache().get(key)
    if isinstance(entry, dict) and entry.get("choice") in kernels.TERNARY_PATHS:
        return entry["choice"]
    measured = measure(n_threads)
    choice, trusted = judge(measured)
    if trusted:
        _write_cache(key, {"choice": choice, "threads": n_threads, **measured,
                           "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return choice


__all__ = ["DEFAULT", "LUT_VARIANTS", "MARGIN", "NOISE", "available_cpus", "cache_path", "cpu_model", "judge",
           "measure", "ternary_path"]
