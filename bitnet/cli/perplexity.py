"""`bitnet perplexity FILE.gguf --text held_out.txt [--ctx N]`: perplexity as llama.cpp's tool computes it."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bitnet.cli import _common
from bitnet.cli._common import CLIError

DEFAULT_CTX = 512


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perplexity", help="measure a model's perplexity on a text file",
        description="Perplexity as llama.cpp's perplexity tool computes it: the whole text is tokenized and cut "
                    "into non-overlapping chunks of --ctx tokens; each chunk is evaluated from a fresh context "
                    "and only the second half of its positions is scored. Prints the value and its ± estimate.")
    p.add_argument("model_file", nargs="?", type=Path, default=None, metavar="FILE.gguf",
                   help="GGUF model file (default: --model, else the embedded model)")
    p.add_argument("--text", "-f", "--file", dest="text", type=Path, required=True, metavar="PATH",
                   help="UTF-8 text file to score ('-' reads stdin)")
    p.add_argument("--ctx", "--ctx-size", "-c", dest="ctx", type=_common.int_at_least(4), default=DEFAULT_CTX,
                   metavar="N", help=f"tokens per chunk (default: {DEFAULT_CTX})")
    _common.add_model_options(p, ctx=False)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no timing line on stderr")
    _common.add_debug(p)
    p.set_defaults(func=perplexity)


def read_text(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise CLIError(f"text file {path} is not UTF-8 ({e.reason} at byte {e.start})") from None


def perplexity(args: argparse.Namespace) -> int:
    if args.model_file is not None and args.model is not None:
        raise CLIError("give the model either as FILE.gguf or with --model, not both")
    args.model = args.model_file if args.model_file is not None else args.model
    text = read_text(args.text)
    model = _common.load_model(args, n_ctx=args.ctx, quiet=args.quiet)
    t0 = time.perf_counter()
    result = model.perplexity(text, n_ctx=args.ctx)
    seconds = time.perf_counter() - t0
    if args.json:
        _common.write_json({"model": model.path.name, "text": str(args.text), "perplexity": result.value,
                            "error": result.error, "n_chunks": result.n_chunks, "n_ctx": result.n_ctx,
                            "n_scored": result.n_scored, "seconds": seconds})
    else:
        print(f"perplexity: {result.value:.4f} ± {result.error:.4f} ({result.n_chunks} chunks of {result.n_ctx} "
              f"tokens, {result.n_scored} tokens scored)")
    if not args.quiet:
        evaluated = result.n_chunks * result.n_ctx
        print(f"evaluated {evaluated} tokens in {seconds:.2f} s ({evaluated / seconds:.1f} tok/s, "
              f"{model.n_threads} thread(s))", file=sys.stderr)
    return 0
