"""Batched decode: aggregate tokens/s at B = 1, 2, 4, 8, 16 concurrent sequences, through the engine's scheduler
and through `bitnet serve --parallel B` with B concurrent streaming clients (synthetic 2B4T-shape file).

    python benchmarks/bench_batch.py [--model M.gguf] [--batch 1,2,4,8,16] [--threads 2] [--steps 24]
                                     [--no-server] [--lm-head q8_0] [--json out.json]

Engine: B sessions with 16-token prompts are prefilled, then the scheduler's decode steps are timed in
segments of --steps steps (median segment); aggregate tokens/s = B x steps / seconds. Server: B clients stream
--max-tokens tokens each at once (token-id prompts, greedy, no end-of-text stop); aggregate = completion tokens
of all / wall time from the first request to the last [DONE] (prefill included, so a little below the engine's
figure). Each B is reported as a ratio to B = 1 of the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from bench_engine import DEFAULT_MODEL, SHAPE, write_synthetic  # noqa: E402

PROMPT_TOKENS = 16


def engine_tokens_per_s(model, batch: int, steps: int, segments: int = 3, temperature: float = 0.0) -> float:
    """Aggregate decode tokens/s of `batch` sequences through the scheduler (greedy, or sampled at `temperature`
    with a seed per sequence)."""
    from bitnet.batching import Scheduler
    from bitnet.generation import SamplingParams

    rng = np.random.default_rng(batch)
    sched = Scheduler(model, batch)
    seqs = [sched.start(model.new_session(), [int(t) for t in rng.integers(0, 256, PROMPT_TOKENS)],
                        SamplingParams.make(max_tokens=10**9, temperature=temperature, seed=i))
            for i in range(batch)]
    while any(s.prefilling for s in seqs):
        sched.step()
    for _ in range(2):
        sched.step()
    rates = []
    for _ in range(segments):
        t0 = time.perf_counter()
        for _ in range(steps):
            sched.step()
        rates.append(len(sched.active) * steps / (time.perf_counter() - t0))
    for s in seqs:
        s.cancel()
    sched.step()
    return statistics.median(rates)


async def _stream(http, max_tokens: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    body = {"prompt": [int(t) for t in rng.integers(0, 256, PROMPT_TOKENS)], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with http.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"usage"' in line:
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
    return tokens


def server_tokens_per_s(model_path: Path, batch: int, threads: int, max_tokens: int, extra: list[str]) -> float:
    import httpx
    from bench_server import Server

    server = Server(model_path, batch, 16, threads, ["--ctx-size", str(SHAPE["n_ctx"]), *extra])
    try:
        async def run() -> float:
            async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
                await _stream(http, 4, seed=99)                      # warm-up
                t0 = time.perf_counter()
                counts = await asyncio.gather(*(_stream(http, max_tokens, i) for i in range(batch)))
                return sum(counts) / (time.perf_counter() - t0)
        return asyncio.run(run())
    finally:
        server.stop()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--batch", default="1,2,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=24, help="decode steps per timed engine segment")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per server client")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--lm-head", choices=("exact", "q8_0"), default="exact")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.model.exists():
        print(f"writing {args.model} ...", file=sys.stderr)
        args.model.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic(args.model)

    import bitnet
    from bitnet.backends.cpu.kernels import active_variant

    batches = [int(b) for b in args.batch.split(",")]
    kwargs = {} if args.lm_head == "exact" else {"lm_head": args.lm_head}
    model = bitnet.load(args.model, n_threads=args.threads, n_ctx=SHAPE["n_ctx"], **kwargs)
    rows = []
    for b in batches:
        row = {"batch": b, "engine_tps": engine_tokens_per_s(model, b, args.steps)}
        print(f"B={b:3d} engine {row['engine_tps']:7.1f} tok/s", file=sys.stderr, flush=True)
        rows.append(row)
    model.close()
    if not args.no_server:
        extra = [] if args.lm_head == "exact" else ["--lm-head", args.lm_head]
        for row in rows:
            row["server_tps"] = server_tokens_per_s(args.model, row["batch"], args.threads, args.max_tokens, extra)
            print(f"B={row['batch']:3d} server {row['server_tps']:7.1f} tok/s", file=sys.stderr, flush=True)
    base = {k: rows[0][k] for k in ("engine_tps", "server_tps") if k in rows[0]}
    print(f"cpu: {_cpu_model()}  variant: {active_variant()}  threads: {args.threads}  "
          f"lm head: {args.lm_head}")
    print("| B | engine tok/s | x B=1 | server tok/s | x B=1 |")
    print("|---|---|---|---|---|")
    for row in rows:
        line = f"| {row['batch']} | {row['engine_tps']:.1f} | {row['engine_tps'] / base['engine_tps']:.2f} |"
        if "server_tps" in row:
            line += f" {row['server_tps']:.1f} | {row['server_tps'] / base['server_tps']:.2f} |"
        else:
            line += " – | – |"
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "threads": args.threads, "lm_head": args.lm_head,
                                         "variant": active_variant()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
