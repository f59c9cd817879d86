"""GGUFReader on the reference files, checked against the PyPI `gguf` package (llama.cpp's own reader)."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from conftest import testdata_path as data_path

from bitnet.errors import GGUFError
from bitnet.gguf import GGMLType, GGUFReader, GGUFValueType, GGUFWriter, TensorInfo, quants


class RawTensorReader(gguf.GGUFReader):
    """gguf-py's reader, keeping the raw tensor table: it rejects type ids it does not know (I2_S = 36)."""

    def _build_tensors(self, start_offs: int, fields: list) -> None:
        self.raw_tensors = [
            (str(bytes(f.parts[1]), "utf-8"), tuple(int(d) for d in f.parts[3]), int(f.parts[4][0]),
             start_offs + int(f.parts[5][0]))
            for f in fields
        ]


def gguf_py_metadata(reader: gguf.GGUFReader) -> dict[str, tuple]:
    """key -> (value type, array element type or None, value) as gguf-py sees them."""
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        is_array = field.types[0] == gguf.GGUFValueType.ARRAY
        out[name] = (int(field.types[0]), int(field.types[-1]) if is_array else None, field.contents())
    return out


def our_metadata(reader: GGUFReader) -> dict[str, tuple]:
    return {k: (int(reader.metadata_types[k]),
                int(reader.array_types[k]) if k in reader.array_types else None, v)
            for k, v in reader.metadata.items()}


@pytest.fixture
def tinya_gguf(tinya_dir: Path) -> Path:
    return tinya_dir / "tinyA-i2s.gguf"


def test_tinya_metadata_matches_gguf_py(tinya_gguf: Path) -> None:
    ref = RawTensorReader(tinya_gguf)
    with GGUFReader(tinya_gguf) as r:
        ours = our_metadata(r)
        assert list(ours) == list(gguf_py_metadata(ref))
        assert ours == gguf_py_metadata(ref)
        assert r.version == 3
        assert r.alignment == 32
        assert r.data_offset == ref.data_offset
        assert r.file_size == tinya_gguf.stat().st_size
        assert r.metadata["general.architecture"] == "bitnet-25"
        assert len(r.metadata["tokenizer.ggml.tokens"]) == 1027


def test_tinya_tensor_table_matches_gguf_py(tinya_gguf: Path) -> None:
    ref = RawTensorReader(tinya_gguf)
    with GGUFReader(tinya_gguf) as r:
        ours = [(t.name, t.dims, int(t.ggml_type), t.offset) for t in r.tensors.values()]
        assert ours == ref.raw_tensors
        counts = {}
        for t in r.tensors.values():
            counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
            assert t.shape == t.dims[::-1]
            assert t.offset % r.alignment == 0
            assert t.nbytes == quants.tensor_nbytes(t.ggml_type, t.shape)
        assert counts == {GGMLType.I2_S: 14, GGMLType.F32: 9, GGMLType.F16: 1}
        q = r.tensors["blk.0.attn_q.weight"]
        assert isinstance(q, TensorInfo)
        assert q.dims == (128, 128) and q.nbytes == 128 * 128 // 4 + 32


def test_tinya_float_tensors_decode_like_gguf_py(tinya_gguf: Path) -> None:
    ref = RawTensorReader(tinya_gguf)
    raw = np.fromfile(tinya_gguf, dtype=np.uint8)
    with GGUFReader(tinya_gguf) as r:
        for name, dims, type_id, offset in ref.raw_tensors:
            if type_id not in (0, 1):
                continue
            n = int(np.prod(dims))
            dtype = np.float32 if type_id == 0 else np.float16
            expected = raw[offset: offset + n * np.dtype(dtype).itemsize].view(dtype).reshape(dims[::-1])
            np.testing.assert_array_equal(r.dequantize(name), expected.astype(np.float32))


def test_llama3_vocab_reads_completely() -> None:
    # how fast it reads is measured by benchmarks/bench_load.py, not asserted here
    path = data_path("llama3-vocab.gguf")
    with GGUFReader(path) as r:
        tokens = r.metadata["tokenizer.ggml.tokens"]
        assert len(tokens) == 128256 and len(r.metadata["tokenizer.ggml.merges"]) == 280147
        assert tokens[128000] == "<|begin_of_text|>" and tokens[128009] == "<|eot_id|>"
        assert r.metadata["tokenizer.ggml.bos_token_id"] == 128000
        assert "tokenizer.ggml.pre" not in r.metadata
        assert r.array_types["tokenizer.ggml.token_type"] == GGUFValueType.INT32
        assert r.tensors == {} and r.data_offset == r.file_size


def test_llama3_vocab_rewritten_by_gguf_py_is_byte_identical(tmp_path: Path) -> None:
    """gguf-py's own reader needs ~25 s on this file, so check the other way round: everything we parsed
    (keys, order, types, values), written back by gguf-py's writer, must reproduce the file's header exactly."""
    path = data_path("llama3-vocab.gguf")
    with GGUFReader(path) as r:
        out = tmp_path / "rewritten.gguf"
        w = gguf.GGUFWriter(out, arch=r.metadata["general.architecture"])
        for key, value in r.metadata.items():
            sub = gguf.GGUFValueType(r.array_types[key]) if key in r.array_types else None
            w.add_key_value(key, value, gguf.GGUFValueType(r.metadata_types[key]), sub_type=sub)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
    original, rewritten = path.read_bytes(), out.read_bytes()
    assert original[: len(rewritten)] == rewritten
    assert set(original[len(rewritten):]) <= {0}    # only the alignment padding follows


def test_llama3_vocab_rewritten_by_our_writer_is_identical(tmp_path: Path) -> None:
    path = data_path("llama3-vocab.gguf")
    out = tmp_path / "ours.gguf"
    with GGUFReader(path) as r:
        w = GGUFWriter(out)
        for key, value in r.metadata.items():
            w.add(key, value, r.metadata_types[key], r.array_types.get(key))
        w.write()
    assert out.read_bytes() == path.read_bytes()


def test_tensor_bytes_are_zero_copy_read_only_views(tinya_gguf: Path) -> None:
    raw = tinya_gguf.read_bytes()
    r = GGUFReader(tinya_gguf)
    a, b = r.tensor_bytes("blk.0.attn_q.weight"), r.tensor_bytes("blk.0.attn_q.weight")
    c = r.tensor_bytes("blk.0.attn_k.weight")
    info_a, info_c = r.tensors["blk.0.attn_q.weight"], r.tensors["blk.0.attn_k.weight"]
    assert a.dtype == np.uint8 and a.ndim == 1 and a.size == info_a.nbytes
    assert not a.flags.writeable
    assert np.shares_memory(a, b)     # both views of the same mapping, not copies
    assert c.ctypes.data - a.ctypes.data == info_c.offset - info_a.offset
    assert a.tobytes() == raw[info_a.offset: info_a.offset + info_a.nbytes]
    with pytest.raises(ValueError):
        a[0] = 1
    r.close()
    # views outlive close(): the mapping is released with the last of them
    assert a.tobytes() == raw[info_a.offset: info_a.offset + info_a.nbytes]
    with pytest.raises(GGUFError, match="closed"):
        r.tensor_bytes("blk.0.attn_q.weight")


def test_unknown_tensor_name_is_a_key_error(tinya_gguf: Path) -> None:
    with GGUFReader(tinya_gguf) as r, pytest.raises(KeyError, match="output.weight"):
        r.tensor_bytes("output.weight")


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GGUFReader(tmp_path / "absent.gguf")


def test_version_2_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "v2.gguf"
    w = GGUFWriter(path)
    w.add("general.architecture", "llama")
    w.add_tensor("t", (2, 32), GGMLType.F32, np.arange(64, dtype=np.float32).reshape(2, 32))
    w.write()
    data = bytearray(path.read_bytes())
    data[4:8] = (2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with GGUFReader(path) as r:
        assert r.version == 2
        np.testing.assert_array_equal(r.dequantize("t"), np.arange(64, dtype=np.float32).reshape(2, 32))


def test_custom_alignment_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "a256.gguf"
    w = GGUFWriter(path, alignment=256)
    w.add("general.architecture", "llama")
    for i in range(3):
        w.add_tensor(f"t{i}", (1, 32 * (i + 1)), GGMLType.F32, np.full((1, 32 * (i + 1)), i, np.float32))
    w.write()
    with GGUFReader(path) as r:
        assert r.alignment == 256 and r.metadata["general.alignment"] == 256
        assert r.data_offset % 256 == 0
        assert all(t.offset % 256 == 0 for t in r.tensors.values())
        assert float(r.dequantize("t2")[0, -1]) == 2.0
