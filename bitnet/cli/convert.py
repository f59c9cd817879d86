"""`bitnet convert`: mounts the converter's own command (`bitnet.convert.add_arguments` / `run`)."""
from __future__ import annotations

import argparse

from bitnet.cli import _common


def register(sub: argparse._SubParsersAction) -> None:
    from bitnet.convert import add_arguments, run

    p = sub.add_parser(
        "convert", help="convert a Hugging Face BitNet checkpoint to GGUF",
        description="Convert a Hugging Face checkpoint (BitNetForCausalLM, 1bitLLM BitnetForCausalLM, ternary "
                    "LlamaForCausalLM; bf16/fp32 master weights or packed ternary) to a GGUF file.")
    add_arguments(p)
    _common.add_debug(p)
    p.set_defaults(func=run)
