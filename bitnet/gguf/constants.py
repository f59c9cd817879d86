"""GGUF enums and tensor size rules, shared by the reader, the writer and the codecs (docs/formats.md §1-4)."""
from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from bitnet.errors import GGUFError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
ALIGNMENT_KEY = "general.alignment"


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


class GGMLType(IntEnum):
    """The tensor types this engine reads and writes (ggml ids)."""
    F32 = 0
    F16 = 1
    Q8_0 = 8
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    I2_S = 36


# Fixed-size metadata scalars: value type -> (little-endian numpy dtype string, byte size).
SCALAR_FORMATS: dict[GGUFValueType, tuple[str, int]] = {
    GGUFValueType.UINT8: ("<u1", 1),
    GGUFValueType.INT8: ("<i1", 1),
    GGUFValueType.UINT16: ("<u2", 2),
    GGUFValueType.INT16: ("<i2", 2),
    GGUFValueType.UINT32: ("<u4", 4),
    GGUFValueType.INT32: ("<i4", 4),
    GGUFValueType.FLOAT32: ("<f4", 4),
    GGUFValueType.BOOL: ("<u1", 1),
    GGUFValueType.UINT64: ("<u8", 8),
    GGUFValueType.INT64: ("<i8", 8),
    GGUFValueType.FLOAT64: ("<f8", 8),
}

# (elements per block, bytes per block) for the block-structured types. I2_S is per tensor, not per block.
BLOCK_LAYOUT: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q8_0: (32, 34),
    GGMLType.BF16: (1, 2),
    GGMLType.TQ1_0: (256, 54),
    GGMLType.TQ2_0: (256, 66),
}

I2S_BLOCK = 128          # elements per packing block (x86 layout); the element count must be a multiple
I2S_TAIL_BYTES = 32      # float32 scale + 28 unspecified bytes after the packed codes
I2S_SCALE_BYTES = 4      # the float32 scale: all of the tail that a reader of the codes needs


def i2s_code_bytes(n_elements: int) -> int:
    """Bytes of the packed 2-bit codes of an I2_S tensor (4 per byte); its float32 scale follows them."""
    return n_elements // 4

# Type ids that exist elsewhere but that this engine does not read; named in the error message.
KNOWN_UNSUPPORTED: dict[int, str] = {
    2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K",
    14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
    21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    38: "TL1 (bitnet.cpp lookup-table format, tied to one build's tile sizes)",
    39: "TL2 in bitnet.cpp / MXFP4 in mainline ggml",
    40: "NVFP4", 41: "Q1_0",
}


def ggml_type_from_id(type_id: int, tensor: str) -> GGMLType:
    """The GGMLType for a raw id, or a GGUFError naming the tensor and the id."""
    try:
        return GGMLType(type_id)
    except ValueError:
        pass
    known = KNOWN_UNSUPPORTED.get(type_id)
    what = f"{known}, not supported" if known else "unknown ggml type"
    supported = ", ".join(f"{t.name}={t.value}" for t in GGMLType)
    raise GGUFError(f"tensor {tensor!r}: ggml type id {type_id} ({what}); supported types: {supported}")


def tensor_nbytes_dims(ggml_type: GGMLType, dims: Sequence[int], tensor: str = "<tensor>") -> int:
    """Byte size of a tensor given GGUF dims (ne0 first), validating the shape rules of its type."""
    n = 1
    for d in dims:
        n *= int(d)
    if n <= 0:
        raise GGUFError(f"tensor {tensor!r}: dims {tuple(dims)} have no elements")
    ne0 = int(dims[0])
    if ggml_type == GGMLType.I2_S:
        if n % I2S_BLOCK:
            raise GGUFError(f"tensor {tensor!r}: I2_S needs an element count that is a multiple of "
                            f"{I2S_BLOCK}, dims {tuple(dims)} give {n}")
        return i2s_code_bytes(n) + I2S_TAIL_BYTES
    block, block_bytes = BLOCK_LAYOUT[GGMLType(ggml_type)]
    if ne0 % block:
        raise GGUFError(f"tensor {tensor!r}: {GGMLType(ggml_type).name} rows (ne0) must be a multiple of "
                        f"{block}, got ne0={ne0}")
    return n // block * block_bytes
