"""Hugging Face checkpoints (BitNet b1.58, 1bitLLM, ternary LLaMA) -> GGUF.

    from bitnet.convert import convert
    convert("path/to/hf_dir", "model.gguf", weight_type="i2_s", embedding_type="f16")

The CLI mounts `add_arguments` / `run` as `bitnet convert`.
"""
from bitnet.convert.cli import add_arguments, run
from bitnet.convert.converter import EMBEDDING_TYPES, WEIGHT_TYPES, convert, default_output_path
from bitnet.errors import ConversionError

__all__ = ["EMBEDDING_TYPES", "WEIGHT_TYPES", "ConversionError", "add_arguments", "convert",
           "default_output_path", "run"]
