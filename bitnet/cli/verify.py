"""`bitnet verify-receipt PATH [--model M]`: check a receipt written by `run`/`bench --receipt`."""
from __future__ import annotations

import argparse
from pathlib import Path

from bitnet.cli import _common
from bitnet.cli._common import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify-receipt", help="check a receipt written by run/bench --receipt",
        description="Check a receipt: its schema; that 'kernels' is non-empty, names real kernel ids, fits the "
                    "model's weight types and the recorded CPU features; that throughput agrees with the recorded "
                    "timings and is physically plausible; and, with --model, that the model file's SHA-256 "
                    "matches. Exit status 0 when it passes, 1 with the reasons when it does not.")
    p.add_argument("receipt", type=Path, metavar="PATH", help="the receipt (JSON)")
    p.add_argument("-m", "--model", type=Path, default=None, metavar="M.gguf",
                   help="also check that this model file is the one the receipt names (SHA-256)")
    p.add_argument("--json", action="store_true", help="print {ok, problems} as JSON")
    _common.add_debug(p)
    p.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    from bitnet.receipts import load_receipt, verify_receipt

    if not args.receipt.is_file():
        raise FileNotFoundError(f"receipt not found: {args.receipt}")
    if args.model is not None and not args.model.is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    receipt = load_receipt(args.receipt)
    problems = verify_receipt(receipt, model_path=args.model)
    if args.json:
        _common.write_json({"ok": not problems, "receipt": str(args.receipt), "problems": problems})
    elif not problems:
        model = receipt["model"]
        checked = " (model hash matches)" if args.model is not None else ""
        print(f"receipt OK: {receipt['command']} of {model['file']} on {receipt['threads']} thread(s), "
              f"kernels {', '.join(receipt['kernels'])}{checked}")
    else:
        for problem in problems:
            print(f"- {problem}")
    if problems:
        raise CLIError(f"receipt {args.receipt} failed verification ({len(problems)} problem(s))")
    return 0
