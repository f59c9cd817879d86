"""This engine against bitnet.cpp's and llama.cpp's `llama-bench` on the same VM, in the same minutes: the
side-by-side table of issue 32 in one script.

    llama-bench of bitnet.cpp  on the I2_S original            (--bitnet-cpp PATH: bitnet.cpp's own I2_S kernels)
    llama-bench of llama.cpp   on a TQ2_0 twin                 (--llama-bench PATH: mainline's ternary type)
    this engine                on the TQ2_0 twin and on the I2_S original  (bench_engine's measurement)

Give either binary or both; runs alternate between every engine in each round (the VM's drift touches them
alike), and the table ends with this engine's I2_S speed as a ratio to each other engine (median of the
per-round ratios).

The hub is out of reach on the project's machines, so bitnet.cpp cannot be built there (its source is on GitHub
only); where it can, build its llama-bench (`python setup_env.py` or cmake in its tree) and pass the binary.
llama.cpp (which bitnet.cpp is built on) ships inside the `llama-cpp-python` sdist on PyPI and runs ternary
models as TQ2_0. The twin this script writes for it has architecture `llama` (SiLU gate instead of relu², no
sub-norms: a few vector ops per layer apart), the same ternary weights re-encoded as TQ2_0 (2.06 bits a weight
against I2_S's 2) and the same tied F16 embedding. Build llama-bench first (native, OpenMP), e.g.:

    pip download llama-cpp-python --no-deps --no-binary :all: -d /tmp/lcp && tar xzf /tmp/lcp/*.tar.gz -C /tmp
    cd /tmp/llama_cpp_python-*/vendor/llama.cpp && cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \\
        && cmake --build build --target llama-bench -j

    python benchmarks/bench_llamacpp.py --llama-bench /tmp/llama_cpp_python-*/vendor/llama.cpp/build/bin/llama-bench \\
        [--bitnet-cpp /path/to/BitNet/build/bin/llama-bench] [--threads 1,2] [--runs 3] [-p 128] [-n 64]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import bench_engine
import numpy as np

TWIN = bench_engine.DEFAULT_MODEL.with_name("synthetic-2b4t-llama-tq2.gguf")


def write_tq2_twin(src: Path, dst: Path) -> None:
    """The I2_S benchmark model as a `llama` GGUF with TQ2_0 weights (values unchanged: each 256-block's scale is
    the tensor's I2_S scale, so ternary * scale round-trips exactly up to the f16 rounding of the scale)."""
    from bitnet.gguf import GGMLType, GGUFReader, GGUFWriter, quants

    r = GGUFReader(src)
    w = GGUFWriter(dst.with_suffix(".tmp"))
    w.add("general.architecture", "llama")
    w.add("general.name", "synthetic 2B4T-shape benchmark model, llama/TQ2_0 twin (random weights)")
    for key, value in r.metadata.items():
        if key.startswith("bitnet-b1.58."):
            w.add("llama." + key.removeprefix("bitnet-b1.58."), value, r.metadata_types[key])
        elif key.startswith("tokenizer."):
            w.add(key, value, r.metadata_types[key], elem_type=r.array_types.get(key))
    for name, info in r.tensors.items():
        if "sub_norm" in name:
            continue
        if info.ggml_type == GGMLType.I2_S:
            def tq2(name=name, info=info):
                ternary, scale = quants.unpack_i2s(r.tensor_bytes(name), info.shape)
                return quants.quantize_tq2_0(ternary.astype(np.float32) * np.float32(scale))
            w.add_tensor(name, info.shape, GGMLType.TQ2_0, tq2)
        else:
            w.add_tensor(name, info.shape, info.ggml_type, lambda name=name: r.tensor_bytes(name))
    w.write()
    dst.with_suffix(".tmp").rename(dst)


def llama_bench(binary: Path, model: Path, n_threads: int, n_prompt: int, n_gen: int) -> dict:
    out = subprocess.run([str(binary), "-m", str(model), "-t", str(n_threads), "-p", str(n_prompt),
                          "-n", str(n_gen), "-r", "1", "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    by_test = {("pp" if r["n_prompt"] else "tg"): r["avg_ts"] for r in rows}
    return dict(prefill_tps=by_test["pp"], decode_tps=by_test["tg"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-bench", type=Path, help="llama.cpp's llama-bench (runs the TQ2_0 twin)")
    ap.add_argument("--bitnet-cpp", type=Path, help="bitnet.cpp's llama-bench (runs the I2_S original)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    args = ap.parse_args(argv)
    if args.llama_bench is None and args.bitnet_cpp is None:
        ap.error("give --llama-bench (llama.cpp's), --bitnet-cpp (bitnet.cpp's) or both")
    for binary in (args.llama_bench, args.bitnet_cpp):
        if binary is not None and not binary.is_file():
            ap.error(f"{binary}: no such file")
    if not bench_engine.DEFAULT_MODEL.exists():
        bench_engine.write_synthetic(bench_engine.DEFAULT_MODEL)
    original = bench_engine.DEFAULT_MODEL
    configs = {}
    if args.bitnet_cpp:
        configs["bitnet.cpp I2_S"] = lambda t: llama_bench(args.bitnet_cpp, original, t, args.n_prompt, args.n_gen)
    if args.llama_bench:
        if not TWIN.exists():
            print(f"writing {TWIN} ...", file=sys.stderr)
            write_tq2_twin(original, TWIN)
        configs["llama.cpp TQ2_0"] = lambda t: llama_bench(args.llama_bench, TWIN, t, args.n_prompt, args.n_gen)
        configs["bitnet TQ2_0"] = lambda t: bench_engine.run_one(TWIN, t, args.n_prompt, args.n_gen)
    configs["bitnet I2_S"] = lambda t: bench_engine.run_one(original, t, args.n_prompt, args.n_gen)
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.runs):               # interleaved: the VM's drift touches every configuration alike
        for n_threads in [int(t) for t in args.threads.split(",")]:
            for name, run in configs.items():
                results.setdefault((name, n_threads), []).append(run(n_threads))
    print(f"| engine, weights | threads | prefill tok/s (pp{args.n_prompt}) | decode tok/s (tg{args.n_gen}) |")
    print("|---|---|---|---|")
    for (name, n_threads), rs in results.items():
        pp = statistics.median(r["prefill_tps"] for r in rs)
        tg = statistics.median(r["decode_tps"] for r in rs)
        print(f"| {name} | {n_threads} | {pp:.1f} | {tg:.1f} |")
    for (name, n_threads), rs in results.items():
        if name.startswith("bitnet "):
            continue
        ours = results[("bitnet I2_S", n_threads)]
        ratio = {k: statistics.median(a[k] / b[k] for a, b in zip(ours, rs)) for k in ("prefill_tps", "decode_tps")}
        print(f"bitnet I2_S / {name}, {n_threads} thread(s): prefill x{ratio['prefill_tps']:.2f}, "
              f"decode x{ratio['decode_tps']:.2f}")
    print(f"medians of {args.runs} interleaved runs")
    return 0

if __name__ == "__main__":
    sys.exit(main())
