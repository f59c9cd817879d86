"""Before/after on the same VM minute: bench_engine's single-run measurement, alternating between two source
trees (each built in place), so that the VM's drift touches both alike. Reports per-tree medians and the median
of the per-pair ratios.

    python benchmarks/compare_trees.py BASELINE_TREE CANDIDATE_TREE [--runs 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import bench_engine

KEYS = ("prefill_tps", "decode_tps", "decode_fraction", "load_s", "peak_rss_mb")


def run_once(tree: Path, model: Path, n_threads: int) -> dict:
    return bench_engine.run_one(model, n_threads, env=dict(os.environ, PYTHONPATH=str(tree)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--model", type=Path, default=bench_engine.DEFAULT_MODEL)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.model.exists():
        sys.exit(f"{args.model} missing: run benchmarks/bench_engine.py once to write it")
    runs: dict[str, list[dict]] = {"baseline": [], "candidate": []}
    for _ in range(args.runs):
        for name, tree in (("baseline", args.baseline), ("candidate", args.candidate)):
            runs[name].append(run_once(tree.resolve(), args.model, args.threads))
    print(f"| {args.threads} threads, medians of {args.runs} | " + " | ".join(KEYS) + " |")
    print("|---" * (len(KEYS) + 1) + "|")
    for name, rs in runs.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(r[k] for r in rs):.3g}" for k in KEYS) + " |")
    ratios = [statistics.median(c[k] / b[k] for b, c in zip(runs["baseline"], runs["candidate"])) for k in KEYS]
    print("| candidate / baseline (median of pairs) | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
