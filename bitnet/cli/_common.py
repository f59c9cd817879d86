"""Pieces shared by the subcommands: argument types, model/sampling option groups, model loading, output helpers."""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bitnet.argtypes import (
    add_cache_type_option,
    add_device_option,
    add_lm_head_option,
    device_from_args,
    int_at_least,
)
from bitnet.errors import BitNetError
from bitnet.generation import DEFAULTS, SamplingParams
from bitnet.paths import model_path  # noqa: F401  (the subcommands take the model file from here)
from bitnet.tokenizer_spec import PRE_TOKENIZERS

HASH_CHUNK = 16 << 20
PREFETCH_MIN_BYTES = 256 << 20   # below this a cold load is too quick to be worth a progress bar


class CLIError(BitNetError):
    """A problem with what the user asked for that argparse cannot see (conflicting options, missing input)."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (usage errors included), as every other error of the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- argument types: each rejects a bad value with a message naming what was expected --------------------------
def float_in(low: float, high: float | None = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def int_list(low: int) -> Callable[[str], list[int]]:
    """A comma-separated list of integers ('1,2,4'), as llama-bench takes them."""
    one = int_at_least(low)

    def parse(text: str) -> list[int]:
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {text!r}")
        return [one(t) for t in items]

    parse.__name__ = "integer list"
    return parse


def seed_value(text: str) -> int:
    from bitnet.settings import check_seed

    try:
        return check_seed(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- option groups ---------------------------------------------------------------------------------------------
def add_debug(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default must not overwrite `bitnet --debug run ...` given before the subcommand.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks and debug logging")


def add_model_options(parser: argparse.ArgumentParser, *, ctx: bool = True, tokenizer: bool = True,
                      threads: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("-m", "--model", type=Path, default=None, metavar="M.gguf",
                       help="GGUF model file (default: $BITNET_GGUF, else the embedded model shipped with the "
                            "package)")
    if threads:
        group.add_argument("-t", "--threads", type=int_at_least(1), default=None, metavar="N",
                           help="CPU threads (default: $OMP_NUM_THREADS, else all available; 1 when "
                                "BITNET_DETERMINISTIC=1)")
    if ctx:
        group.add_argument("-c", "--ctx-size", type=int_at_least(2), default=None, metavar="N",
                           help="context size in tokens (default: the model's, at most 4096)")
    if tokenizer:
        group.add_argument("--tokenizer", type=Path, default=None, metavar="tokenizer.json",
                           help="use this tokenizer instead of the one stored in the GGUF file (without one: "
                                "the file's, else a tokenizer.json beside it or in the folder above)")
        group.add_argument("--tokenizer-pre", choices=sorted(PRE_TOKENIZERS), default=None, metavar="NAME",
                           help="byte-level pre-tokenizer instead of the file's tokenizer.ggml.pre (e.g. default: "
                                "llama.cpp's regexes for a file without the key; without the key, a LLaMA-3 "
                                "vocabulary gets llama-bpe)")
    add_lm_head_option(group)
    add_cache_type_option(group)
    add_device_option(group)


def add_sampling_options(parser: argparse.ArgumentParser, *, default_max_tokens: int) -> None:
    d = DEFAULTS
    group = parser.add_argument_group("sampling")
    group.add_argument("-n", "--max-tokens", "--max-new-tokens", "--n-predict", dest="max_tokens",
                       type=int_at_least(0), default=default_max_tokens, metavar="N",
                       help=f"maximum number of tokens to generate (default: {default_max_tokens})")
    group.add_argument("--temperature", "--temp", type=float_in(0.0), default=d.temperature, metavar="T",
                       help=f"sampling temperature; 0 is greedy (default: {d.temperature})")
    group.add_argument("--top-k", type=int_at_least(0), default=d.top_k, metavar="K",
                       help=f"keep the K most likely tokens; 0 keeps all (default: {d.top_k})")
    group.add_argument("--top-p", type=float_in(0.0, 1.0), default=d.top_p, metavar="P",
                       help=f"nucleus sampling threshold; 1.0 disables (default: {d.top_p})")
    group.add_argument("--min-p", type=float_in(0.0, 1.0), default=d.min_p, metavar="P",
                       help=f"drop tokens less likely than P times the top one; 0 disables (default: {d.min_p})")
    group.add_argument("--repeat-penalty", type=float_in(0.0), default=d.repeat_penalty, metavar="R",
                       help=f"penalty for repeating earlier tokens; 1.0 disables (default: {d.repeat_penalty})")
    group.add_argument("--seed", type=seed_value, default=None, metavar="S",
                       help="random seed, for repeatable output (default: $BITNET_SEED, else 0 when "
                            "BITNET_DETERMINISTIC=1, else random)")
    group.add_argument("--greedy", action="store_true",
                       help="always pick the most likely token (same as --temperature 0)")
    group.add_argument("--stop", "--stop-sequence", "--stop_sequences", dest="stop", action="append",
                       default=[], metavar="TEXT",
                       help="stop when TEXT is generated (repeatable); the stop text is not printed")


# -- environment (read in bitnet.settings) ---------------------------------------------------------------------
def resolve_seed(seed: int | None) -> int | None:
    """--seed, else $BITNET_SEED, else 0 in deterministic mode (so repeated runs agree), else None (random)."""
    from bitnet import settings

    try:
        return settings.seed(seed)
    except ValueError as e:
        raise CLIError(str(e)) from None


def sampling_params(args: argparse.Namespace) -> SamplingParams:
    """The command line's sampling options, as the engine takes them (built once per command)."""
    return SamplingParams.make(max_tokens=args.max_tokens, temperature=0.0 if args.greedy else args.temperature,
                               top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                               repeat_penalty=args.repeat_penalty, seed=resolve_seed(args.seed),
                               stop=list(args.stop))


# -- model files -----------------------------------------------------------------------------------------------


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _NoBar:
    """Stands in for a tqdm bar where none is shown."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass


def progress(total: int, desc: str, *, quiet: bool = False, unit: str = "B"):
    """A tqdm bar on stderr when it is a terminal; a no-op bar otherwise (logs and pipes stay clean), or when
    tqdm (an optional dependency) is not installed."""
    if quiet or not stderr_is_tty():
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024 if unit == "B" else 1000,
                leave=False, file=sys.stderr)


def sha256_file(path: Path, *, quiet: bool = False) -> str:
    """SHA-256 of a file, with a progress bar for big files on a terminal. Reading it also warms the page
    cache, so the model load that follows does not stall on a cold disk."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, progress(size, f"hashing {path.name}", quiet=quiet or size < HASH_CHUNK) as bar:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def prefetch(path: Path, *, quiet: bool = False) -> None:
    """Read a large model file once with a progress bar (terminal only) before it is memory-mapped: a cold load of
    a multi-GB file otherwise looks like a hang. Skipped for small files and when nobody is watching."""
    size = path.stat().st_size
    if quiet or size < PREFETCH_MIN_BYTES or not stderr_is_tty():
        return
    with open(path, "rb", buffering=0) as f, progress(size, f"loading {path.name}") as bar:
        buf = bytearray(HASH_CHUNK)
        while n := f.readinto(buf):
            bar.update(n)


def load_model(args: argparse.Namespace, *, n_ctx: int | None = None, quiet: bool = False):
    """Load the model named by the common options (see add_model_options)."""
    import bitnet

    path = model_path(args.model)
    tokenizer = getattr(args, "tokenizer", None)
    if tokenizer is not None and not tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {tokenizer}")
    prefetch(path, quiet=quiet)
    return bitnet.load(path, n_threads=getattr(args, "threads", None),
                       n_ctx=n_ctx if n_ctx is not None else getattr(args, "ctx_size", None),
                       tokenizer_path=tokenizer, lm_head=getattr(args, "lm_head", "exact"),
                       cache_type=getattr(args, "cache_type", "f16"),
                       device=device_from_args(args), tokenizer_pre=getattr(args, "tokenizer_pre", None))


def read_prompt(prompt: str | None, prompt_file: Path | None, stdin: IO[str] | None = None) -> str:
    """The prompt from --prompt, --file, or piped stdin ('-' for either means stdin)."""
    stdin = stdin or sys.stdin
    if prompt is not None and prompt_file is not None:
        raise CLIError("give either --prompt or --file, not both")
    if prompt == "-" or (prompt_file is not None and str(prompt_file) == "-"):
        return stdin.read()
    if prompt_file is not None:
        try:
            return prompt_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"prompt file not found: {prompt_file}") from None
        except UnicodeDecodeError as e:
            raise CLIError(f"prompt file {prompt_file} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if prompt is not None:
        return prompt
    if stdin.isatty():
        raise CLIError("no prompt: give --prompt TEXT, --file PATH, or pipe text on stdin")
    return stdin.read()


def write_stream(stream, out: IO[str]) -> bool:
    """Write a generation's pieces as they come; Ctrl-C stops the generation (not the program).
    Returns True when it was interrupted."""
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stream.close()
        return True
    return False


def write_json(data: Any, out: IO[str] | None = None) -> None:
    import json

    out = out or sys.stdout
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"
