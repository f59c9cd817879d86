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

import importlib as _importlib  # noqa: E402

from bitnet._version import __version__  # noqa: E402
from bitnet.errors import (  # noqa: E402
    BitNetError,
    ContextOverflowError,
    ConversionError,
    GGUFError,
    KernelError,
    ModelError,
    TokenizerError,
)
from bitnet.paths import default_model_path  # noqa: E402

# The engine (numpy, tokenizers) is imported on first use of one of its names: `bitnet.gguf`, the compiled core
# and `bitnet.web` then import without numpy, which the browser build (Pyodide) does not have.
_ENGINE_NAMES = ("Completion", "Model", "Perplexity", "SamplingParams", "Score", "Session", "Timings", "load")
# Other names of engine classes: BitNetModel is the Model class under the name the product description uses.
_ALIASES = {"BitNetModel": "Model"}


def __getattr__(name: str):
    if name in _ENGINE_NAMES or name in _ALIASES:
        value = getattr(_importlib.import_module("bitnet.engine"), _ALIASES.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bitnet' has no attribute {name!r}")




def cpu_info() -> dict:
    """CPU features detected, kernel variants compiled and supported, and the variant in use."""
    from bitnet.backends.cpu.kernels import cpu_info as _cpu_info

    return _cpu_info()


def load_tokenizer(path):
    """The tokenizer of a GGUF file (metadata only is enough) or of a tokenizer.json."""
    from bitnet.tokenizer import load_tokenizer as _load_tokenizer

    return _load_tokenizer(path)


__all__ = [
    "BitNetError", "BitNetModel", "Completion", "ContextOverflowError", "ConversionError", "GGUFError", "KernelError",
    "Model",
    "ModelError", "Perplexity", "SamplingParams", "Score", "Session", "Timings", "TokenizerError", "__version__",
    "cpu_info", "default_model_path", "load", "load_tokenizer",
]
