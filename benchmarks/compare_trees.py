"""Before/after on the same VM minute: bench_engine's single-run measurement, alternating between two source
trees (each built in place), so that the VM's drift touches both alike. Reports per-tree medians and the median
of the per-pair ratios.

    python benchmarks/compare_trees.py BASELINE_TREE CANDIDATE_TREE [--runs 5] [--threads 2] [-p 128 -n 128]

The order of the two alternates from pair to pair, so that neither always runs first after a pause.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import bench_engine

KEYS = ("prefill_tps", "decode_tps", "decode_greedy_tps", "decode_sampled_tps", "decode_fraction", "load_s",
        "peak_rss_mb")


def run_once(tree: Path, model: Path, n_threads: int, n_prompt: int, n_gen: int) -> dict:
    return bench_engine.run_one(model, n_threads, n_prompt, n_gen, env=dict(os.environ, PYTHONPATH=str(tree)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--model", type=Path, default=bench_engine.DEFAULT_MODEL)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    args = ap.parse_args(argv)
    if not args.model.exists():
        sys.exit(f"{args.model} missing: run benchmarks/bench_engine.py once to write it")
    runs: dict[str, list[dict]] = {"baseline": [], "candidate": []}
    trees = [("baseline", args.baseline), ("candidate", args.candidate)]
    for i in range(args.runs):
        for name, tree in trees if i % 2 == 0 else trees[::-1]:
            runs[name].append(run_once(tree.resolve(), args.model, args.threads, args.n_prompt, args.n_gen))
    title = f"{args.threads} threads, pp{args.n_prompt}/tg{args.n_gen}, medians of {args.runs}"
    print(f"| {title} | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for name, rs in runs.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[k] for r in rs):.3g}" for k in KEYS) + " |")
    ratios = [statistics.median(c[k] / b[k] for b, c in zip(runs["baseline"], runs["candidate"])) for k in KEYS]
    print("| candidate / baseline (median of pairs) | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
