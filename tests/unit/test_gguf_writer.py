"""GGUFWriter: round trips through our reader, and cross-checks with the PyPI `gguf` reader and writer."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gguf
import gguf.quants as gq
import numpy as np
import pytest

from bitnet.errors import GGUFError
from bitnet.gguf import GGMLType, GGUFReader, GGUFValueType, GGUFWriter, quants

VT = GGUFValueType

# (key, value, vtype, elem_type, value read back)
TYPED_VALUES = [
    ("u8", 255, VT.UINT8, None, 255),
    ("i8", -128, VT.INT8, None, -128),
    ("u16", 65535, VT.UINT16, None, 65535),
    ("i16", -32768, VT.INT16, None, -32768),
    ("u32", 2**32 - 1, VT.UINT32, None, 2**32 - 1),
    ("i32", -(2**31), VT.INT32, None, -(2**31)),
    ("u64", 2**64 - 1, VT.UINT64, None, 2**64 - 1),
    ("i64", -(2**63), VT.INT64, None, -(2**63)),
    ("f32", 0.1, VT.FLOAT32, None, float(np.float32(0.1))),
    ("f64", 0.1, VT.FLOAT64, None, 0.1),
    ("f32.inf", float("-inf"), VT.FLOAT32, None, float("-inf")),
    ("bool.t", True, VT.BOOL, None, True),
    ("bool.f", False, VT.BOOL, None, False),
    ("str", "héllo ✓ 🙂", VT.STRING, None, "héllo ✓ 🙂"),
    ("str.empty", "", VT.STRING, None, ""),
    ("arr.u8", [0, 255], VT.ARRAY, VT.UINT8, [0, 255]),
    ("arr.i8", [-128, 127], VT.ARRAY, VT.INT8, [-128, 127]),
    ("arr.u16", [1, 65535], VT.ARRAY, VT.UINT16, [1, 65535]),
    ("arr.i16", [-32768, 5], VT.ARRAY, VT.INT16, [-32768, 5]),
    ("arr.u32", [2**32 - 1], VT.ARRAY, VT.UINT32, [2**32 - 1]),
    ("arr.i32", [-1, 2, -3], VT.ARRAY, VT.INT32, [-1, 2, -3]),
    ("arr.u64", [2**64 - 1, 0], VT.ARRAY, VT.UINT64, [2**64 - 1, 0]),
    ("arr.i64", [-(2**63), 2**63 - 1], VT.ARRAY, VT.INT64, [-(2**63), 2**63 - 1]),
    ("arr.f32", [0.5, -2.25, 1e-3], VT.ARRAY, VT.FLOAT32, [0.5, -2.25, float(np.float32(1e-3))]),
    ("arr.f64", [0.1, 1e300], VT.ARRAY, VT.FLOAT64, [0.1, 1e300]),
    ("arr.bool", [True, False, True], VT.ARRAY, VT.BOOL, [True, False, True]),
    ("arr.str", ["Ġt", "", "<|eot_id|>", "日本"], VT.ARRAY, VT.STRING, ["Ġt", "", "<|eot_id|>", "日本"]),
    ("arr.empty", [], VT.ARRAY, VT.INT32, []),
    ("arr.nested", [[1, 2], [3], [[4.5]], ["x", "y"]], VT.ARRAY, VT.ARRAY, [[1, 2], [3], [[4.5]], ["x", "y"]]),
]


def test_every_value_type_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "values.gguf"
    w = GGUFWriter(path)
    for key, value, vtype, elem, _ in TYPED_VALUES:
        w.add(key, value, vtype, elem)
    w.write()
    with GGUFReader(path) as r:
        assert list(r.metadata) == [k for k, *_ in TYPED_VALUES]
        for key, _, vtype, elem, expected in TYPED_VALUES:
            assert r.metadata[key] == expected, key
            assert r.metadata_types[key] == vtype, key
            if elem is not None:
                assert r.array_types[key] == elem, key


@pytest.mark.parametrize("value, vtype, elem", [
    (True, VT.BOOL, None),
    (np.bool_(False), VT.BOOL, None),
    (0, VT.UINT32, None),
    (2**32 - 1, VT.UINT32, None),
    (-1, VT.INT32, None),
    (-(2**31) - 1, VT.INT64, None),
    (2**32, VT.UINT64, None),
    (np.int64(7), VT.UINT32, None),
    (1.5, VT.FLOAT32, None),
    (np.float64(1.5), VT.FLOAT32, None),
    ("s", VT.STRING, None),
    ([1, 2], VT.ARRAY, VT.INT32),
    ([1, 2**31], VT.ARRAY, VT.INT64),
    ([0, 2**63], VT.ARRAY, VT.UINT64),
    ([1, 2.5], VT.ARRAY, VT.FLOAT32),
    ([True, False], VT.ARRAY, VT.BOOL),
    (("a", "b"), VT.ARRAY, VT.STRING),
    ([[1], ["a"]], VT.ARRAY, VT.ARRAY),
    (np.arange(3, dtype=np.int64), VT.ARRAY, VT.INT32),
    (np.zeros(3, dtype=np.float64), VT.ARRAY, VT.FLOAT32),
])
def test_type_inference(tmp_path: Path, value: object, vtype: VT, elem: VT | None) -> None:
    path = tmp_path / "infer.gguf"
    w = GGUFWriter(path)
    w.add("k", value)
    w.write()
    with GGUFReader(path) as r:
        assert r.metadata_types["k"] == vtype
        assert r.array_types.get("k") == elem
        expected = value.tolist() if isinstance(value, np.ndarray) else value
        assert r.metadata["k"] == (list(expected) if isinstance(expected, tuple) else expected)


def encoded_tensors(seed: int = 0) -> dict[str, tuple[tuple[int, ...], GGMLType, np.ndarray, np.ndarray]]:
    """name -> (shape, type, encoded bytes, decoded float32 values) for every tensor type."""
    rng = np.random.default_rng(seed)
    out = {}
    for ggml_type, shape in [(GGMLType.F32, (3, 5)), (GGMLType.F16, (2, 7)), (GGMLType.BF16, (9,)),
                             (GGMLType.Q8_0, (3, 64)), (GGMLType.TQ1_0, (2, 256)), (GGMLType.TQ2_0, (2, 512)),
                             (GGMLType.I2_S, (4, 96))]:
        w = rng.standard_normal(shape).astype(np.float32)
        if ggml_type == GGMLType.I2_S:
            w = rng.integers(-1, 2, size=shape).astype(np.float32) * np.float32(0.75)
        raw = quants.quantize(w, ggml_type)
        out[f"t.{ggml_type.name.lower()}"] = (shape, ggml_type, raw, quants.dequantize(raw, ggml_type, shape))
    return out


def test_every_tensor_type_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "tensors.gguf"
    tensors = encoded_tensors()
    w = GGUFWriter(path)
    w.add("general.architecture", "test")
    for name, (shape, ggml_type, raw, _) in tensors.items():
        w.add_tensor(name, shape, ggml_type, raw)
    w.write()
    with GGUFReader(path) as r:
        assert list(r.tensors) == list(tensors)
        for name, (shape, ggml_type, raw, values) in tensors.items():
            info = r.tensors[name]
            assert (info.shape, info.ggml_type, info.nbytes) == (shape, ggml_type, raw.size)
            np.testing.assert_array_equal(r.tensor_bytes(name), raw)
            np.testing.assert_array_equal(r.dequantize(name), values)
    i2s_values = tensors["t.i2_s"][3]
    assert set(np.unique(i2s_values).tolist()) == {-0.75, 0.0, 0.75}


def test_value_arrays_and_producers_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "native.gguf"
    f32 = np.arange(12, dtype=np.float32).reshape(3, 4)
    f16 = np.arange(8, dtype=np.float16).reshape(2, 4)
    bf16 = quants.to_bf16(np.array([1.0, -2.5, 3.0, 0.0], dtype=np.float32))
    calls: list[str] = []

    def producer(name: str, data: np.ndarray) -> Callable[[], np.ndarray]:
        def produce() -> np.ndarray:
            calls.append(name)
            return data
        return produce

    w = GGUFWriter(path)
    w.add_tensor("f32", (3, 4), GGMLType.F32, producer("f32", f32))
    w.add_tensor("f16", (2, 4), GGMLType.F16, producer("f16", f16))
    w.add_tensor("bf16", (4,), GGMLType.BF16, producer("bf16", bf16))
    w.add_tensor("big_endian", (3, 4), GGMLType.F32, f32.astype(">f4"))
    assert calls == []                  # producers run only inside write(), in order
    w.write()
    assert calls == ["f32", "f16", "bf16"]
    with GGUFReader(path) as r:
        np.testing.assert_array_equal(r.dequantize("f32"), f32)
        np.testing.assert_array_equal(r.dequantize("f16"), f16.astype(np.float32))
        np.testing.assert_array_equal(r.dequantize("bf16"), [1.0, -2.5, 3.0, 0.0])
        np.testing.assert_array_equal(r.dequantize("big_endian"), f32)


def test_alignment_is_written_only_when_not_default(tmp_path: Path) -> None:
    for alignment in (32, 64):
        path = tmp_path / f"a{alignment}.gguf"
        w = GGUFWriter(path, alignment=alignment)
        w.add_tensor("a", (1,), GGMLType.F32, np.ones(1, np.float32))
        w.add_tensor("b", (3,), GGMLType.F32, np.ones(3, np.float32))
        w.write()
        with GGUFReader(path) as r:
            assert ("general.alignment" in r.metadata) == (alignment != 32)
            assert r.tensors["b"].offset - r.tensors["a"].offset == alignment
            assert path.stat().st_size % alignment == 0
    w = GGUFWriter(tmp_path / "explicit.gguf", alignment=64)
    w.add("general.alignment", 64)    # matching: accepted, not written twice
    w.write()
    with GGUFReader(tmp_path / "explicit.gguf") as r:
        assert r.metadata == {"general.alignment": 64}


def test_failed_producer_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.gguf"
    w = GGUFWriter(path)
    w.add_tensor("good", (32,), GGMLType.F32, np.zeros(32, np.float32))
    w.add_tensor("bad", (2, 32), GGMLType.Q8_0, lambda: np.zeros(10, np.uint8))
    with pytest.raises(GGUFError, match=r"tensor 'bad' .*data is 10 bytes, the tensor needs 68"):
        w.write()
    assert list(tmp_path.iterdir()) == []


def _writer(tmp_path: Path) -> GGUFWriter:
    w = GGUFWriter(tmp_path / "x.gguf")
    w.add("dup", 1)
    w.add_tensor("dup", (32,), GGMLType.F32, np.zeros(32, np.float32))
    return w


@pytest.mark.parametrize("action, match", [
    (lambda w: w.add("dup", 2), "duplicate key"),
    (lambda w: w.add("", 2), "non-empty"),
    (lambda w: w.add("k", 256, VT.UINT8), r"out of the UINT8 range"),
    (lambda w: w.add("k", -1, VT.UINT64), r"out of the UINT64 range"),
    (lambda w: w.add("k", 2**64), "does not fit in any GGUF integer type"),
    (lambda w: w.add("k", 1e39, VT.FLOAT32), "out of the FLOAT32 range"),
    (lambda w: w.add("k", "1", VT.INT32), "needs an int"),
    (lambda w: w.add("k", 1, VT.BOOL), "needs a bool"),
    (lambda w: w.add("k", "\ud800"), "UTF-8"),
    (lambda w: w.add("k", [], VT.ARRAY), "empty array: pass elem_type"),
    (lambda w: w.add("k", [1, "a"]), "mixes element types"),
    (lambda w: w.add("k", [1, 300], VT.ARRAY, VT.UINT8), "out of the UINT8 range"),
    (lambda w: w.add("k", [1, 2], VT.ARRAY, VT.STRING), "expected a str"),
    (lambda w: w.add("k", 1, VT.UINT32, VT.UINT8), "elem_type is only meaningful"),
    (lambda w: w.add("k", 1, 99), "unknown GGUF value type"),
    (lambda w: w.add("k", object()), "cannot infer"),
    (lambda w: w.add("k", np.zeros((2, 2))), "1-D"),
    (lambda w: w.add("general.alignment", 64), "GGUFWriter\\(alignment=...\\)"),
    (lambda w: w.add_tensor("dup", (32,), GGMLType.F32, np.zeros(32, np.float32)), "duplicate tensor name"),
    (lambda w: w.add_tensor("", (32,), GGMLType.F32, b""), "non-empty"),
    (lambda w: w.add_tensor("n" * 64, (32,), GGMLType.F32, b""), "at most 63"),
    (lambda w: w.add_tensor("t", (0, 32), GGMLType.F32, b""), "positive int dims"),
    (lambda w: w.add_tensor("t", (1, 1, 1, 1, 32), GGMLType.F32, b""), "1..4"),
    (lambda w: w.add_tensor("t", (2**32, 2**32), GGMLType.F32, b""), "2\\^63"),
    (lambda w: w.add_tensor("t", (32,), 39, b""), "unsupported ggml type 39"),
    (lambda w: w.add_tensor("t", (2, 100), GGMLType.TQ2_0, b""), "multiple of 256"),
    (lambda w: w.add_tensor("t", (32,), GGMLType.F32, np.zeros(32, np.float64)), "dtype float64 not accepted"),
    (lambda w: w.add_tensor("t", (4, 8), GGMLType.F32, np.zeros((8, 4), np.float32)), "shape \\(8, 4\\)"),
    (lambda w: w.add_tensor("t", (32,), GGMLType.F32, np.zeros(31 * 4, np.uint8)), "124 bytes, the tensor needs 128"),
    (lambda w: w.add_tensor("t", (32,), GGMLType.F32, [0.0] * 32), "got list"),
])
def test_invalid_input_is_rejected(tmp_path: Path, action: Callable[[GGUFWriter], None], match: str) -> None:
    with pytest.raises(GGUFError, match=match):
        action(_writer(tmp_path))


def test_bad_alignment_and_double_write(tmp_path: Path) -> None:
    for bad in (0, 3, 48, 2**32):
        with pytest.raises(GGUFError, match="power of two"):
            GGUFWriter(tmp_path / "x.gguf", alignment=bad)
    w = GGUFWriter(tmp_path / "x.gguf")
    w.write()
    with pytest.raises(GGUFError, match="already written"):
        w.write()


# ---------------------------------------------------------------------------------------------- gguf-py

class RawTensorReader(gguf.GGUFReader):
    """gguf-py's reader, keeping the raw tensor table: it rejects type ids it does not know (I2_S = 36)."""

    def _build_tensors(self, start_offs: int, fields: list) -> None:
        self.raw_tensors = [
            (str(bytes(f.parts[1]), "utf-8"), tuple(int(d) for d in f.parts[3]), int(f.parts[4][0]),
             start_offs + int(f.parts[5][0]))
            for f in fields
        ]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def test_our_files_read_identically_with_gguf_py(tmp_path: Path) -> None:
    path = tmp_path / "ours.gguf"
    flat = [t for t in TYPED_VALUES if t[0] != "arr.nested"]   # gguf-py flattens nested arrays
    tensors = encoded_tensors(seed=1)
    w = GGUFWriter(path, alignment=64)
    for key, value, vtype, elem, _ in flat:
        w.add(key, value, vtype, elem)
    for name, (shape, ggml_type, raw, _) in tensors.items():
        w.add_tensor(name, shape, ggml_type, raw)
    w.write()

    ref = RawTensorReader(path)
    assert ref.alignment == 64
    for key, _, vtype, elem, expected in flat:
        field = ref.fields[key]
        assert int(field.types[0]) == vtype, key
        if elem is not None and expected:
            assert int(field.types[-1]) == elem, key
        assert _same(field.contents(), expected), key
    with GGUFReader(path) as r:
        assert ref.raw_tensors == [(t.name, t.dims, int(t.ggml_type), t.offset) for t in r.tensors.values()]

    # without I2_S, gguf-py's full reader can decode every tensor itself
    path2 = tmp_path / "ours_no_i2s.gguf"
    w = GGUFWriter(path2)
    for name, (shape, ggml_type, raw, _) in tensors.items():
        if ggml_type != GGMLType.I2_S:
            w.add_tensor(name, shape, ggml_type, raw)
    w.write()
    for t in gguf.GGUFReader(path2).tensors:
        shape, ggml_type, raw, values = tensors[t.name]
        assert int(t.tensor_type) == ggml_type and tuple(reversed(t.shape.tolist())) == shape
        decoded = gq.dequantize(t.data, t.tensor_type).reshape(shape)
        np.testing.assert_array_equal(decoded, values)


def test_gguf_py_files_read_identically_with_ours(tmp_path: Path) -> None:
    path = tmp_path / "theirs.gguf"
    rng = np.random.default_rng(2)
    w = gguf.GGUFWriter(path, arch="bitnet-b1.58")
    w.add_custom_alignment(128)
    w.add_uint8("u8", 200)
    w.add_int8("i8", -5)
    w.add_uint16("u16", 60000)
    w.add_int16("i16", -30000)
    w.add_uint32("u32", 4000000000)
    w.add_int32("i32", -2000000000)
    w.add_uint64("u64", 2**64 - 2)
    w.add_int64("i64", -(2**62))
    w.add_float32("f32", 1e-5)
    w.add_float64("f64", math.pi)
    w.add_bool("b", True)
    w.add_string("s", "Human: {{ x }}\n\nBITNETAssistant: ✓")
    w.add_array("tokens", ["!", "Ġthe", "<|begin_of_text|>", "é"])
    w.add_key_value("scores", [0.0, -1.5, 2.25], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("types", [1, 3, 6], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("flags", [True, False], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)
    values = {}
    for qtype, shape in [(GGMLType.F32, (2, 3)), (GGMLType.F16, (4, 5)), (GGMLType.BF16, (2, 32)),
                         (GGMLType.Q8_0, (2, 64)), (GGMLType.TQ1_0, (1, 512)), (GGMLType.TQ2_0, (3, 256))]:
        x = rng.standard_normal(shape).astype(np.float32)
        name = f"w.{qtype.name}"
        if qtype == GGMLType.F32:
            w.add_tensor(name, x)
        elif qtype == GGMLType.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gq.quantize(x, gguf.GGMLQuantizationType(int(qtype))),
                         raw_dtype=gguf.GGMLQuantizationType(int(qtype)))
        values[name] = (qtype, shape)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    ref = gguf.GGUFReader(path)
    with GGUFReader(path) as r:
        assert r.alignment == 128 and r.data_offset == ref.data_offset
        for key, field in ref.fields.items():
            if key.startswith("GGUF."):
                continue
            assert int(r.metadata_types[key]) == int(field.types[0]), key
            if key in r.array_types:
                assert int(r.array_types[key]) == int(field.types[-1]), key
            assert _same(r.metadata[key], field.contents()), key
        assert r.metadata["f32"] == float(np.float32(1e-5)) and r.metadata["u64"] == 2**64 - 2
        assert r.metadata["tokens"] == ["!", "Ġthe", "<|begin_of_text|>", "é"]
        assert list(r.tensors) == [t.name for t in ref.tensors]
        for t in ref.tensors:
            info = r.tensors[t.name]
            qtype, shape = values[t.name]
            assert (info.ggml_type, info.shape, info.offset, info.nbytes) == (qtype, shape, t.data_offset, t.n_bytes)
            expected = gq.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            np.testing.assert_array_equal(r.dequantize(t.name), expected)
