"""The `bitnet` command: run, chat, bench, inspect, perplexity, serve, convert, download, verify-receipt.

Each subcommand lives in its own module with `register(subparsers)`, which declares its arguments and sets
`func(args) -> int`. `main` turns every expected failure into one line on stderr and a non-zero exit status
(1: the operation failed, 2: bad usage, 130: interrupted); `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from bitnet._version import __version__

INTERFACE_VERSION = "1.0.0"   # the CLI's own contract (flags, output formats, exit codes); semver
PROG = "bitnet"
log = logging.getLogger("bitnet.cli")


def build_parser() -> argparse.ArgumentParser:
    from bitnet.cli import _common, bench, chat, convert, download, inspect_model, perplexity, run, serve, verify

    parser = _common.Parser(
        prog=PROG, description="Run BitNet b1.58 ternary language models on the CPU.",
        epilog=f"'{PROG} COMMAND --help' describes each command. Exit status: 0 success, 1 failure, "
               "2 bad usage, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}",
                        help="print the library version and exit")
    parser.add_argument("--interface-version", action="version", version=INTERFACE_VERSION,
                        help="print the version of this command-line interface's contract and exit")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_common.Parser)
    sub.required = True
    for module in (run, chat, bench, inspect_model, perplexity, serve, convert, download, verify):
        module.register(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())   # errors are one line, whatever the message holds


def _one_line_warnings(category: type[Warning]) -> None:
    """Show the engine's fallback warnings as `bitnet: warning: ...` lines (Python's default shows the source
    line that raised them, which says nothing to a user of the command)."""
    default = warnings.showwarning

    def show(message, cat, filename, lineno, file=None, line=None):
        if issubclass(cat, category):
            print(f"{PROG}: warning: {_one_line(message if isinstance(message, Warning) else Warning(message))}",
                  file=sys.stderr)
        else:
            default(message, cat, filename, lineno, file, line)
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bitnet` console script and of `python -m bitnet`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format="%(name)s: %(levelname)s: %(message)s")
    from bitnet.errors import BitNetError, FallbackWarning

    if not debug:
        _one_line_warnings(FallbackWarning)

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`bitnet run ... | head`): not worth a message. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (BitNetError, OSError, ValueError, RuntimeError, LookupError, ImportError, MemoryError) as exc:
        if debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:   # a bug: still one line, with the way to see more
        if debug:
            raise
        print(f"{PROG} {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


__all__ = ["INTERFACE_VERSION", "build_parser", "main"]
