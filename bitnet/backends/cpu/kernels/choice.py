"""Which ternary path a CPU runs I2_S weights with: the multiply-add kernels ("mac") or the LUT ones.

Which one is faster depends on the core (the LUT kernels trade multiplies for table lookups: meant for CPUs
without VNNI), so it is measured rather than guessed, once per CPU model, kernel variant, thread count and
engine version. A path decides both what a decode step and what a prompt costs, so both are measured, through
the production forward pass (the compiled Transformer with its row split over the thread team): one token and
an 8-token prompt through two layers of the 2B4T shape (33 MB of ternary weights: past the last-level cache,
streamed from memory as in a decode step). "lut" is chosen only when it decodes faster by MARGIN and prefills no
slower than that margin allows; otherwise the multiply-add path, which needs no repacking at load, stays.

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
# Two layers of the 2B4T shape (33 MB of ternary weights: past the last-level cache, streamed as in decode) and
# a tiny vocabulary, so that the layers' matmuls are what is timed.
SHAPE = dict(n_embd=2560, n_layer=2, n_head=20, n_head_kv=5, head_dim=128, n_ff=6912, n_vocab=256)
PREFILL_TOKENS = 8
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


class _NoPages:
    """The LUT repack releases the file's pages of each matrix it replaces: an in-memory model has none."""

    def release_pages(self, name: str) -> None:
        pass


def _forward_passes(n_threads: int) -> dict:
    """The production forward pass (the compiled Transformer, its row split over the team, its kernels) over an
    in-memory model of SHAPE with random ternary codes, once with the multiply-add form and once repacked in the
    LUT form: {"mac": model, "lut": model}. Timing does not depend on the values (integer dot products)."""
    import os
    import struct

    from bitnet.backends import cpu
    from bitnet.backends.cpu._forward import Transformer
    from bitnet.gguf.constants import GGMLType, i2s_code_bytes
    from bitnet.models.common import BoundMatrix

    d = SHAPE
    E, F, kv = d["n_embd"], d["n_ff"], d["n_head_kv"] * d["head_dim"]

    def ternary(name: str, K: int, M: int) -> BoundMatrix:
        data = bytearray(os.urandom(i2s_code_bytes(K * M))) + struct.pack("<f", 0.02) + bytes(28)
        return BoundMatrix(name, int(GGMLType.I2_S), K, M, memoryview(data), 0.02)

    def floats(name: str, K: int, M: int) -> BoundMatrix:
        return BoundMatrix(name, int(GGMLType.F32), K, M, memoryview(bytearray(4 * K * M)), 1.0)

    def ones(n: int) -> memoryview:
        return memoryview(bytearray(struct.pack(f"<{n}f", *([1.0] * n))))

    models = {}
    for path in ("mac", "lut"):
        layers = [{"attn_q": ternary("q", E, E), "attn_k": ternary("k", E, kv), "attn_v": ternary("v", E, kv),
                   "attn_output": ternary("o", E, E), "ffn_gate": ternary("gate", E, F),
                   "ffn_up": ternary("up", E, F), "ffn_down": ternary("down", F, E), "attn_norm": ones(E),
                   "ffn_norm": ones(E), "attn_sub_norm": ones(E), "ffn_sub_norm": ones(F)}
                  for _ in range(d["n_layer"])]
        if path == "lut":
            cpu._repack_lut(_NoPages(), layers, n_threads)
        models[path] = Transformer(dict(d, rope_dim=d["head_dim"], rope_base=500000.0, eps=1e-5, rope_neox=True,
                                        ffn_silu=False), floats("embd", E, d["n_vocab"]),
                                   floats("head", E, d["n_vocab"]), ones(E), layers, n_threads=n_threads)
    return models


def _runs(models: dict, n_tokens: int) -> dict:
    """One forward of n_tokens tokens from position 0 through each model, as zero-argument calls."""
    from array import array

    runs = {}
    for path, model in models.items():
        ctx = model.new_context(n_tokens)
        logits = memoryview(bytearray(4 * model.n_vocab)).cast("f", (1, model.n_vocab))
        tokens = array("i", [1] * n_tokens)
        runs[path] = (lambda m=model, c=ctx, t=tokens, out=logits: m.forward(c, t, 0, out, False))
    return runs


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
    models = _forward_passes(n_threads)
    decode, prefill = _runs(models, 1), _runs(models, PREFILL_TOKENS)
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
    if variant not in LUT_VARIANTS:
        return DEFAULT
    n_threads = min(max(1, n_threads), available_cpus())
    key = _key(variant, n_threads)
    entry = _read_cache().get(key)
    # an entry without both phases' trials was written by an earlier, noise-prone measurement: measure again
    if isinstance(entry, dict) and entry.get("choice") in kernels.TERNARY_PATHS and \
            isinstance(entry.get("decode"), list) and isinstance(entry.get("prefill"), list):
        return entry["choice"]
    measured = measure(n_threads)
    choice, trusted = judge(measured)
    if trusted:
        _write_cache(key, {"choice": choice, "threads": n_threads, **measured,
                           "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return choice


__all__ = ["DEFAULT", "LUT_VARIANTS", "MARGIN", "NOISE", "available_cpus", "cache_path", "cpu_model", "judge",
           "measure", "ternary_path"]
