"""Kernel timing at BitNet b1.58 2B4T shapes: I2_S gemv/gemm in GMAC/s and the F16 LM-head gemv in GB/s.

usage: PYTHONPATH=. python benchmarks/bench_kernels.py [--variants scalar,avx2] [--threads 1,2]
                                                      [--tokens 64] [--no-lm-head]

Each figure is the best of a few runs (after one warm-up) of the numpy wrapper, which includes the per-token
activation quantization and the OpenMP fork/join: what the forward pass pays per matmul.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import bitnet.backends.cpu.kernels.testing as bk

I2S_SHAPES = [(2560, 6912), (6912, 2560)]  # (K, M): ffn_gate/up and ffn_down
LM_HEAD = (2560, 128256)                   # (K, vocab): the F16 token embedding used as output layer


def best_time(reps: int, fn, *args, budget_s: float = 3.0, **kwargs) -> float:
    fn(*args, **kwargs)
    best, spent = float("inf"), 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def i2s_weights(K: int, M: int, rng: np.random.Generator) -> np.ndarray:
    data = rng.integers(0, 256, M * K // 4 + 32, dtype=np.uint8)
    data[M * K // 4:M * K // 4 + 4] = np.frombuffer(np.float32(0.02).tobytes(), np.uint8)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(v for v in ("scalar", "avx2", "avx512", "neon", "wasm")
                                                   if v in bk.supported_variants()))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per gemm (a prompt chunk)")
    ap.add_argument("--no-lm-head", action="store_true", help="skip the 0.66 GB F16 LM-head gemv")
    args = ap.parse_args()
    variants = args.variants.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print(f"cpu: {bk.cpu_info()}")

    for K, M in I2S_SHAPES:
        data = i2s_weights(K, M, rng)
        x1 = rng.standard_normal(K).astype(np.float32)
        xt = rng.standard_normal((args.tokens, K)).astype(np.float32)
        for v in variants:
            for nt in threads:
                slow = v == "scalar"
                t1 = best_time(3 if slow else 50, bk.ternary_matmul, data, bk.GGML_I2_S, K, M, x1, variant=v,
                               n_threads=nt)
                tt = best_time(1 if slow else 10, bk.ternary_matmul, data, bk.GGML_I2_S, K, M, xt, variant=v,
                               n_threads=nt)
                print(f"i2s K={K:5d} M={M:5d} {v:7s} threads={nt}: gemv {K * M / t1 / 1e9:7.2f} GMAC/s "
                      f"({t1 * 1e6:8.1f} us, {M * K / 4 / t1 / 1e9:5.1f} GB/s)   "
                      f"gemm T={args.tokens} {K * M * args.tokens / tt / 1e9:7.2f} GMAC/s")

    if not args.no_lm_head:
        K, M = LM_HEAD
        w = rng.integers(0, 0x3c00, M * K, dtype=np.uint16)  # finite halves in [0, 1)
        w[1::2] |= 0x8000
        raw = w.view(np.uint8)
        x = rng.standard_normal(K).astype(np.float32)
        for v in variants:
            for nt in threads:
                reps = 2 if v == "scalar" else 8
                t = best_time(reps, bk.float_matmul, raw, bk.GGML_F16, K, M, x, variant=v, n_threads=nt)
                print(f"f16 gemv [{M}, {K}] {v:7s} threads={nt}: {raw.nbytes / t / 1e9:6.2f} GB/s "
                      f"({t * 1e3:7.2f} ms)")


if __name__ == "__main__":
    main()
