"""GGUFReader: a validated, memory-mapped view of a GGUF file (parsing lives in the Cython `_reader`)."""
from __future__ import annotations

import os

try:
    import mmap
except ImportError:   # WebAssembly (Pyodide): the file is read into memory instead
    mmap = None
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bitnet.errors import GGUFError
from bitnet.gguf import _reader
from bitnet.gguf.constants import GGMLType, GGUFValueType

if TYPE_CHECKING:
    import numpy as np
    from typing_extensions import Self


class TensorInfo(NamedTuple):
    """One entry of the tensor table. `offset` is the absolute file offset of the data."""
    name: str
    dims: tuple[int, ...]     # GGUF order: ne0 (row length) first
    shape: tuple[int, ...]    # numpy order: reversed dims
    ggml_type: GGMLType
    offset: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


class GGUFReader:
    """Open, validate and memory-map a GGUF v2/v3 file.

    Everything in the header is checked before use; a malformed file raises `GGUFError` naming the field and
    the bad value. OS-level failures (missing file, permissions) raise the usual `OSError`.
    `tensor_bytes()` (numpy) and `tensor_buffer()` (memoryview) return zero-copy read-only views of the mapping;
    the mapping stays alive as long as the reader or any such view does (`close()` only drops the reader's own
    reference while views are alive). Where there is no mmap module (the browser build), the file is read into
    memory once instead.
    """

    def __init__(self, path: str | os.PathLike[str], populate: bool = False) -> None:
        """`populate=True` maps every page of the file up front (Linux MAP_POPULATE) for a reader whose tensors
        will all be read, as the engine's are: one pass in the kernel instead of ~1 fault per 4 KiB page inside
        the first forward pass (a quarter-million faults, a fifth of a second, for a 2B model)."""
        self.path = Path(path)
        self._mm: mmap.mmap | None = None
        with open(self.path, "rb") as f:
            self.file_size = os.fstat(f.fileno()).st_size
            if self.file_size == 0:
                raise GGUFError(f"{self.path}: empty file, not a GGUF file")
            if mmap is None:
                self._mm = f.read()
            elif populate and hasattr(mmap, "MAP_POPULATE"):
                self._mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
            else:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            info = _reader.parse(self._mm)
        except GGUFError as e:
            self.close()
            raise GGUFError(f"{self.path}: {e}") from None
        self.version: int = info["version"]
        self.alignment: int = info["alignment"]
        self.data_offset: int = info["data_offset"]
        self.metadata: dict[str, object] = info["metadata"]
        self.metadata_types: dict[str, GGUFValueType] = info["metadata_types"]
        self.array_types: dict[str, GGUFValueType] = info["array_types"]
        self.tensors: dict[str, TensorInfo] = {
            name: TensorInfo(name, dims, tuple(reversed(dims)), ggml_type, offset, nbytes)
            for name, dims, ggml_type, offset, nbytes in info["tensors"]
        }

    def tensor_bytes(self, name: str) -> np.ndarray:
        """The raw encoded bytes of a tensor: a 1-D read-only uint8 numpy view over the mapping (no copy)."""
        import numpy as np

        return np.frombuffer(self.tensor_buffer(name), dtype=np.uint8)

    def tensor_buffer(self, name: str) -> memoryview:
        """The raw encoded bytes of a tensor as a read-only memoryview over the mapping (no copy, no numpy)."""
        info = self._info(name)
        if self._mm is None:
            raise GGUFError(f"{self.path}: reader is closed")
        return memoryview(self._mm).toreadonly()[info.offset: info.offset + info.nbytes]

    def release_pages(self, name: str) -> None:
        """Drop the resident pages of a tensor the engine no longer reads in bulk (advice only: they come back
        from the file if touched), so that they stop counting against the process's memory."""
        info = self._info(name)
        if not isinstance(self._mm, getattr(mmap, "mmap", ())) or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = -(-info.offset // mmap.PAGESIZE) * mmap.PAGESIZE      # whole pages inside the tensor only
        end = (info.offset + info.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            try:
                self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)
            except OSError:
                pass

    def dequantize(self, name: str) -> np.ndarray:
        """A tensor decoded to float32 in numpy shape (a copy; for tests and debugging)."""
        from bitnet.gguf import quants

        info = self._info(name)
        return quants.dequantize(self.tensor_bytes(name), info.ggml_type, info.shape)

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None and not isinstance(mm, bytes):
            try:
                mm.close()
            except BufferError:
                # Views from tensor_bytes() still export the buffer; the mapping is released with the last one.
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else f"{len(self.tensors)} tensors, {len(self.metadata)} keys"
        return f"GGUFReader({str(self.path)!r}, v{self.version}, {state})"
