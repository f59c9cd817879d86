"""bitnet: an inference engine for BitNet b1.58 ternary language models.

    import bitnet
    model = bitnet.load()                       # the embedded default model, or bitnet.load("model.gguf")
    print(model.generate("Once upon a time", max_tokens=32, seed=1).text)
"""
import os as _os

# OpenMP team members spin between the ops of a forward pass and then sleep. libgomp's default spin (300000
# iterations, milliseconds) lets idle members burn a busy machine's cores while the working thread waits for a
# core; a short spin keeps consecutive ops fast and yields quickly. Must be set before libgomp loads.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from bitnet._version import __version__  # noqa: E402
from bitnet.engine import Completion, Model, Perplexity, Session, Timings, default_model_path, load
from bitnet.errors import (
    BitNetError,
    ContextOverflowError,
    ConversionError,
    GGUFError,
    KernelError,
    ModelError,
    TokenizerError,
)


def cpu_info() -> dict:
    """CPU features detected, kernel variants compiled and supported, and the variant in use."""
    from bitnet.kernels import cpu_info as _cpu_info

    return _cpu_info()


def load_tokenizer(path):
    """The tokenizer of a GGUF file (metadata only is enough) or of a tokenizer.json."""
    from bitnet.tokenizer import load_tokenizer as _load_tokenizer

    return _load_tokenizer(path)


__all__ = [
    "BitNetError", "Completion", "ContextOverflowError", "ConversionError", "GGUFError", "KernelError", "Model",
    "ModelError", "Perplexity", "Session", "Timings", "TokenizerError", "__version__", "cpu_info",
    "default_model_path", "load", "load_tokenizer",
]
