"""Start-up costs a user waits for before the first token: reading the LLaMA-3 vocabulary's GGUF metadata
(128,256 tokens, 280,147 merges: what the official 2B4T file carries) and rebuilding its tokenizer from that
metadata. Medians of --runs runs, wall and CPU time. These were once asserted in unit tests; speed belongs here.

    python benchmarks/bench_load.py [--runs 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

VOCAB = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "llama3-vocab.gguf"


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from bitnet.gguf import GGUFReader
    from bitnet.tokenizer import Tokenizer

    with GGUFReader(VOCAB) as r:
        metadata = dict(r.metadata)
    cases = {"read the vocabulary GGUF": lambda: GGUFReader(VOCAB).close(),
             "rebuild the tokenizer": lambda: Tokenizer.from_gguf_metadata(metadata)}
    rows = []
    for name, fn in cases.items():
        fn()    # warm: the file in the page cache, the libraries imported
        samples = [_timed(fn) for _ in range(args.runs)]
        rows.append({"case": name, "runs": args.runs, "wall_s": statistics.median(w for w, _ in samples),
                     "cpu_s": statistics.median(c for _, c in samples)})
    print("| case | wall s (median) | CPU s (median) |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
