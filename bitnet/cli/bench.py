"""`bitnet bench`: llama-bench-style throughput table (prompt processing ppN, generation tgN, mean ± stddev).

ppN evaluates N random tokens in one batch from an empty cache; tgN evaluates N tokens one at a time, as
generation does (sampling excluded, as llama-bench does). tgN-greedy and tgN-sampled generate up to N tokens
through the call `bitnet run` makes (Model.stream, temperature 0 and 0.8), so they time what a user's decode
costs, the backend's greedy step and the sampler included; their tokens/s is over the decode steps, as `run`
prints it. Each test runs once untimed to warm up, then `--repetitions` timed times.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bitnet.cli import _common
from bitnet.cli._common import CLIError


@dataclass
class BenchResult:
    test: str            # "pp128" / "tg128"
    n_prompt: int
    n_gen: int
    n_threads: int
    samples_ts: list[float] = field(default_factory=list)   # tokens/s of each timed repetition
    samples_s: list[float] = field(default_factory=list)
    samples_n: list[int] = field(default_factory=list)      # tokens each repetition evaluated

    @property
    def avg_ts(self) -> float:
        return statistics.fmean(self.samples_ts)

    @property
    def stddev_ts(self) -> float:
        return statistics.stdev(self.samples_ts) if len(self.samples_ts) > 1 else 0.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure prompt and generation throughput (llama-bench style)",
        description="Measure prompt processing (ppN: N tokens in one batch) and text generation (tgN: N tokens "
                    "one at a time) in tokens/s, mean ± standard deviation over repetitions, for each thread "
                    "count. Lists are comma-separated, e.g. -p 128,512 -t 1,2,4.")
    p.add_argument("-m", "--model", type=Path, default=None, metavar="M.gguf",
                   help="GGUF model file (default: the embedded model)")
    p.add_argument("-p", "--n-prompt", type=_common.int_list(0), default=[128], metavar="N[,N...]",
                   help="prompt sizes to test; 0 skips (default: 128)")
    p.add_argument("-n", "--n-gen", type=_common.int_list(0), default=[128], metavar="N[,N...]",
                   help="generation lengths to test; 0 skips (default: 128)")
    p.add_argument("-t", "--threads", type=_common.int_list(1), default=None, metavar="T[,T...]",
                   help="thread counts to test (default: all available; 1 when BITNET_DETERMINISTIC=1)")
    p.add_argument("-r", "--repetitions", type=_common.int_at_least(1), default=5, metavar="R",
                   help="timed repetitions of each test (default: 5)")
    _common.add_lm_head_option(p)
    _common.add_cache_type_option(p)
    _common.add_device_option(p)
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each test")
    p.add_argument("--seed", type=_common.seed_value, default=0, metavar="S",
                   help="seed of the random test tokens (default: 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--receipt", type=Path, default=None, metavar="PATH",
                   help="write a JSON receipt (model hash, kernels that ran, throughput)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    _common.add_debug(p)
    p.set_defaults(func=bench)


def thread_counts(requested: list[int] | None) -> list[int]:
    from bitnet import settings

    if settings.deterministic():
        if requested and requested != [1]:
            print("bitnet bench: BITNET_DETERMINISTIC=1 forces one thread", file=sys.stderr)
        return [1]
    return list(dict.fromkeys(requested)) if requested else [settings.threads(None)]


def _time_prompt(session, tokens: list[int]) -> float:
    session.reset()
    t0 = time.perf_counter()
    session.prefill(tokens)
    return time.perf_counter() - t0


def _time_generation(session, tokens: list[int]) -> float:
    session.reset()
    t0 = time.perf_counter()
    for token in tokens:
        session.step(token)
    return time.perf_counter() - t0


# The prompt of the generate tests: a few tokens, so that the decode dominates; and their sampler settings.
GENERATE_PROMPT_TOKENS = 8
GENERATE_MODES = {"greedy": dict(temperature=0.0), "sampled": dict(temperature=0.8, seed=1)}


def _generator(model, mode: str):
    """A timer of up to N generated tokens through Model.stream (what `bitnet run` calls): (tokens, seconds)
    of its decode steps, by the Completion's own timings."""
    def timer(session, tokens: list[int]) -> tuple[int, float]:
        session.reset()
        prompt, n = tokens[:GENERATE_PROMPT_TOKENS], len(tokens) - GENERATE_PROMPT_TOKENS
        out = model.stream(prompt, max_tokens=n, session=session, **GENERATE_MODES[mode]).complete()
        return out.timings.decode_tokens, out.timings.decode_s
    return timer


def _counted(timer):
    def run(session, tokens: list[int]) -> tuple[int, float]:
        return len(tokens), timer(session, tokens)
    return run


def run_bench(model, n_prompt: list[int], n_gen: list[int], threads: list[int], repetitions: int,
              warmup: bool = True, seed: int = 0, log=None) -> list[BenchResult]:
    import numpy as np

    rng = np.random.default_rng(seed)
    session = model.new_session()
    # (name, n_prompt, n_gen, random tokens it takes, timer)
    tests = [(f"pp{n}", n, 0, n, _counted(_time_prompt)) for n in n_prompt if n > 0]
    for n in (n for n in n_gen if n > 0):
        tests.append((f"tg{n}", 0, n, n, _counted(_time_generation)))
        # a prompt, then up to n decode steps (fewer when an end-of-generation token comes)
        tests += [(f"tg{n}-{mode}", 0, n, n + GENERATE_PROMPT_TOKENS, _generator(model, mode))
                  for mode in GENERATE_MODES]
    results = []
    for nt in threads:
        model.n_threads = nt   # read by every forward call; the weights stay mapped once
        for name, np_, ng, n_tokens, timer in tests:
            tokens = rng.integers(0, model.n_vocab, size=n_tokens).tolist()
            if log:
                log(f"{name}, {nt} thread(s)")
            if warmup:
                timer(session, tokens)
            result = BenchResult(name, np_, ng, nt)
            for _ in range(repetitions):
                n, seconds = timer(session, tokens)
                result.samples_n.append(n)
                result.samples_s.append(seconds)
                result.samples_ts.append(n / seconds if seconds > 0 else 0.0)
            results.append(result)
    return results


def model_row(model) -> dict:
    n_params = sum(info.n_elements for info in model.reader.tensors.values())
    return {"model": model.path.name, "arch": model.arch, "size_bytes": model.path.stat().st_size,
            "n_params": int(n_params)}


def format_table(model, results: list[BenchResult], backend: str) -> str:
    info = model_row(model)
    header = ["model", "size", "params", "backend", "threads", "test", "t/s"]
    rows = [[f"{info['model']} ({info['arch']})", _common.human_bytes(info["size_bytes"]),
             _common.human_count(info["n_params"]), backend, str(r.n_threads), r.test,
             f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    right = {2, 4, 6}   # numbers are right-aligned, as in llama-bench

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def bench(args: argparse.Namespace) -> int:
    threads = thread_counts(args.threads)
    if not any(n > 0 for n in args.n_prompt + args.n_gen):
        raise CLIError("nothing to measure: every -p and -n size is 0")
    path = _common.model_path(args.model)
    sha256 = _common.sha256_file(path, quiet=args.quiet) if args.receipt else None
    n_ctx = max(2, *args.n_prompt, *(n + GENERATE_PROMPT_TOKENS + 1 for n in args.n_gen))
    args.threads, args.ctx_size, args.tokenizer = max(threads), n_ctx, None
    model = _common.load_model(args, quiet=args.quiet)
    import bitnet

    model.reset_ran()
    log = None if args.quiet or args.json else (lambda msg: print(f"bitnet bench: {msg}", file=sys.stderr))
    results = run_bench(model, args.n_prompt, args.n_gen, threads, args.repetitions, warmup=not args.no_warmup,
                        seed=args.seed, log=log)
    ran = model.ran_kernels()
    head = ", q8_0 head" if model.lm_head != "exact" else ""
    backend = (f"CUDA ({model.device_name}{head})" if model.device == "cuda" else
               f"CPU ({bitnet.cpu_info().get('variant', '?')}{head})")
    if args.json:
        info = model_row(model)
        _common.write_json([{**info, "backend": backend, **asdict(r), "avg_ts": r.avg_ts,
                             "stddev_ts": r.stddev_ts} for r in results])
    else:
        print(format_table(model, results, backend))
    if args.receipt:
        from bitnet.receipts import make_receipt, write_receipt

        pp = [r for r in results if r.n_prompt]
        tg = [r for r in results if r.n_gen]
        write_receipt(args.receipt, make_receipt(
            command="bench", model=model, sha256=sha256, kernels=ran, threads=max(threads),
            tokens_in=sum(sum(r.samples_n) for r in pp),
            tokens_out=sum(sum(r.samples_n) for r in tg),
            prefill_tokens=sum(sum(r.samples_n) for r in pp),
            prefill_s=sum(sum(r.samples_s) for r in pp),
            decode_tokens=sum(sum(r.samples_n) for r in tg),
            decode_s=sum(sum(r.samples_s) for r in tg),
            extra={"bench": [{"test": r.test, "threads": r.n_threads, "avg_ts": r.avg_ts,
                              "stddev_ts": r.stddev_ts, "samples_ts": r.samples_ts} for r in results]}))
    return 0
