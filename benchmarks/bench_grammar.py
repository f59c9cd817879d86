"""What structured output costs: the grammar's token mask per decoding step on the 128,256-token LLaMA-3
vocabulary (the official 2B4T file's, from tests/data/reference/llama3-vocab.gguf), and decode tokens/s with and
without a JSON schema on the synthetic 2B4T-shape model of bench_engine.py, through Model.generate.

The mask step is what Decoding adds per token: llguidance's bitmask for the parser state, then the logits with
the mask applied (bitnet.sampling.adjust_logits), walked along the tokens of a JSON document that fits the schema.

    python benchmarks/bench_grammar.py [--threads 2] [--runs 3] [--tokens 64] [--no-decode]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from array import array
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4}}}
DOCUMENT = {"name": "Ada Lovelace, Countess of Lovelace", "age": 36, "tags": ["mathematics", "engines", "poetry"]}


def mask_cost(repeats: int) -> dict:
    from bitnet.constraints import Constraint, compile_grammar, guidance_tokenizer
    from bitnet.gguf import GGUFReader
    from bitnet.sampling import adjust_logits
    from bitnet.tokenizer import Tokenizer

    with GGUFReader(ROOT / "tests" / "data" / "reference" / "llama3-vocab.gguf") as reader:
        tok = Tokenizer.from_gguf_metadata(reader.metadata, pre="llama-bpe")
    n_vocab = tok.vocab_size
    t0 = time.perf_counter()
    guidance = guidance_tokenizer(tok, n_vocab)
    tokenizer_s = time.perf_counter() - t0
    grammar = compile_grammar(json_schema=SCHEMA)
    ids = tok.encode(json.dumps(DOCUMENT, separators=(",", ":")), add_bos=False)
    logits = np.random.default_rng(0).standard_normal(n_vocab).astype(np.float32)
    out = array("f", bytes(4 * n_vocab))
    empty_i, empty_f = array("q"), array("f")
    mask_us, step_us = [], []
    for _ in range(repeats):
        constraint = Constraint(guidance, grammar)
        for token in ids:
            t0 = time.perf_counter()
            mask = constraint.mask()
            t1 = time.perf_counter()
            adjust_logits(logits, out, empty_i, empty_f, empty_i, empty_i, 0.0, 0.0, mask)
            t2 = time.perf_counter()
            constraint.accept(token)
            mask_us.append((t1 - t0) * 1e6)
            step_us.append((t2 - t0) * 1e6)
    return {"vocab": n_vocab, "tokens_per_walk": len(ids), "walks": repeats,
            "llguidance_tokenizer_build_s": round(tokenizer_s, 3),
            "mask_us_median": round(statistics.median(mask_us), 1),
            "mask_us_p99": round(float(np.percentile(mask_us, 99)), 1),
            "mask_and_apply_us_median": round(statistics.median(step_us), 1),
            "mask_and_apply_us_p99": round(float(np.percentile(step_us, 99)), 1)}


def decode_speed(threads: int, runs: int, n_tokens: int) -> dict:
    """Decode tok/s on the synthetic 2B4T model, free and under the JSON schema, alternating (same process)."""
    from bench_engine import DEFAULT_MODEL, write_synthetic

    import bitnet

    if not DEFAULT_MODEL.exists():
        DEFAULT_MODEL.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic(DEFAULT_MODEL)
    model = bitnet.load(DEFAULT_MODEL, n_threads=threads, n_ctx=512)
    prompt = model.tokenize("Write a JSON record:")
    rates: dict[str, list[float]] = {"free": [], "json_schema": []}
    for _ in range(runs):
        for name, extra in (("free", {}), ("json_schema", {"json_schema": SCHEMA})):
            c = model.generate(prompt, max_tokens=n_tokens, temperature=0.8, seed=1, session=model.new_session(),
                               **extra)
            rates[name].append(c.timings.decode_tokens_per_s)
    free, constrained = (statistics.median(rates[k]) for k in ("free", "json_schema"))
    return {"threads": threads, "runs": runs, "tokens": n_tokens, "decode_tok_s_free": round(free, 2),
            "decode_tok_s_json_schema": round(constrained, 2), "ratio": round(constrained / free, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--no-decode", action="store_true", help="only the mask cost (no 1.2 GB synthetic model)")
    args = ap.parse_args(argv)
    result = {"mask": mask_cost(repeats=args.runs * 3)}
    if not args.no_decode:
        result["decode"] = decode_speed(args.threads, args.runs, args.tokens)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
