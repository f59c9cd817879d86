# cython: language_level=3
"""The GGUF header parser: validates every count, length, dim and offset before using it.

`parse(buf)` walks a read-only byte buffer (the mmap of the file) and returns plain Python data. It never
allocates more than the bytes it has already checked are present, never reads outside `buf`, and raises
`GGUFError` naming the key/tensor/field and the bad value for anything malformed, hostile or unsupported.
The bounds checks are explicit (the build disables Cython's own), which is why every read goes through
`need()` or an equivalent comparison against the bytes left.
"""
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from cpython.unicode cimport PyUnicode_DecodeUTF8

import sys
from array import array

from bitnet.errors import GGUFError
from bitnet.gguf.constants import (
    ALIGNMENT_KEY,
    DEFAULT_ALIGNMENT,
    MAX_DIMS,
    SUPPORTED_VERSIONS,
    GGUFValueType,
    ggml_type_from_id,
    tensor_nbytes_dims,
)

cdef enum:
    VT_UINT8 = 0
    VT_INT8 = 1
    VT_UINT16 = 2
    VT_INT16 = 3
    VT_UINT32 = 4
    VT_INT32 = 5
    VT_FLOAT32 = 6
    VT_BOOL = 7
    VT_STRING = 8
    VT_ARRAY = 9
    VT_UINT64 = 10
    VT_INT64 = 11
    VT_FLOAT64 = 12
    VT_COUNT = 13

# Arrays of arrays occur (rarely, shallow); a cap keeps a hostile file from exhausting the C stack.
cdef int MAX_NESTING = 16
cdef uint64_t INT64_MAX_U = 0x7FFFFFFFFFFFFFFF
# Smallest possible encodings, used to reject counts the remaining bytes could never hold.
cdef uint64_t MIN_KV_BYTES = 8 + 1 + 4 + 1          # key length, 1-byte key, type, 1-byte value
cdef uint64_t MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8   # name length, name, n_dims, 1 dim, type, offset
cdef uint64_t HEADER_BYTES = 4 + 4 + 8 + 8

# Per value type: encoded size of one element (0 = variable), `array` typecode for fixed-size scalars (the
# stdlib's machine types, so the reader runs where numpy does not: the browser build). Sizes are checked at import.
cdef uint64_t[13] ELEM_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8]
_TYPECODES = {VT_UINT8: "B", VT_INT8: "b", VT_UINT16: "H", VT_INT16: "h", VT_UINT32: "I", VT_INT32: "i",
              VT_FLOAT32: "f", VT_BOOL: "B", VT_UINT64: "Q", VT_INT64: "q", VT_FLOAT64: "d"}
for _vt, _code in _TYPECODES.items():
    if array(_code).itemsize != ELEM_SIZE[_vt]:
        raise ImportError(f"array typecode {_code!r} is {array(_code).itemsize} bytes here, GGUF needs {ELEM_SIZE[_vt]}")
_BIG_ENDIAN = sys.byteorder == "big"
_VT_NAMES = {int(t): t.name for t in GGUFValueType}


cdef inline uint16_t le16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (<uint16_t>p[1] << 8))


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t le64(const uint8_t* p) noexcept nogil:
    return le32(p) | (<uint64_t>le32(p + 4) << 32)


cdef class _Parser:
    cdef const uint8_t* base
    cdef uint64_t size
    cdef uint64_t pos
    cdef str where        # what is being read, for error messages ("metadata key #3 'general.name'")
    cdef int64_t elem     # index inside the array being read, -1 outside arrays

    cdef int fail(self, str msg) except -1:
        loc = self.where
        if self.elem >= 0:
            loc = f"{loc}, array element {self.elem}"
        raise GGUFError(f"{loc}: {msg}")

    cdef inline uint64_t left(self) noexcept:
        return self.size - self.pos

    cdef inline int need(self, uint64_t n, str what) except -1:
        if n > self.size - self.pos:
            self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos} but only "
                      f"{self.size - self.pos} remain (file size {self.size})")
        return 0

    cdef uint32_t read_u32(self, str what) except? 0xFFFFFFFF:
        self.need(4, what)
        cdef uint32_t v = le32(self.base + self.pos)
        self.pos += 4
        return v

    cdef uint64_t read_u64(self, str what) except? 0xFFFFFFFFFFFFFFFF:
        self.need(8, what)
        cdef uint64_t v = le64(self.base + self.pos)
        self.pos += 8
        return v

    cdef str read_string(self, str what):
        cdef uint64_t n
        if self.size - self.pos < 8:
            self.fail(f"truncated: the length of the {what} needs 8 bytes at offset {self.pos} but only "
                      f"{self.size - self.pos} remain")
        n = le64(self.base + self.pos)
        self.pos += 8
        if n > self.size - self.pos:
            self.fail(f"{what} length {n} runs past the end of the file ({self.size - self.pos} bytes left "
                      f"at offset {self.pos})")
        cdef const char* start = <const char*>(self.base + self.pos)
        try:
            s = PyUnicode_DecodeUTF8(start, <Py_ssize_t>n, "strict")
        except UnicodeDecodeError as e:
            self.fail(f"{what} at offset {self.pos} is not valid UTF-8 ({e.reason} at byte {e.start})")
        self.pos += n
        return s

    cdef object read_scalar(self, uint32_t vtype):
        cdef const uint8_t* p
        cdef uint32_t u32
        cdef uint64_t u64
        cdef float f32
        cdef double f64
        if ELEM_SIZE[vtype] > self.size - self.pos:
            self.fail(f"truncated: {_VT_NAMES[vtype]} value needs {ELEM_SIZE[vtype]} bytes at offset {self.pos} "
                      f"but only {self.size - self.pos} remain")
        p = self.base + self.pos
        self.pos += ELEM_SIZE[vtype]
        if vtype == VT_UINT8:
            return p[0]
        if vtype == VT_INT8:
            return <int8_t>p[0]
        if vtype == VT_UINT16:
            return le16(p)
        if vtype == VT_INT16:
            return <int16_t>le16(p)
        if vtype == VT_UINT32:
            return le32(p)
        if vtype == VT_INT32:
            return <int32_t>le32(p)
        if vtype == VT_UINT64:
            return le64(p)
        if vtype == VT_INT64:
            return <int64_t>le64(p)
        if vtype == VT_FLOAT32:
            u32 = le32(p)
            memcpy(&f32, &u32, 4)
            return f32
        if vtype == VT_FLOAT64:
            u64 = le64(p)
            memcpy(&f64, &u64, 8)
            return f64
        # VT_BOOL: a byte that must be 0 or 1
        if p[0] > 1:
            self.pos -= 1
            self.fail(f"bool value at offset {self.pos} is {p[0]} (must be 0 or 1)")
        return p[0] == 1

    cdef object read_value(self, uint32_t vtype, int depth):
        if vtype == VT_STRING:
            return self.read_string("string value")
        if vtype == VT_ARRAY:
            return self.read_array(depth)
        if vtype >= VT_COUNT:
            self.fail(f"unknown value type id {vtype} at offset {self.pos - 4}")
        return self.read_scalar(vtype)

    cdef list read_array(self, int depth):
        cdef uint32_t etype
        cdef uint64_t count, min_size, nbytes, i
        cdef int64_t saved_elem = self.elem
        cdef list out
        if depth >= MAX_NESTING:
            self.fail(f"arrays nested more than {MAX_NESTING} deep")
        etype = self.read_u32("array element type")
        if etype >= VT_COUNT:
            self.fail(f"unknown array element type id {etype} at offset {self.pos - 4}")
        count = self.read_u64("array length")
        min_size = ELEM_SIZE[etype] if ELEM_SIZE[etype] else (8 if etype == VT_STRING else 12)
        if count > self.left() // min_size:
            self.fail(f"array of {count} {_VT_NAMES[etype]} elements cannot fit in the {self.left()} bytes "
                      f"left at offset {self.pos} (each needs at least {min_size})")
        if ELEM_SIZE[etype]:
            # Fixed-size elements: one bounds-checked copy, decoded in C by `array` (fast for 128k-entry arrays).
            nbytes = count * ELEM_SIZE[etype]
            values = array(_TYPECODES[etype], (<const char*>(self.base + self.pos))[:nbytes])
            if _BIG_ENDIAN:
                values.byteswap()
            if etype == VT_BOOL:
                for i in range(count):
                    if values[i] > 1:
                        self.elem = <int64_t>i
                        self.fail(f"bool value is {values[i]} (must be 0 or 1)")
                self.pos += nbytes
                return [v == 1 for v in values]
            self.pos += nbytes
            return values.tolist()
        out = []
        for i in range(count):
            self.elem = <int64_t>i
            if etype == VT_STRING:
                out.append(self.read_string("array string"))
            else:
                out.append(self.read_array(depth + 1))
        self.elem = saved_elem
        return out


def parse(const uint8_t[::1] buf):
    """Parse and validate a whole GGUF header held in `buf` (the complete file).

    Returns a dict: version, alignment, data_offset, metadata, metadata_types, array_types and tensors,
    a list of (name, dims, GGMLType, absolute offset, nbytes) in file order.
    """
    cdef _Parser p = _Parser()
    cdef uint64_t n_tensors, n_kv, i, j, n_dims, dim, n_elements, alignment, data_offset
    cdef uint32_t version, vtype, etype
    p.size = <uint64_t>buf.shape[0]
    p.pos = 0
    p.elem = -1
    p.where = "GGUF header"
    if p.size == 0:
        raise GGUFError("empty file: not a GGUF file")
    p.base = &buf[0]

    if p.size < 4 or memcmp(p.base, b"GGUF", 4) != 0:
        p.fail(f"not a GGUF file: bad magic {bytes(buf[:4])!r} (expected b'GGUF')")
    p.pos = 4
    version = p.read_u32("version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(int(version).to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            p.fail(f"version field {version:#010x} is a byte-swapped {swapped}: big-endian GGUF files are "
                   f"not supported")
        p.fail(f"unsupported GGUF version {version} (supported: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    n_tensors = p.read_u64("tensor count")
    n_kv = p.read_u64("metadata key/value count")
    if n_kv > p.left() // MIN_KV_BYTES:
        p.fail(f"n_kv = {n_kv} metadata entries cannot fit in the {p.left()} bytes left "
               f"(each needs at least {MIN_KV_BYTES})")
    if n_tensors > p.left() // MIN_TENSOR_INFO_BYTES:
        p.fail(f"n_tensors = {n_tensors} tensor infos cannot fit in the {p.left()} bytes left "
               f"(each needs at least {MIN_TENSOR_INFO_BYTES})")

    metadata = {}
    metadata_types = {}
    array_types = {}
    for i in range(n_kv):
        p.where = f"metadata key #{i}"
        key = p.read_string("key")
        if not key:
            p.fail("empty key")
        p.where = f"metadata key #{i} {key!r}"
        if key in metadata:
            p.fail("duplicate key")
        vtype = p.read_u32("value type")
        if vtype >= VT_COUNT:
            p.fail(f"unknown value type id {vtype} at offset {p.pos - 4}")
        if vtype == VT_ARRAY:
            p.need(4, "array element type")
            etype = le32(p.base + p.pos)
            if etype < VT_COUNT:
                array_types[key] = GGUFValueType(etype)
        metadata[key] = p.read_value(vtype, 0)
        metadata_types[key] = GGUFValueType(vtype)

    p.where = "GGUF header"
    if n_tensors > p.left() // MIN_TENSOR_INFO_BYTES:
        p.fail(f"n_tensors = {n_tensors} tensor infos cannot fit in the {p.left()} bytes left after the "
               f"metadata (each needs at least {MIN_TENSOR_INFO_BYTES})")
    raw_tensors = []
    names = set()
    for i in range(n_tensors):
        p.where = f"tensor info #{i}"
        name = p.read_string("tensor name")
        if not name:
            p.fail("empty tensor name")
        p.where = f"tensor {name!r}"
        if name in names:
            p.fail(f"duplicate tensor name (tensor info #{i})")
        names.add(name)
        n_dims = p.read_u32("n_dims")
        if n_dims == 0 or n_dims > MAX_DIMS:
            p.fail(f"n_dims = {n_dims} (must be 1..{MAX_DIMS})")
        dims = []
        n_elements = 1
        for j in range(n_dims):
            dim = p.read_u64(f"dimension {j}")
            if dim == 0:
                p.fail(f"dimension {j} is zero (dims {tuple(dims) + (0,)})")
            if dim > INT64_MAX_U:
                p.fail(f"dimension {j} = {dim} does not fit in int64")
            if n_elements > INT64_MAX_U // dim:
                p.fail(f"element count overflows int64: dims {tuple(dims) + (dim,)}")
            n_elements *= dim
            dims.append(dim)
        type_id = p.read_u32("ggml type")
        rel_offset = p.read_u64("data offset")
        raw_tensors.append((name, tuple(dims), type_id, rel_offset))

    p.where = f"metadata key {ALIGNMENT_KEY!r}"
    alignment = DEFAULT_ALIGNMENT
    if ALIGNMENT_KEY in metadata:
        if metadata_types[ALIGNMENT_KEY] != GGUFValueType.UINT32:
            p.fail(f"must be UINT32, got {metadata_types[ALIGNMENT_KEY].name}")
        alignment = metadata[ALIGNMENT_KEY]
        if alignment == 0 or (alignment & (alignment - 1)) != 0:
            p.fail(f"alignment {alignment} is not a non-zero power of two")
    data_offset = (p.pos + alignment - 1) // alignment * alignment

    tensors = []
    spans = []
    for name, dims, type_id, rel_offset in raw_tensors:   # Python ints from here on: no overflow
        p.where = f"tensor {name!r}"
        ggml_type = ggml_type_from_id(type_id, name)
        nbytes = tensor_nbytes_dims(ggml_type, dims, name)
        if rel_offset % alignment:
            p.fail(f"data offset {rel_offset} is not a multiple of the alignment {alignment}")
        start = data_offset + rel_offset
        end = start + nbytes
        if end > p.size:
            p.fail(f"data [{start}, {end}) ({ggml_type.name}, dims {dims}, {nbytes} bytes) lies outside the "
                   f"file ({p.size} bytes)")
        tensors.append((name, dims, ggml_type, start, nbytes))
        spans.append((start, end, name))

    spans.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(spans, spans[1:]):
        if start_b < end_a:
            p.where = f"tensor {name_b!r}"
            p.fail(f"data starting at {start_b} overlaps tensor {name_a!r}, which ends at {end_a}")

    return {
        "version": version,
        "alignment": alignment,
        "data_offset": data_offset,
        "metadata": metadata,
        "metadata_types": metadata_types,
        "array_types": array_types,
        "tensors": tensors,
    }
