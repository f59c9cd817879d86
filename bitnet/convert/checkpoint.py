"""Reading a Hugging Face checkpoint directory: config.json and (sharded) safetensors, lazily.

Tensors are read one at a time through `safetensors.safe_open(framework="numpy")`. numpy has no bfloat16,
so BF16 tensors are decoded from their raw bytes instead: a bf16 value is the upper half of a float32, so
widening is exact and needs no torch. The safetensors header (an 8-byte length and a JSON table of dtype,
shape and byte range per tensor) is the documented format; it is read once per shard to know dtypes and
shapes before any data is touched, which lets the converter validate everything before writing.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitnet.errors import ConversionError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"

# safetensors dtype name -> numpy dtype, for the dtypes numpy can read directly.
_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "U8": np.uint8, "I8": np.int8}
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit on the JSON header


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives and what it is, from a shard's header."""
    name: str
    dtype: str                 # safetensors dtype name: "BF16", "F32", "U8", ...
    shape: tuple[int, ...]
    shard: Path
    data_start: int            # absolute byte offset of the tensor's data in the shard
    nbytes: int


def load_json(path: Path, what: str) -> dict[str, Any]:
    """Parse a JSON object file, turning every failure into a ConversionError naming the file."""
    if not path.is_file():
        raise ConversionError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"cannot read {what} {path}: {e}") from None
    if not isinstance(value, dict):
        raise ConversionError(f"{what} {path} does not hold a JSON object")
    return value


def _read_header(shard: Path) -> dict[str, TensorEntry]:
    try:
        with open(shard, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ConversionError(f"{shard}: truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise ConversionError(f"{shard}: safetensors header claims {n} bytes, not a safetensors file")
            raw = f.read(n)
        size = shard.stat().st_size
    except OSError as e:
        raise ConversionError(f"cannot read {shard}: {e}") from None
    if len(raw) < n:
        raise ConversionError(f"{shard}: truncated safetensors header")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{shard}: bad safetensors header: {e}") from None
    entries: dict[str, TensorEntry] = {}
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ConversionError(f"{shard}: malformed header entry for tensor {name!r}") from None
        if not 0 <= begin <= end or base + end > size:
            raise ConversionError(f"{shard}: tensor {name!r} lies outside the file")
        entries[name] = TensorEntry(name, dtype, shape, shard, base + begin, end - begin)
    return entries


def _shard_files(hf_dir: Path) -> list[Path]:
    index_path = hf_dir / INDEX_FILE
    if index_path.is_file():
        index = load_json(index_path, "safetensors index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index_path}: no 'weight_map' in the safetensors index")
        names = sorted({str(v) for v in weight_map.values()})
        shards = [hf_dir / name for name in names]
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise ConversionError(f"safetensors shard(s) named in {index_path.name} not found: "
                                  + ", ".join(missing))
        return shards
    single = hf_dir / SINGLE_FILE
    if single.is_file():
        return [single]
    raise ConversionError(f"no weights in {hf_dir}: expected {SINGLE_FILE} or {INDEX_FILE} with its shards")


class Checkpoint:
    """A Hugging Face model directory: its config and a name -> TensorEntry table over all shards."""

    def __init__(self, hf_dir: str | Path) -> None:
        self.dir = Path(hf_dir)
        if not self.dir.is_dir():
            raise ConversionError(f"checkpoint directory not found: {self.dir}")
        self.config = load_json(self.dir / CONFIG_FILE, "model config")
        self.tensors: dict[str, TensorEntry] = {}
        for shard in _shard_files(self.dir):
            for name, entry in _read_header(shard).items():
                if name in self.tensors:
                    raise ConversionError(f"tensor {name!r} appears in both {self.tensors[name].shard.name} "
                                          f"and {shard.name}")
                self.tensors[name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def entry(self, name: str) -> TensorEntry:
        try:
            return self.tensors[name]
        except KeyError:
            raise ConversionError(f"tensor {name!r} missing from the checkpoint in {self.dir}") from None

    def read(self, name: str) -> np.ndarray:
        """The tensor as a numpy array: BF16/F16/F64 widened to float32, integer types as stored."""
        entry = self.entry(name)
        if entry.dtype == "BF16":
            return self._read_bf16(entry)
        if entry.dtype not in _NUMPY_DTYPES:
            raise ConversionError(f"tensor {name!r} has dtype {entry.dtype}, which the converter does not "
                                  f"read (supported: BF16, {', '.join(_NUMPY_DTYPES)})")
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(entry.shard), framework="numpy") as f:
                array = f.get_tensor(name)
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            raise ConversionError(f"cannot read tensor {name!r} from {entry.shard}: {e}") from None
        if array.dtype in (np.float16, np.float64):
            array = array.astype(np.float32)
        return array

    @staticmethod
    def _read_bf16(entry: TensorEntry) -> np.ndarray:
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.nbytes != 2 * count:
            raise ConversionError(f"tensor {entry.name!r}: {entry.nbytes} bytes for BF16 shape {entry.shape}")
        with open(entry.shard, "rb") as f:
            f.seek(entry.data_start)
            raw = np.fromfile(f, dtype="<u2", count=count)
        if raw.size != count:
            raise ConversionError(f"tensor {entry.name!r}: truncated data in {entry.shard}")
        # bf16 is the top 16 bits of an IEEE float32: shifting into place is an exact conversion.
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(entry.shape)
