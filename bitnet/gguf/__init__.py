"""The GGUF container: a validating memory-mapped reader, a streaming writer and the tensor codecs."""
from bitnet.gguf import quants
from bitnet.gguf.constants import GGMLType, GGUFValueType
from bitnet.gguf.reader import GGUFReader, TensorInfo
from bitnet.gguf.writer import GGUFWriter

__all__ = ["GGMLType", "GGUFReader", "GGUFValueType", "GGUFWriter", "TensorInfo", "quants"]
