"""`bitnet run`: generate from one prompt, streaming text to stdout; timings to stderr; optional receipt."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitnet.cli import _common
from bitnet.cli._common import CLIError

TEMPLATES = ("auto", "raw", "instruct", "llama3-chat", "bitnet")
DEFAULT_MAX_TOKENS = 128


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="generate text from a prompt, streaming it to stdout",
        description="Generate text from a prompt and stream it to stdout as it is produced. Timings (prompt "
                    "and generation tokens/s) go to stderr at the end unless -q.",
        epilog="Prompt templates: 'auto' uses the model's chat template when it has one (a template "
               "containing BITNET -> the built-in BitNet format; a LLaMA-3 template -> the LLaMA-3 format; any "
               "other -> rendered with sandboxed Jinja) and the raw prompt when it has none; 'raw' always passes "
               "the prompt unchanged; 'instruct' is a plain Question/Answer layout for base models. "
               "Deterministic mode: --seed or BITNET_SEED fixes sampling; BITNET_DETERMINISTIC=1 also forces "
               "one thread (and seed 0 unless one is given), so repeated runs print identical text.")
    group = p.add_argument_group("prompt")
    group.add_argument("-p", "--prompt", default=None, metavar="TEXT",
                       help="the prompt ('-' reads stdin; without --prompt or --file, piped stdin is read)")
    group.add_argument("-f", "--file", dest="prompt_file", type=Path, default=None, metavar="PATH",
                       help="read the prompt from a UTF-8 text file")
    group.add_argument("--prompt-template", choices=TEMPLATES, default="auto",
                       help="how to wrap the prompt (default: auto; see below)")
    group.add_argument("--system-prompt", default=None, metavar="TEXT",
                       help="system message, for chat formats (not with the raw template)")
    _common.add_model_options(p)
    _common.add_sampling_options(p, default_max_tokens=DEFAULT_MAX_TOKENS)
    out = p.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="print only the generated text (no timings)")
    out.add_argument("--receipt", type=Path, default=None, metavar="PATH",
                     help="write a JSON receipt of this run (model hash, kernels that ran, throughput)")
    _common.add_debug(p)
    p.set_defaults(func=run)


def resolve_template(mode: str, chat_template: str | None) -> str:
    """The format `run` uses: 'auto' is the model's template rule, and raw when the model has no template."""
    if mode != "auto":
        return mode
    from bitnet.chat import detect_format

    return detect_format(chat_template)


def start_stream(model, prompt: str, mode: str, system_prompt: str | None, params):
    """Start the generation for `prompt` under template `mode` (resolved or 'auto')."""
    fmt = resolve_template(mode, model.chat_template)
    if fmt == "raw":
        if system_prompt is not None:
            _refuse_system_prompt("this model has no chat template" if mode == "auto" else "--prompt-template is raw")
        return model.stream(prompt, params=params)
    # 'auto' stays 'auto' so the engine applies the same template rules as Model.chat.
    return model.chat_stream([{"role": "user", "content": prompt}], mode=mode, system_prompt=system_prompt,
                             params=params)


def _refuse_system_prompt(why: str) -> None:
    raise CLIError(f"--system-prompt needs a chat format, but {why}: "
                   "choose --prompt-template instruct, bitnet or llama3-chat")


def format_timings(stream) -> str:
    t = stream.timings
    parts = [f"prompt: {stream.prompt_tokens} tokens, {t.prefill_tokens_per_s:.1f} tok/s",
             f"generation: {len(stream.tokens)} tokens, {t.decode_tokens_per_s:.1f} tok/s"]
    if stream.finish_reason:
        parts.append(f"finish: {stream.finish_reason}")
    if t.load_s is not None:
        parts.append(f"load: {t.load_s:.2f} s")
    return " | ".join(parts)


def run(args: argparse.Namespace) -> int:
    prompt = _common.read_prompt(args.prompt, args.prompt_file)
    if not prompt:
        raise CLIError("the prompt is empty")
    params = _common.sampling_params(args)
    if args.prompt_template == "raw" and args.system_prompt is not None:
        _refuse_system_prompt("--prompt-template is raw")   # before the (possibly slow) load
    path = _common.model_path(args.model)
    sha256 = _common.sha256_file(path, quiet=args.quiet) if args.receipt else None
    model = _common.load_model(args, quiet=args.quiet)
    model.reset_ran()
    stream = start_stream(model, prompt, args.prompt_template, args.system_prompt, params)
    out = sys.stdout
    interrupted = _common.write_stream(stream, out)
    ran = model.ran_kernels()
    if stream.text and not stream.text.endswith("\n"):
        out.write("\n")
    out.flush()
    if not args.quiet:
        print(format_timings(stream) + (" | interrupted" if interrupted else ""), file=sys.stderr)
    if args.receipt:
        from bitnet.receipts import make_receipt, write_receipt

        t = stream.timings
        write_receipt(args.receipt, make_receipt(
            command="run", model=model, sha256=sha256, kernels=ran, threads=model.n_threads,
            tokens_in=stream.prompt_tokens, tokens_out=len(stream.tokens), prefill_tokens=t.prefill_tokens,
            prefill_s=t.prefill_s, decode_tokens=t.decode_tokens, decode_s=t.decode_s,
            extra={"finish_reason": stream.finish_reason, "seed": params.seed}))
    return 130 if interrupted else 0
