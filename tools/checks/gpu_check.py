"""The CUDA backend on a machine with an NVIDIA GPU, in one run of a few minutes; prints one JSON object.

    pip install -e ".[cuda]"            # (torch too, for the cuBLAS comparison: optional)
    python tools/checks/gpu_check.py [--model PATH] [--tokens 128] [--json out.json]

(a) parity: logits of the CUDA backend against the CPU backend on tinyA-i2s.gguf (tests/data/reference/tinyA;
    min cosine >= 0.999 and equal greedy tokens) and on the synthetic 2B4T-shape model of bench_engine.py
    (written once into benchmarks/out/, ~1.2 GB; the first 16 greedy tokens equal);
(b) per-kernel times (CUDA events, median of 5 runs of 100 launches) of the ternary matmuls at the 2B4T shapes
    as the forward pass launches them (q|k|v 3840x2560, o 2560x2560, gate|up 13824x2560, down 2560x6912) and
    of the F16 LM head 128256x2560, against torch's cuBLAS bf16 GEMV of the same shape when torch is installed;
(c) end to end at batch 1 on the synthetic model: decode tokens/s (the greedy CUDA graph, argmax on the
    device; and the logits graph with the host sampler), prefill tokens/s for a 512-token prompt.
The "ok" field is true when every parity check passed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))     # bench_engine's synthetic 2B4T-shape model

from bench_engine import DEFAULT_MODEL, write_synthetic  # noqa: E402

import bitnet  # noqa: E402

TINYA = ROOT / "tests" / "data" / "reference" / "tinyA" / "tinyA-i2s.gguf"
# the launches of one layer's ternary matmuls (as bitnet/backends/cuda/forward.py groups them) and their output buffers
LAUNCHES = {"qkv": ("attn_q", "attn_k", "attn_v"), "o": ("attn_output",), "gate|up": ("ffn_gate", "ffn_up"),
            "down": ("ffn_down",)}
OUTPUTS = {"attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_output": "x", "ffn_gate": "gate", "ffn_up": "up",
           "ffn_down": "x"}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def parity(path: Path, n_prompt: int, n_greedy: int, n_ctx: int) -> dict:
    cpu = bitnet.load(path, n_ctx=n_ctx)
    gpu = bitnet.load(path, n_ctx=n_ctx, device="cuda")
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(0, min(cpu.n_vocab, cpu.tokenizer.vocab_size), n_prompt)]
    a, b = cpu.logits(ids), gpu.logits(ids)
    want = cpu.generate(ids, max_tokens=n_greedy, temperature=0).tokens
    got = gpu.generate(ids, max_tokens=n_greedy, temperature=0).tokens
    gpu.close()
    return {"min_cosine": float(cosines(a, b).min()), "max_abs_diff": float(np.abs(a - b).max()),
            "argmax_equal": float((a.argmax(1) == b.argmax(1)).mean()), "greedy_equal": got == want,
            "greedy_tokens": len(want)}


def time_launches(dev, launch, n: int = 100, runs: int = 5) -> float:
    """Median microseconds per call of `launch` (device time, CUDA events around n back-to-back calls)."""
    launch()
    dev.synchronize()
    times = []
    for _ in range(runs):
        pair = dev.timer()
        dev.record(pair[0])
        for _ in range(n):
            launch()
        dev.record(pair[1])
        times.append(dev.elapsed_ms(pair) * 1000 / n)
    return statistics.median(times)


def cublas_bf16_us(M: int, K: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    w = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(K, 1, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(M, 1, device="cuda", dtype=torch.bfloat16)
    torch.matmul(w, x, out=y)
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(100):
            torch.matmul(w, x, out=y)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / 100)
    return statistics.median(times)


def _compared(ours: float, ref: float | None) -> dict:
    return {"bitnet_us": round(ours, 2), "cublas_bf16_us": None if ref is None else round(ref, 2),
            "speedup": None if ref is None else round(ref / ours, 2)}


def kernel_times(model) -> dict:
    tr = model._transformer
    dev, s, layer = tr.dev, tr.s, tr.layers[0]
    out = {}
    for label, names in LAUNCHES.items():
        pairs = [(layer[n], s[OUTPUTS[n]]) for n in names]
        M, K = sum(m.M for m, _ in pairs), pairs[0][0].K
        # a real quantized input row of K values (zeros) for the launch to read
        dev.memset(s["gate"], 4 * K)
        dev.launch("norm_quant", (1,), 256, s["gate"], 0, 0, 0, K, tr.d["eps"], 0, s["xq"], s["qi"])
        ours = time_launches(dev, lambda p=pairs: tr._ternary_matmul(p, 0, 1, False))
        out[f"{label} {M}x{K}"] = _compared(ours, cublas_bf16_us(M, K))
    head = tr.output
    ours = time_launches(dev, lambda: tr._float_matmul(head, s["xn"], 1, s["logits"], head.M, False))
    out[f"lm head {head.M}x{head.K} ({'Q8_0' if head.gtype == 8 else 'F16'})"] = _compared(
        ours, cublas_bf16_us(head.M, head.K))
    return out


def end_to_end(model, n_decode: int, n_prefill: int) -> dict:
    tr = model._transformer
    rng = np.random.default_rng(1)
    prompt = [int(t) for t in rng.integers(0, min(256, model.n_vocab), n_prefill)]
    ctx = tr.new_context(model.n_ctx)
    tr.forward(ctx, prompt, 0, None, False)                   # warm-up (and the JIT of every kernel)
    prefill = []
    for _ in range(3):
        t0 = time.perf_counter()
        tr.forward(ctx, prompt, 0, np.empty((1, model.n_vocab), np.float32), False)
        prefill.append(n_prefill / (time.perf_counter() - t0))
    result = {"prefill_tokens": n_prefill, "prefill_tokens_per_s": round(statistics.median(prefill), 1)}
    logits = np.empty((1, model.n_vocab), np.float32)

    def logits_step(ctx, token: int, pos: int) -> int:          # the host chooses from the logits
        tr.forward(ctx, [token], pos, logits, False)
        return int(logits[0].argmax())

    def greedy_step(ctx, token: int, pos: int) -> int:           # the device chooses: 4 bytes come back
        return tr.greedy(ctx, token, pos)

    for mode, step in (("greedy", greedy_step), ("logits", logits_step)):
        ctx = tr.new_context(model.n_ctx)
        token = step(ctx, 1, 0)                                  # captures the graph
        t0 = time.perf_counter()
        for pos in range(1, n_decode + 1):
            token = step(ctx, token, pos)
        result[f"decode_{mode}_tokens_per_s"] = round(n_decode / (time.perf_counter() - t0), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the synthetic 2B4T-shape model (written "
                                                                      "when absent)")
    ap.add_argument("--tokens", type=int, default=128, help="decode tokens timed (default 128)")
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens of the prefill timing (default 512)")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    from bitnet.backends.cuda.driver import CudaDevice

    probe = CudaDevice()
    report: dict = {"device": probe.name, "capability": "sm_{}{}".format(*probe.capability),
                    "free_gib": round(probe.mem_info()[0] / 2**30, 1)}
    probe.close()
    report["parity"] = {}
    if TINYA.exists():
        report["parity"]["tinyA"] = parity(TINYA, 64, 32, 256)
    else:
        report["parity"]["tinyA"] = f"skipped: {TINYA} is absent"
    if not args.model.exists():
        write_synthetic(args.model)
    report["parity"]["synthetic_2b4t"] = parity(args.model, 16, 16, 64)
    t0 = time.perf_counter()
    model = bitnet.load(args.model, n_ctx=min(1024, args.prefill + args.tokens + 8), device="cuda")
    report["load_s"] = round(time.perf_counter() - t0, 2)
    report["kernels"] = kernel_times(model)
    report.update(end_to_end(model, args.tokens, args.prefill))
    model.close()
    tiny, big = report["parity"]["tinyA"], report["parity"]["synthetic_2b4t"]
    report["ok"] = bool((isinstance(tiny, str) or (tiny["min_cosine"] >= 0.999 and tiny["greedy_equal"]))
                        and big["greedy_equal"])
    report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
