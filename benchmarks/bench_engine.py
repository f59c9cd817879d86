"""Engine benchmark on a synthetic BitNet b1.58 2B4T-shape model (issue #2's targets).

Writes (once, never committed) a GGUF with the 2B4T shapes — hidden 2560, 30 layers, 20 heads, 5 KV heads,
FFN 6912, vocabulary 128256, random ternary I2_S weights, F16 token embedding (~1.19 GB) — with the project's
own writer, then for each kernel variant, LM head (exact F16 / int8 q8_0) and thread count reports medians over
several runs of: load time, peak RSS, prefill tokens/s (128-token prompt) and decode tokens/s (128 tokens: the
forward step alone, and greedy and sampled generation through Model.generate, the call `bitnet run` makes). Each
run also measures the machine's read bandwidth with the same thread count between segments of the decode, with
the compiled probe of benchmarks/bandwidth.py (the widest loads the CPU has), and decode is reported as a
fraction of that ceiling (decode at batch 1 reads every weight once per token, and the head).

    python benchmarks/bench_engine.py [--runs 3] [--threads 1,2] [--variants avx2,avx512,amx] [--lm-heads exact,q8_0]
                                      [--ternary mac,lut] [-p 128,512] [--model PATH] [--json out.json]
    python benchmarks/bench_engine.py --depths 128,1024,4000 [--cache-types f16,q8_0] [--threads 2] [--runs 3]
    python benchmarks/bench_engine.py --batches 1,8,16 [--variants avx512,amx] [--threads 2] [--runs 3]

-p takes several prompt lengths (pp128 and pp512: the AMX tiles take prompts of 16 tokens or more, and their
gain grows with the prompt); the default variants are every SIMD one this CPU runs (amx-model, the tile model
for tests, is left out).

--ternary picks the kernels of the I2_S layers: the multiply-add ones (mac), the LUT ones (lut), or auto (the
engine's measured per-CPU choice, bitnet.backends.cpu.kernels.choice).

--depths measures decode at context depth instead (attention's share of a step grows with the positions it
reads): for each depth, a prompt of that many tokens is prefilled (its tokens/s is reported: a long prompt's
attention is most of its cost), then DEPTH_GEN tokens are decoded greedily and sampled through Model.generate;
each depth is also given as a fraction of the shallowest one. --cache-types compares the KV cache element types.

--batches measures B sequences decoding at once instead (the batch step `bitnet serve --parallel` runs): aggregate
tokens/s greedy and sampled, each as a multiple of the first B given.

Each configuration runs in a fresh subprocess so peak RSS is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = dict(n_embd=2560, n_layer=30, n_head=20, n_head_kv=5, n_ff=6912, n_vocab=128256, n_ctx=4096)
DEFAULT_MODEL = Path(__file__).resolve().parent / "out" / "synthetic-2b4t-i2s.gguf"


def _random_i2s(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random ternary codes packed 4 per byte (the layout is irrelevant for random weights) + the scale tail."""
    digits = np.array([[(v // 3 ** i) % 3 for i in range(4)] for v in range(81)], dtype=np.uint8)
    table = (digits[:, 0] << 6 | digits[:, 1] << 4 | digits[:, 2] << 2 | digits[:, 3]).astype(np.uint8)
    packed = table[rng.integers(0, 81, size=rows * cols // 4, dtype=np.uint8)]
    tail = np.zeros(32, dtype=np.uint8)
    tail[:4] = np.frombuffer(np.float32(0.02).tobytes(), dtype=np.uint8)
    return np.concatenate([packed, tail])


def write_synthetic(path: Path, seed: int = 0, shape: dict | None = None) -> None:
    """The benchmark model, or with `shape` (SHAPE's keys) a smaller one of the same architecture (tests)."""
    from bitnet.gguf import GGMLType, GGUFValueType, GGUFWriter
    from bitnet.tokenizer import byte_level_tokens

    s = shape or SHAPE
    E, F, V, L = s["n_embd"], s["n_ff"], s["n_vocab"], s["n_layer"]
    hd = E // s["n_head"]
    kv = hd * s["n_head_kv"]
    arch = "bitnet-b1.58"
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    w = GGUFWriter(tmp)
    w.add("general.architecture", arch)
    w.add("general.name", "synthetic 2B4T-shape benchmark model (random weights)")
    for key, value in [("context_length", s["n_ctx"]), ("embedding_length", E), ("block_count", L),
                       ("feed_forward_length", F), ("attention.head_count", s["n_head"]),
                       ("attention.head_count_kv", s["n_head_kv"]), ("rope.dimension_count", hd),
                       ("vocab_size", V)]:
        w.add(f"{arch}.{key}", value)
    w.add(f"{arch}.rope.freq_base", 500000.0)
    w.add(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    # A byte-level vocabulary: 256 byte tokens, a few control tokens as in LLaMA-3, the rest unreachable normal
    # tokens (no merges). Enough to load, tokenize and decode at the real vocabulary size.
    byte_chars = byte_level_tokens()
    n_special = 256
    tokens = byte_chars + [f"tok{i}" for i in range(V - 256 - n_special)] + \
        [f"<|reserved_special_token_{i}|>" for i in range(n_special)]
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", "llama-bpe")
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.token_type", [1] * (V - n_special) + [3] * n_special)
    w.add("tokenizer.ggml.merges", [], elem_type=GGUFValueType.STRING)
    w.add("tokenizer.ggml.bos_token_id", V - n_special)
    w.add("tokenizer.ggml.eos_token_id", V - n_special + 1)
    w.add("tokenizer.ggml.add_bos_token", True)

    def f16_embedding():
        return (rng.standard_normal((V, E), dtype=np.float32) * 0.02).astype(np.float16)

    w.add_tensor("token_embd.weight", (V, E), GGMLType.F16, f16_embedding)
    w.add_tensor("output_norm.weight", (E,), GGMLType.F32, np.ones(E, dtype=np.float32))
    for i in range(L):
        b = f"blk.{i}."
        for name, (rows, cols) in {"attn_q": (E, E), "attn_k": (kv, E), "attn_v": (kv, E), "attn_output": (E, E),
                                   "ffn_gate": (F, E), "ffn_up": (F, E), "ffn_down": (E, F)}.items():
            w.add_tensor(b + name + ".weight", (rows, cols), GGMLType.I2_S,
                         lambda r=rows, c=cols: _random_i2s(rng, r, c))
        for name, n in {"attn_norm": E, "ffn_norm": E, "attn_sub_norm": E, "ffn_sub_norm": F}.items():
            w.add_tensor(b + name + ".weight", (n,), GGMLType.F32, np.ones(n, dtype=np.float32))
    w.write()
    os.replace(tmp, path)


PROBE_MB = 256       # well past the last-level cache (32 MB here)
DECODE_SEGMENT = 16  # decode steps between two bandwidth probes


def _probe():
    """The compiled bandwidth probe (benchmarks/bandwidth.py); without a C compiler, the engine's 64-bit
    stream_read, which under-states the ceiling on CPUs with wider loads (said in the output)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from bandwidth import Probe

        probe = Probe(PROBE_MB)
        return (lambda n: probe.read_gbs(n)), f"compiled probe, {probe.width}-bit loads"
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        from bitnet.backends.cpu.kernels import _kernels

        buf = np.ones(PROBE_MB * 2**20 // 8, dtype=np.uint64)

        def read(n: int) -> float:
            t0 = time.perf_counter()
            _kernels.stream_read(buf, n)
            return buf.nbytes / (time.perf_counter() - t0) / 1e9
        return read, f"engine stream_read (64-bit loads; the compiled probe failed: {exc})"


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure_one(model_path: str, n_threads: int, n_prompt: int, n_gen: int, lm_head: str = "exact") -> dict:
    """One run in this process: load, prefill n_prompt tokens, decode n_gen tokens greedily.

    This VM's read bandwidth drifts by a third within seconds (other tenants), so the decode runs in segments of
    DECODE_SEGMENT steps with a bandwidth probe before each and after the last: a segment's fraction of the
    ceiling uses the mean of the two probes around it, and the run reports the median fraction. Decode tokens/s
    is over the decode steps alone. Peak RSS is this process's high-water mark (VmHWM; not getrusage's
    ru_maxrss, which Linux carries across fork+exec from the model-writing parent) without the probe's buffer."""
    import bitnet

    t0 = time.perf_counter()
    model = bitnet.load(model_path, n_threads=n_threads, n_ctx=SHAPE["n_ctx"], lm_head=lm_head)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    prompt = [int(t) for t in rng.integers(0, 256, size=n_prompt)]
    session = model.new_session()
    t0 = time.perf_counter()
    logits, _ = session.prefill(prompt)
    prefill_s = time.perf_counter() - t0

    peak_rss_mb = _proc_status_mb("VmHWM")
    read_gbs, probe_kind = _probe()
    probes = [read_gbs(n_threads)]
    segments = []              # (steps, seconds)
    while (done := sum(n for n, _ in segments)) < n_gen:
        steps = min(DECODE_SEGMENT, n_gen - done)
        t0 = time.perf_counter()
        for _ in range(steps):
            logits = session.step(int(np.argmax(logits)))
        segments.append((steps, time.perf_counter() - t0))
        probes.append(read_gbs(n_threads))
    peak_rss_mb = max(peak_rss_mb, _proc_status_mb("VmRSS") - PROBE_MB)   # decode only grows
    # decode through the call `bitnet run` makes (Model.stream): the backend's greedy step, and the sampler; each
    # rated against the probes just before and after it, as the segments are
    generated = {}
    for mode, settings in (("greedy", dict(temperature=0.0)), ("sampled", dict(temperature=0.8, seed=1))):
        generated[mode] = (model.generate(prompt, max_tokens=n_gen, session=session, **settings).timings,
                           (probes[-1] + read_gbs(n_threads)) / 2)
        probes.append(read_gbs(n_threads))

    bytes_per_token = _bytes_per_token(model, lm_head)
    fractions = [n / dt * bytes_per_token / ((probes[i] + probes[i + 1]) / 2 * 1e9)
                 for i, (n, dt) in enumerate(segments)]
    rated = {mode: dict(tps=t.decode_tokens_per_s, fraction=t.decode_tokens_per_s * bytes_per_token / (gbs * 1e9))
             for mode, (t, gbs) in generated.items()}
    return dict(threads=n_threads, bandwidth_gbs=statistics.median(probes), load_s=load_s,
                prefill_tps=n_prompt / prefill_s, decode_tps=n_gen / sum(dt for _, dt in segments),
                decode_greedy_tps=rated["greedy"]["tps"], greedy_fraction=rated["greedy"]["fraction"],
                decode_sampled_tps=rated["sampled"]["tps"], sampled_fraction=rated["sampled"]["fraction"],
                decode_fraction=statistics.median(fractions), peak_rss_mb=peak_rss_mb,
                bytes_per_token=bytes_per_token, kv_cache_mb=session.context.nbytes / 2**20,
                file_mb=os.path.getsize(model_path) / 2**20, kernels=_ran_kernels(model), probe=probe_kind)


def _bytes_per_token(model, lm_head: str) -> int:
    """What a decode step reads from memory at batch 1: every ternary weight once, and the LM head."""
    tensors = model.reader.tensors
    weights = sum(i.nbytes for i in tensors.values() if i.ggml_type.name in ("I2_S", "TQ2_0", "TQ1_0"))
    head_info = tensors.get("output.weight", tensors["token_embd.weight"])
    return weights + (head_info.nbytes if lm_head == "exact" else head_info.n_elements // 32 * 34)  # Q8_0 re-encoded


BATCH_STEPS = 16   # decode steps per timed segment of a batch (median of three)


def measure_batches(model_path: str, n_threads: int, batches: list[int]) -> dict:
    """Aggregate decode tokens/s of B sequences at once through the scheduler (the path of `bitnet serve
    --parallel`), greedy and sampled, for each B (benchmarks/bench_batch.py's engine measurement)."""
    import bitnet

    model = bitnet.load(model_path, n_threads=n_threads, n_ctx=SHAPE["n_ctx"])
    # imported after bitnet: bench_batch puts its own tree first on sys.path, and PYTHONPATH may name another
    from bench_batch import engine_tokens_per_s

    rows = [dict(batch=b, greedy_tps=engine_tokens_per_s(model, b, BATCH_STEPS),
                 sampled_tps=engine_tokens_per_s(model, b, BATCH_STEPS, temperature=0.8)) for b in batches]
    return dict(threads=n_threads, batches=rows, kernels=_ran_kernels(model))


def _row_medians(runs: list[dict], rows: str, keys: tuple) -> list[dict]:
    """Per row of runs[*][rows] (a depth, a batch size), the median over the runs of each of `keys`."""
    return [{k: statistics.median(r[rows][i][k] for r in runs) for k in keys} for i in range(len(runs[0][rows]))]


def batch_table(runs: dict[tuple, list[dict]]) -> list[str]:
    """Markdown rows of the medians over runs, per (variant, threads) and B, each as a multiple of B = the
    first batch size given."""
    lines = ["| variant | threads | sequences | greedy tok/s | x first | sampled tok/s | x first |",
             "|---|---|---|---|---|---|---|"]
    for (variant, n_threads), rs in runs.items():
        med = _row_medians(rs, "batches", ("greedy_tps", "sampled_tps"))
        for i, m in enumerate(med):
            lines.append(f"| {variant} | {n_threads} | {rs[0]['batches'][i]['batch']} | {m['greedy_tps']:.1f} | "
                         f"{m['greedy_tps'] / med[0]['greedy_tps']:.2f} | {m['sampled_tps']:.1f} | "
                         f"{m['sampled_tps'] / med[0]['sampled_tps']:.2f} |")
    return lines


DEPTH_GEN = 32    # tokens decoded at each depth


def measure_depths(model_path: str, n_threads: int, depths: list[int], cache_type: str = "f16") -> dict:
    """Prefill a prompt of each depth in a fresh session, then decode DEPTH_GEN tokens greedily and DEPTH_GEN
    sampled (the second call reuses the prompt's cache, so only its decode runs)."""
    import bitnet

    extra = {} if cache_type == "f16" else dict(cache_type=cache_type)     # older trees have no cache_type
    model = bitnet.load(model_path, n_threads=n_threads, n_ctx=SHAPE["n_ctx"], **extra)
    rng = np.random.default_rng(1)
    model.generate([1, 2, 3], max_tokens=8, temperature=0.0)    # warm: the weights' pages, the thread team
    rows = []
    for depth in depths:
        prompt = [int(t) for t in rng.integers(0, 256, size=depth)]
        session = model.new_session()
        greedy = model.generate(prompt, max_tokens=DEPTH_GEN, session=session, temperature=0.0).timings
        sampled = model.generate(prompt, max_tokens=DEPTH_GEN, session=session, temperature=0.8, seed=1).timings
        rows.append(dict(depth=depth, prefill_tps=greedy.prefill_tokens_per_s,
                         greedy_tps=greedy.decode_tokens_per_s, sampled_tps=sampled.decode_tokens_per_s))
    return dict(threads=n_threads, cache_type=cache_type, depths=rows, kernels=_ran_kernels(model))


def run_depths(model: Path, n_threads: int, depths: list[int], cache_type: str = "f16",
               env: dict | None = None) -> dict:
    """measure_depths in a fresh process (`env` may point PYTHONPATH at another tree)."""
    return _in_child(model, n_threads, ["--depths", ",".join(map(str, depths)), "--cache-types", cache_type], env)


def run_batches(model: Path, n_threads: int, batches: list[int], env: dict | None = None) -> dict:
    """measure_batches in a fresh process (`env` sets BITNET_KERNEL)."""
    return _in_child(model, n_threads, ["--batches", ",".join(map(str, batches))], env)


def _in_child(model: Path, n_threads: int, args: list[str], env: dict | None) -> dict:
    """This script's --one mode in a fresh process: the JSON object its last line prints."""
    out = subprocess.run([sys.executable, __file__, "--one", "--model", str(model), "--threads", str(n_threads),
                          *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def depth_table(runs: dict[tuple, list[dict]]) -> list[str]:
    """Markdown rows of the medians over runs, per (threads, cache type) and depth, with each depth's decode as a
    fraction of the shallowest depth's and its prefill as a fraction of the shallowest prompt's."""
    lines = ["| threads | KV cache | depth | prefill tok/s | x shallowest | greedy tok/s | sampled tok/s | "
             "x shallowest (sampled) |", "|---|---|---|---|---|---|---|---|"]
    for (n_threads, cache_type), rs in runs.items():
        med = _row_medians(rs, "depths", ("prefill_tps", "greedy_tps", "sampled_tps"))
        for i, m in enumerate(med):
            lines.append(f"| {n_threads} | {cache_type} | {rs[0]['depths'][i]['depth']} | {m['prefill_tps']:.1f} | "
                         f"{m['prefill_tps'] / med[0]['prefill_tps']:.2f} | {m['greedy_tps']:.2f} | "
                         f"{m['sampled_tps']:.2f} | {m['sampled_tps'] / med[0]['sampled_tps']:.2f} |")
    return lines


def _ran_kernels(model) -> list[str]:
    # compare_trees.py runs this file against older trees too, from before Model.ran_kernels existed
    return model.ran_kernels() if hasattr(model, "ran_kernels") else model._transformer.ran_kernels()


def run_one(model: Path, n_threads: int, n_prompt: int = 128, n_gen: int = 128, env: dict | None = None,
            lm_head: str = "exact") -> dict:
    """measure_one in a fresh process (so that peak RSS is its own); `env` may point PYTHONPATH at another tree
    or set BITNET_KERNEL."""
    return _in_child(model, n_threads, ["-p", str(n_prompt), "-n", str(n_gen), "--lm-heads", lm_head], env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default=None, help="kernel variants (default: every SIMD one this CPU runs)")
    ap.add_argument("--lm-heads", default="exact", help="exact, q8_0 or both (comma-separated)")
    ap.add_argument("--ternary", default="auto", help="mac, lut or auto (comma-separated): the I2_S kernels")
    ap.add_argument("-p", "--n-prompt", default="128", help="prompt lengths (comma-separated)")
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--depths", default=None, help="decode at these context depths (comma-separated) instead")
    ap.add_argument("--cache-types", default="f16", help="with --depths: f16, q8_0 or both (comma-separated)")
    ap.add_argument("--batches", default=None, help="decode B sequences at once, for these B (comma-separated) "
                                                    "instead")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)   # child-process mode
    args = ap.parse_args(argv)

    depths = [int(d) for d in args.depths.split(",")] if args.depths else None
    batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    if args.one and batches:
        print(json.dumps(measure_batches(str(args.model), int(args.threads), batches)))
        return 0
    if args.one and depths:
        print(json.dumps(measure_depths(str(args.model), int(args.threads), depths, args.cache_types)))
        return 0
    if args.one:
        print(json.dumps(measure_one(str(args.model), int(args.threads), int(args.n_prompt), args.n_gen,
                                     args.lm_heads)))
        return 0
    if not args.model.exists():
        print(f"writing {args.model} ...", file=sys.stderr)
        t0 = time.perf_counter()
        write_synthetic(args.model)
        print(f"  written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    from bitnet.backends.cpu.kernels import supported_variants

    thread_counts = [int(t) for t in args.threads.split(",")]
    if depths:
        depth_runs: dict[tuple, list[dict]] = {(n, c): [] for n in thread_counts for c in args.cache_types.split(",")}
        for _ in range(args.runs):       # interleaved, as below
            for n_threads, cache_type in depth_runs:
                depth_runs[(n_threads, cache_type)].append(run_depths(args.model, n_threads, depths, cache_type))
        print("\n".join(depth_table(depth_runs)))
        print(f"medians of {args.runs} interleaved runs, {DEPTH_GEN} tokens decoded at each depth; kernels: "
              f"{', '.join(next(iter(depth_runs.values()))[0]['kernels'])}")
        if args.json:
            args.json.write_text(json.dumps({f"{n} {c}": rs for (n, c), rs in depth_runs.items()}, indent=2))
        return 0
    variants = (args.variants.split(",") if args.variants else
                [v for v in supported_variants() if v not in ("scalar", "amx-model")] or ["scalar"])
    if batches:
        batch_runs: dict[tuple, list[dict]] = {(v, n): [] for v in variants for n in thread_counts}
        for _ in range(args.runs):       # interleaved, as below
            for variant, n_threads in batch_runs:
                batch_runs[(variant, n_threads)].append(run_batches(args.model, n_threads, batches,
                                                                    dict(os.environ, BITNET_KERNEL=variant)))
        print("\n".join(batch_table(batch_runs)))
        print(f"medians of {args.runs} interleaved runs of {BATCH_STEPS}-step segments (each the median of three), "
              f"16-token prompts, through the scheduler; kernels: "
              f"{', '.join(next(iter(batch_runs.values()))[0]['kernels'])}")
        if args.json:
            args.json.write_text(json.dumps({f"{v} {n}": rs for (v, n), rs in batch_runs.items()}, indent=2))
        return 0
    heads = args.lm_heads.split(",")
    paths = args.ternary.split(",")
    prompts = [int(p) for p in args.n_prompt.split(",")]
    configs = [(v, p, h, n, np_) for np_ in prompts for v in variants for p in paths for h in heads
               for n in thread_counts]
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    for _ in range(args.runs):            # interleaved, so that the VM's drift touches every configuration alike
        for variant, path, head, n_threads, n_prompt in configs:
            env = dict(os.environ, BITNET_KERNEL=variant if path == "auto" else f"{variant}+{path}")
            runs[(variant, path, head, n_threads, n_prompt)].append(run_one(args.model, n_threads, n_prompt,
                                                                            args.n_gen, env, head))
    rows = []
    for (variant, path, head, n_threads, n_prompt), rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("load_s", "prefill_tps", "decode_tps", "decode_greedy_tps", "decode_sampled_tps",
                         "peak_rss_mb", "bandwidth_gbs", "decode_fraction", "greedy_fraction", "sampled_fraction")}
        ceiling = med["bandwidth_gbs"] * 1e9 / rs[0]["bytes_per_token"]
        rows.append(dict(variant=variant, ternary=path, lm_head=head, threads=n_threads, n_prompt=n_prompt,
                         runs=len(rs),
                         ceiling_tps=ceiling,
                         file_mb=rs[0]["file_mb"], kv_cache_mb=rs[0]["kv_cache_mb"], kernels=rs[0]["kernels"],
                         probe=rs[0]["probe"], prefill_all=[round(r["prefill_tps"], 1) for r in rs],
                         decode_fraction_all=[round(r["decode_fraction"], 2) for r in rs], **med))

    print(f"| variant | ternary | LM head | threads | load s | peak RSS MB | prompt | prefill tok/s | "
          f"decode tok/s (tg{args.n_gen}) | greedy tok/s | sampled tok/s | read GB/s | ceiling tok/s | "
          "decode / ceiling | greedy / ceiling | sampled / ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['ternary']} | {r['lm_head']} | {r['threads']} | {r['load_s']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | pp{r['n_prompt']} | "
              f"{r['prefill_tps']:.1f} | {r['decode_tps']:.1f} | {r['decode_greedy_tps']:.1f} | "
              f"{r['decode_sampled_tps']:.1f} | {r['bandwidth_gbs']:.1f} | {r['ceiling_tps']:.1f} | "
              f"{r['decode_fraction']:.2f} | {r['greedy_fraction']:.2f} | {r['sampled_fraction']:.2f} |")
    for r in rows:
        print(f"{r['variant']} {r['ternary']} {r['lm_head']} threads {r['threads']} pp{r['n_prompt']}: "
              f"prefill per run {r['prefill_all']}, "
              f"decode / ceiling per run {r['decode_fraction_all']}")
    print(f"file {rows[0]['file_mb']:.0f} MB, KV cache {rows[0]['kv_cache_mb']:.0f} MB (f16, {SHAPE['n_ctx']} "
          f"positions, committed lazily), medians of {args.runs} runs (read GB/s: the median probe, "
          f"{rows[0]['probe']}; "
          f"decode / ceiling: the median over runs of each run's median over its {DECODE_SEGMENT}-step segments, "
          f"each against the probes just before and after it); kernels: {', '.join(rows[0]['kernels'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
