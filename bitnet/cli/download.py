"""`bitnet download REPO_ID [--file NAME] [--dir DIR]`: fetch a GGUF (and tokenizer files) from the hub."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bitnet.cli import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download", help="fetch a GGUF model from the Hugging Face Hub",
        description="Fetch a GGUF file (and the tokenizer.json / tokenizer_config.json next to it) from the "
                    "Hugging Face Hub with huggingface_hub: its cache is used and reused, and HF_ENDPOINT (a "
                    "mirror), HF_TOKEN (private or gated repositories), HF_HOME / HF_HUB_CACHE and "
                    "HF_HUB_OFFLINE=1 (cache only) apply. Prints the path of the GGUF file on stdout, so "
                    "'bitnet run --model \"$(bitnet download REPO)\"' works.",
        epilog="Without --file, the repository's only .gguf file is chosen (or its only i2_s one).")
    p.add_argument("repo_id", metavar="REPO_ID", help="repository on the hub, e.g. microsoft/bitnet-b1.58-2B-4T-gguf")
    p.add_argument("--file", dest="filename", default=None, metavar="NAME",
                   help="the GGUF file to fetch (path inside the repository)")
    p.add_argument("--dir", dest="local_dir", type=Path, default=None, metavar="DIR",
                   help="put the files in DIR instead of the hub cache")
    p.add_argument("--revision", default=None, metavar="REV", help="branch, tag or commit (default: main)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="access token (default: $HF_TOKEN or the token saved by 'hf auth login')")
    p.add_argument("--no-tokenizer", action="store_true", help="fetch only the GGUF file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, print only the path")
    _common.add_debug(p)
    p.set_defaults(func=download)


def download(args: argparse.Namespace) -> int:
    from bitnet.download import download as fetch

    result = fetch(args.repo_id, args.filename, local_dir=args.local_dir, revision=args.revision,
                   token=args.token, tokenizer=not args.no_tokenizer,
                   progress=False if args.quiet else None)
    if not args.quiet:
        size = _common.human_bytes(os.path.getsize(result.model))
        print(f"bitnet download: {result.repo_id}/{result.filename} ({size})", file=sys.stderr)
        for extra in result.extras:
            print(f"bitnet download: tokenizer file {extra}", file=sys.stderr)
    print(result.model)
    return 0
