"""argparse value types shared by the command line and the server: each rejects a bad value with a message
naming what was expected (argparse turns it into a one-line usage error); and the device options both take."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "integer"   # argparse names the type in some messages
    return parse


def add_lm_head_option(parser) -> None:
    from bitnet.backends import LM_HEADS

    parser.add_argument("--lm-head", choices=LM_HEADS, default="exact",
                        help="LM head: exact (the file's weights in float; default) or q8_0 (re-encoded as Q8_0 "
                             "at load and computed with int8 dot products: faster decoding, slightly different "
                             "logits)")


def add_cache_type_option(parser) -> None:
    from bitnet.backends import CACHE_TYPES

    parser.add_argument("--cache-type", choices=tuple(CACHE_TYPES), default="f16",
                        help="KV cache element type: f16 (exact; default) or q8_0 (8-bit blocks: about half the "
                             "cache memory and the bytes a long context reads per token, slightly different "
                             "logits; CPU only)")


def add_device_option(parser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where the model runs: cpu, or cuda (an NVIDIA GPU, with the .[cuda] extra); "
                             "default: BITNET_DEVICE, else cpu")
    parser.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", dest="n_gpu_layers", type=int_at_least(0),
                        default=None, metavar="N",
                        help="llama.cpp's spelling: N > 0 puts the model on the GPU (--device cuda; the whole "
                             "model, there is no partial offload), 0 keeps it on the CPU")


def device_from_args(args: argparse.Namespace) -> str | None:
    """--device, else what -ngl says, else None (bitnet.load then reads BITNET_DEVICE)."""
    device, layers = getattr(args, "device", None), getattr(args, "n_gpu_layers", None)
    implied = None if layers is None else "cuda" if layers > 0 else "cpu"
    if device is not None and implied is not None and device != implied:
        raise ValueError(f"--device {device} contradicts --n-gpu-layers {layers}")
    return device or implied
