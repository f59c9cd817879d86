"""The `bitnet convert` subcommand, for the CLI module to mount: `add_arguments(parser)` then `run(args)`."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bitnet.convert.architectures import ARCH_ALIASES
from bitnet.convert.converter import EMBEDDING_TYPES, WEIGHT_TYPES, convert, default_output_path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `HF_DIR -o OUT.gguf --type --embedding-type --force ...` on `parser`."""
    parser.add_argument("hf_dir", metavar="HF_DIR", type=Path,
                        help="Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)")
    parser.add_argument("-o", "--outfile", type=Path, default=None,
                        help="output GGUF file (default: HF_DIR/ggml-model-<type>.gguf)")
    parser.add_argument("--type", dest="weight_type", choices=sorted(WEIGHT_TYPES), default="i2_s",
                        help="encoding of the ternary weights (default: i2_s)")
    parser.add_argument("--embedding-type", choices=sorted(EMBEDDING_TYPES), default="f16",
                        help="encoding of the token embedding and untied LM head (default: f16)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    aliases = sorted({a for names in ARCH_ALIASES.values() for a in names})
    parser.add_argument("--arch-name", choices=aliases, default=None,
                        help="write another spelling of the architecture name (bitnet-25: the reference "
                             "engine's name for bitnet-b1.58)")
    parser.add_argument("--name", dest="model_name", default=None,
                        help="general.name to record (default: the checkpoint's name)")
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Run a conversion from parsed arguments; raises ConversionError on bad input, returns 0 on success."""
    out = args.outfile if args.outfile is not None else default_output_path(args.hf_dir, args.weight_type)
    path = convert(args.hf_dir, out, weight_type=args.weight_type, embedding_type=args.embedding_type,
                   force=args.force, progress=False if args.no_progress else None, arch_name=args.arch_name,
                   model_name=args.model_name)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
