"""The GGUF container: a validating memory-mapped reader, a streaming writer and the tensor codecs.

The codecs and the writer use numpy and are imported on first use, so that the reader alone also runs where
numpy does not (the browser build).
"""
import importlib

from bitnet.gguf.constants import GGMLType, GGUFValueType
from bitnet.gguf.reader import GGUFReader, TensorInfo

__all__ = ["GGMLType", "GGUFReader", "GGUFValueType", "GGUFWriter", "TensorInfo", "quants"]


def __getattr__(name: str):
    if name == "quants":
        return importlib.import_module("bitnet.gguf.quants")
    if name == "GGUFWriter":
        return importlib.import_module("bitnet.gguf.writer").GGUFWriter
    raise AttributeError(f"module 'bitnet.gguf' has no attribute {name!r}")
