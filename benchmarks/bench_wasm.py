"""The browser build's speed against the native engine on one thread, in the same run (issue 11's measure).

    python benchmarks/bench_wasm.py [--runs 5] [--tokens 200] [--model FILE.gguf] [--json out.json]

Needs `bash wasm/build.sh` first. Alternates Node runs of wasm/run.mjs (Pyodide, SIMD128 kernels, one thread)
with native runs of the same greedy generation through the engine's Python API (one thread, the best kernel
variant of this CPU, and the scalar and AVX2 variants where they exist for context). Reports medians of the
decode tokens/s measured around the forward passes and sampling (`decode`: the engine's own timings) and, for the
browser build, of the whole loop including the JS tokenizer (`wall`); `cold` is a fresh Node process's first
generation, `warm` the same generation after one of equal length (V8 optimizes hot WebAssembly as it runs).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Love is"


def wasm_run(model: str | None, tokens: int, warmup: int) -> dict:
    args = ["node", str(ROOT / "wasm" / "run.mjs"), "--prompt", PROMPT, "--max-tokens", str(tokens),
            "--temperature", "0", "--stats", "--warmup", str(warmup)]
    if model:
        args += ["--model", model]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def native_run(model, variant: str, tokens: int) -> float:
    from bitnet.backends.cpu.kernels import set_variant

    set_variant(variant)
    completion = model.generate(PROMPT, max_tokens=tokens, temperature=0)
    return completion.timings.decode_tokens_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import bitnet
    from bitnet.backends.cpu.kernels import active_variant, supported_variants

    model = bitnet.load(args.model, n_threads=1)
    best = active_variant()
    variants = [v for v in ("scalar", "avx2", "avx512", "neon") if v in supported_variants()]
    native = {v: [] for v in variants}
    wasm = {key: [] for key in ("cold_decode", "cold_wall", "warm_decode", "warm_wall")}
    for _ in range(args.runs):
        for kind, warmup in (("cold", 0), ("warm", args.tokens)):
            stats = wasm_run(args.model, args.tokens, warmup)
            wasm[f"{kind}_decode"].append(stats["decode_tokens_per_s"])
            wasm[f"{kind}_wall"].append(stats["wall_tokens_per_s"])
        for v in variants:
            native[v].append(native_run(model, v, args.tokens))
        time.sleep(0.1)
    med = {v: statistics.median(x) for v, x in native.items()}
    result = {
        "model": str(args.model or bitnet.default_model_path().name), "tokens": args.tokens, "runs": args.runs,
        "native_best_variant": best, "native_1_thread_decode_tok_s": med,
        **{f"wasm_{key}_tok_s": statistics.median(values) for key, values in wasm.items()},
    }
    for key in wasm:
        result[f"wasm_{key}_over_native_best"] = result[f"wasm_{key}_tok_s"] / med[best]
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
