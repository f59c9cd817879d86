"""GGUFWriter: write a GGUF v3 file (metadata, tensor table, aligned tensor data), streaming tensor by tensor.

Metadata values are encoded (and validated) when added; tensor data may be given as a zero-argument callable
so a converter can produce one tensor at a time: `write()` emits the header first, then calls each producer
in order and checks the size of what it returns. The file is written under a temporary name and renamed
into place only when complete, so a failed conversion never leaves a truncated .gguf behind.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitnet.errors import GGUFError
from bitnet.gguf.constants import (
    ALIGNMENT_KEY,
    DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MAX_DIMS,
    SCALAR_FORMATS,
    GGMLType,
    GGUFValueType,
    tensor_nbytes_dims,
)

GGUF_VERSION = 3
MAX_TENSOR_NAME_BYTES = 63   # ggml's GGML_MAX_NAME (64) includes the terminating NUL

TensorData = bytes | bytearray | memoryview | np.ndarray
TensorSource = TensorData | Callable[[], TensorData]

_STRUCT = {GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
           GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
           GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT32: "<f",
           GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "<?"}
_INT_RANGES = {GGUFValueType.UINT8: (0, 2**8 - 1), GGUFValueType.INT8: (-(2**7), 2**7 - 1),
               GGUFValueType.UINT16: (0, 2**16 - 1), GGUFValueType.INT16: (-(2**15), 2**15 - 1),
               GGUFValueType.UINT32: (0, 2**32 - 1), GGUFValueType.INT32: (-(2**31), 2**31 - 1),
               GGUFValueType.UINT64: (0, 2**64 - 1), GGUFValueType.INT64: (-(2**63), 2**63 - 1)}
_FLOAT_TYPES = (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64)
# numpy dtypes accepted as tensor data besides raw uint8 bytes, per tensor type (values, not encodings)
_NATIVE_DTYPES = {GGMLType.F32: np.dtype("<f4"), GGMLType.F16: np.dtype("<f2"), GGMLType.BF16: np.dtype("<u2")}


@dataclass
class _PendingTensor:
    name: str
    dims: tuple[int, ...]
    ggml_type: GGMLType
    nbytes: int
    source: TensorSource
    offset: int = 0


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_float(v: object) -> bool:
    return isinstance(v, (float, np.floating))


def _infer_int_type(v: int) -> GGUFValueType:
    if 0 <= v < 2**32:
        return GGUFValueType.UINT32
    if -(2**31) <= v < 0:
        return GGUFValueType.INT32
    if -(2**63) <= v < 0:
        return GGUFValueType.INT64
    if 0 <= v < 2**64:
        return GGUFValueType.UINT64
    raise GGUFError(f"integer {v} does not fit in any GGUF integer type")


def _infer_type(value: object) -> GGUFValueType:
    if isinstance(value, (bool, np.bool_)):
        return GGUFValueType.BOOL
    if _is_int(value):
        return _infer_int_type(int(value))
    if _is_float(value):
        return GGUFValueType.FLOAT32
    if isinstance(value, str):
        return GGUFValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return GGUFValueType.ARRAY
    raise GGUFError(f"cannot infer a GGUF type for a {type(value).__name__}")


def _infer_elem_type(values: Sequence[object]) -> GGUFValueType:
    """Element type of an array from its values: bools, ints (INT32, widened if needed), floats, strings, lists."""
    if len(values) == 0:
        raise GGUFError("cannot infer the element type of an empty array: pass elem_type")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise GGUFError(f"arrays must be 1-D, got a numpy array of shape {values.shape}")
        kind = values.dtype.kind
        if kind == "b":
            return GGUFValueType.BOOL
        if kind in "iu":
            lo, hi = int(values.min()), int(values.max())
            return _widest_int_type(lo, hi)
        if kind == "f":
            return GGUFValueType.FLOAT32
        if kind == "U":
            return GGUFValueType.STRING
        raise GGUFError(f"cannot store a numpy array of dtype {values.dtype} in GGUF metadata")
    kinds = {_infer_type(v) if not _is_int(v) else GGUFValueType.INT32 for v in values}
    if kinds == {GGUFValueType.INT32}:
        return _widest_int_type(min(int(v) for v in values), max(int(v) for v in values))
    if kinds <= {GGUFValueType.INT32, GGUFValueType.FLOAT32}:
        return GGUFValueType.FLOAT32
    if len(kinds) == 1:
        return kinds.pop()
    raise GGUFError(f"array mixes element types {sorted(k.name for k in kinds)}: pass elem_type")


def _widest_int_type(lo: int, hi: int) -> GGUFValueType:
    if -(2**31) <= lo and hi < 2**31:
        return GGUFValueType.INT32
    if -(2**63) <= lo and hi < 2**63:
        return GGUFValueType.INT64
    if lo >= 0 and hi < 2**64:
        return GGUFValueType.UINT64
    raise GGUFError(f"array integers span [{lo}, {hi}], which no GGUF integer type holds")


def _encode_string(s: object, what: str) -> bytes:
    if not isinstance(s, str):
        raise GGUFError(f"{what}: expected a str, got {type(s).__name__}")
    try:
        data = s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GGUFError(f"{what}: not encodable as UTF-8 ({e.reason})") from None
    return struct.pack("<Q", len(data)) + data


def _encode_scalar(vtype: GGUFValueType, value: object, what: str) -> bytes:
    if vtype == GGUFValueType.BOOL:
        if not isinstance(value, (bool, np.bool_)):
            raise GGUFError(f"{what}: BOOL needs a bool, got {type(value).__name__}")
        return struct.pack("<?", bool(value))
    if vtype in _FLOAT_TYPES:
        if not (_is_float(value) or _is_int(value)):
            raise GGUFError(f"{what}: {vtype.name} needs a number, got {type(value).__name__}")
        try:
            return struct.pack(_STRUCT[vtype], float(value))
        except OverflowError:
            raise GGUFError(f"{what}: {value} is out of the {vtype.name} range") from None
    if not _is_int(value):
        raise GGUFError(f"{what}: {vtype.name} needs an int, got {type(value).__name__}")
    lo, hi = _INT_RANGES[vtype]
    if not lo <= int(value) <= hi:
        raise GGUFError(f"{what}: {value} is out of the {vtype.name} range [{lo}, {hi}]")
    return struct.pack(_STRUCT[vtype], int(value))


def _encode_array(values: object, elem_type: GGUFValueType | None, what: str) -> bytes:
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise GGUFError(f"{what}: ARRAY needs a list, tuple or 1-D numpy array, got {type(values).__name__}")
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise GGUFError(f"{what}: arrays must be 1-D, got shape {values.shape}")
    etype = _infer_elem_type(values) if elem_type is None else _value_type(elem_type, what)
    head = struct.pack("<IQ", etype, len(values))
    if etype == GGUFValueType.STRING:
        return head + b"".join(_encode_string(v, f"{what}[{i}]") for i, v in enumerate(values))
    if etype == GGUFValueType.ARRAY:
        return head + b"".join(_encode_array(v, None, f"{what}[{i}]") for i, v in enumerate(values))
    return head + _encode_numeric_array(values, etype, what)


def _encode_numeric_array(values: Sequence[object], etype: GGUFValueType, what: str) -> bytes:
    """Fixed-size elements, vectorised (token_type / scores arrays have 128k entries)."""
    dtype = np.dtype(SCALAR_FORMATS[etype][0])
    if len(values) == 0:
        return b""
    if etype == GGUFValueType.BOOL:
        accepts, kinds, noun = (lambda v: isinstance(v, (bool, np.bool_))), "b", "bools"
    elif etype in _FLOAT_TYPES:
        accepts, kinds, noun = (lambda v: _is_float(v) or _is_int(v)), "iuf", "numbers"
    else:
        accepts, kinds, noun = _is_int, "iu", "ints"
    if isinstance(values, np.ndarray):
        ok = values.dtype.kind in kinds
    else:
        ok = all(accepts(v) for v in values)
    if not ok:
        raise GGUFError(f"{what}: {etype.name} array elements must all be {noun}")
    if etype == GGUFValueType.BOOL:
        return np.asarray(values, dtype=bool).astype(np.uint8).tobytes()
    if etype in _FLOAT_TYPES:
        wide = np.asarray(values, dtype=np.float64)
        out = wide.astype(dtype)
        if (np.isfinite(wide) & ~np.isfinite(out)).any():
            raise GGUFError(f"{what}: a value is out of the {etype.name} range")
        return out.tobytes()
    # ints: range-check exactly (numpy would silently turn a list holding 2**64-1 into float64)
    lo, hi = _INT_RANGES[etype]
    if isinstance(values, np.ndarray):
        v_lo, v_hi = int(values.min()), int(values.max())
    else:
        v_lo, v_hi = int(min(values)), int(max(values))
    if v_lo < lo or v_hi > hi:
        raise GGUFError(f"{what}: a value is out of the {etype.name} range [{lo}, {hi}]")
    return np.asarray(values, dtype=dtype).tobytes()


def _value_type(t: object, what: str) -> GGUFValueType:
    try:
        return GGUFValueType(t)
    except ValueError:
        raise GGUFError(f"{what}: unknown GGUF value type {t!r}") from None


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class GGUFWriter:
    """Collect metadata and tensors, then `write()` one GGUF v3 file."""

    def __init__(self, path: str | os.PathLike[str], alignment: int = DEFAULT_ALIGNMENT) -> None:
        if not _is_int(alignment) or not 0 < alignment < 2**32 or alignment & (alignment - 1):
            raise GGUFError(f"alignment must be a power of two that fits in 32 bits, got {alignment!r}")
        self.path = Path(path)
        self.alignment = int(alignment)
        self._kv: dict[str, bytes] = {}      # key -> encoded (type + value)
        self._tensors: dict[str, _PendingTensor] = {}
        self._written = False

    def add(self, key: str, value: object, vtype: GGUFValueType | int | None = None,
            elem_type: GGUFValueType | int | None = None) -> None:
        """Add one metadata entry; the type is inferred when not given (see module rules)."""
        if not isinstance(key, str) or not key:
            raise GGUFError(f"metadata key must be a non-empty str, got {key!r}")
        what = f"metadata key {key!r}"
        if key in self._kv:
            raise GGUFError(f"{what}: duplicate key")
        vt = _infer_type(value) if vtype is None else _value_type(vtype, what)
        if elem_type is not None and vt != GGUFValueType.ARRAY:
            raise GGUFError(f"{what}: elem_type is only meaningful for ARRAY values, not {vt.name}")
        if key == ALIGNMENT_KEY and (vt != GGUFValueType.UINT32 or value != self.alignment):
            raise GGUFError(f"{what}: must be the UINT32 {self.alignment} given as GGUFWriter(alignment=...), "
                            f"got {vt.name} {value!r}")
        if vt == GGUFValueType.STRING:
            encoded = _encode_string(value, what)
        elif vt == GGUFValueType.ARRAY:
            encoded = _encode_array(value, None if elem_type is None else _value_type(elem_type, what), what)
        else:
            encoded = _encode_scalar(vt, value, what)
        self._kv[key] = _encode_string(key, what) + struct.pack("<I", vt) + encoded

    def add_tensor(self, name: str, shape: Sequence[int], ggml_type: GGMLType | int,
                   data: TensorSource) -> None:
        """Add a tensor of numpy `shape` whose encoded bytes are `data` (or what the callable `data` returns).

        `data` is bytes, a uint8 numpy array of the exact encoded bytes, or for F32/F16/BF16 a float32/
        float16/uint16 array of the tensor's values in `shape`.
        """
        if not isinstance(name, str) or not name:
            raise GGUFError(f"tensor name must be a non-empty str, got {name!r}")
        try:
            name_bytes = len(name.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise GGUFError(f"tensor name {name!r} is not encodable as UTF-8 ({e.reason})") from None
        if name_bytes > MAX_TENSOR_NAME_BYTES:
            raise GGUFError(f"tensor name {name!r} is {name_bytes} bytes; ggml allows at most "
                            f"{MAX_TENSOR_NAME_BYTES}")
        if name in self._tensors:
            raise GGUFError(f"tensor {name!r}: duplicate tensor name")
        try:
            gtype = GGMLType(ggml_type)
        except ValueError:
            raise GGUFError(f"tensor {name!r}: unsupported ggml type {ggml_type!r}") from None
        shape = tuple(shape)
        if not 1 <= len(shape) <= MAX_DIMS or not all(_is_int(d) and 0 < d < 2**63 for d in shape):
            raise GGUFError(f"tensor {name!r}: shape {shape} must have 1..{MAX_DIMS} positive int dims")
        dims = tuple(int(d) for d in reversed(shape))
        if int(np.prod(dims, dtype=object)) >= 2**63:
            raise GGUFError(f"tensor {name!r}: shape {shape} has more than 2^63 elements")
        nbytes = tensor_nbytes_dims(gtype, dims, name)
        pending = _PendingTensor(name, dims, gtype, nbytes, data)
        if not callable(data):
            _tensor_payload(pending, data)   # validate now, so mistakes surface at the call that made them
        self._tensors[name] = pending

    def write(self) -> None:
        """Write the file: header and tensor table, then each tensor's data (calling producers in order)."""
        if self._written:
            raise GGUFError(f"{self.path}: already written")
        kv = dict(self._kv)
        if self.alignment != DEFAULT_ALIGNMENT and ALIGNMENT_KEY not in kv:
            kv[ALIGNMENT_KEY] = (_encode_string(ALIGNMENT_KEY, ALIGNMENT_KEY)
                                 + struct.pack("<II", GGUFValueType.UINT32, self.alignment))
        offset = 0
        infos = []
        for t in self._tensors.values():
            t.offset = offset
            offset = _align(offset + t.nbytes, self.alignment)
            infos.append(_encode_string(t.name, f"tensor {t.name!r}") + struct.pack("<I", len(t.dims))
                         + struct.pack(f"<{len(t.dims)}Q", *t.dims) + struct.pack("<IQ", t.ggml_type, t.offset))
        header = b"".join([GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(kv)),
                           *kv.values(), *infos])
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(header)
                f.write(bytes(_align(len(header), self.alignment) - len(header)))
                for t in self._tensors.values():
                    payload = _tensor_payload(t, t.source() if callable(t.source) else t.source)
                    f.write(payload)
                    f.write(bytes(_align(t.nbytes, self.alignment) - t.nbytes))
                    t.source = b""   # let a producer's result be freed before the next one runs
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._written = True


def _tensor_payload(t: _PendingTensor, data: object) -> memoryview:
    """The exact encoded bytes of tensor `t` from `data`, checking dtype, shape and size."""
    what = f"tensor {t.name!r} ({t.ggml_type.name}, shape {t.dims[::-1]})"
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
    elif isinstance(data, np.ndarray):
        native = _NATIVE_DTYPES.get(t.ggml_type)
        if data.dtype == np.uint8:
            arr = np.ascontiguousarray(data).reshape(-1)
        elif native is not None and data.dtype.newbyteorder("<") == native:
            if data.shape != t.dims[::-1]:
                raise GGUFError(f"{what}: value array has shape {data.shape}")
            arr = np.ascontiguousarray(data, dtype=native).reshape(-1)
        else:
            accepted = "uint8 (encoded bytes)" + (f" or {native} values" if native is not None else "")
            raise GGUFError(f"{what}: data of dtype {data.dtype} not accepted; pass {accepted} "
                            f"(bitnet.gguf.quants encodes)")
        view = memoryview(arr).cast("B")
    else:
        raise GGUFError(f"{what}: data must be bytes, a numpy array or a callable returning one, "
                        f"got {type(data).__name__}")
    if view.nbytes != t.nbytes:
        raise GGUFError(f"{what}: data is {view.nbytes} bytes, the tensor needs {t.nbytes}")
    return view
