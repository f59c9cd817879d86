"""Tensor codecs: known values, bit-exact agreement with gguf-py's quantizers, I2_S on the reference file."""
from __future__ import annotations

from pathlib import Path

import gguf
import gguf.quants as gq
import numpy as np
import pytest

from bitnet.errors import GGUFError
from bitnet.gguf import GGMLType, GGUFReader, quants

GQ = gguf.GGMLQuantizationType
ENCODERS = {GGMLType.TQ2_0: quants.quantize_tq2_0, GGMLType.TQ1_0: quants.quantize_tq1_0,
            GGMLType.Q8_0: quants.quantize_q8_0}


def awkward_weights(rows: int, cols: int, seed: int) -> np.ndarray:
    """Random weights plus the cases quantizers get wrong: exact rounding ties, all-zero blocks,
    a block whose extreme is negative, tiny and huge magnitudes."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[0, :32] = np.arange(-16, 16) + 0.5          # with absmax 127 (d = 1): exact .5 ties for Q8_0
    w[0, 0] = -127.0
    w[0, 32:64] = 0.0
    w[1, :256] = rng.choice(np.array([-2, -1, 0, 1, 2], dtype=np.float32), 256)   # ties at |w|/max = 0.5
    w[1, 7] = -2.0                                                                 # (ternary codecs)
    w[2, :256] = 0.0
    w[3, :] *= 1e-3
    w[3, 5] = 6e4
    return w


@pytest.mark.parametrize("ggml_type", list(ENCODERS))
def test_encoders_match_gguf_py_bit_for_bit(ggml_type: GGMLType) -> None:
    w = awkward_weights(4, 512, seed=int(ggml_type))
    ours = ENCODERS[ggml_type](w)
    theirs = gq.quantize(w, GQ(int(ggml_type))).reshape(-1)
    assert ours.dtype == np.uint8 and ours.size == quants.tensor_nbytes(ggml_type, w.shape)
    np.testing.assert_array_equal(ours, theirs)
    decoded = quants.dequantize(ours, ggml_type, w.shape)
    np.testing.assert_array_equal(decoded, gq.dequantize(theirs.reshape(4, -1), GQ(int(ggml_type))))


def test_bf16_matches_gguf_py_including_ties_and_nan() -> None:
    w = awkward_weights(4, 256, seed=3)
    # ties between two bf16 values: low 16 bits exactly 0x8000, with even and odd kept parts
    w[0, :4] = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7FC00001], dtype=np.uint32).view(np.float32)
    ours = quants.to_bf16(w)
    theirs = gq.quantize(w, GQ.BF16)
    np.testing.assert_array_equal(ours.view(np.uint8).reshape(theirs.shape), theirs)
    assert ours[0, :3].tolist() == [0x3F80, 0x3F82, 0xBF80]   # round half to even
    assert np.isnan(quants.from_bf16(ours[0, 3]))
    decoded = quants.dequantize(ours.view(np.uint8).reshape(-1), GGMLType.BF16, w.shape)
    np.testing.assert_array_equal(decoded[:, 4:], gq.dequantize(theirs, GQ.BF16)[:, 4:])


@pytest.mark.parametrize("ggml_type", [GGMLType.TQ2_0, GGMLType.TQ1_0])
def test_ternary_codecs_decode_known_values_exactly(ggml_type: GGMLType) -> None:
    # ternary x a float16-exact scale per block: the codecs must reproduce these values exactly
    rng = np.random.default_rng(1)
    ternary = rng.integers(-1, 2, size=(3, 512)).astype(np.float32)
    ternary[:, ::256] = 1.0                       # every block reaches its scale
    scales = np.array([0.5, 0.0625, 3.25], dtype=np.float32)[:, None]
    w = ternary * scales
    raw = ENCODERS[ggml_type](w)
    np.testing.assert_array_equal(quants.dequantize(raw, ggml_type, w.shape), w)


def test_tq2_0_layout_places_codes_low_bits_first() -> None:
    w = np.zeros((1, 256), dtype=np.float32)
    w[0, 128 + 32 * 2 + 5] = 1.0      # h=1, l=2, m=5 -> byte 32 + 5, bits 4..5 hold code 2
    raw = quants.quantize_tq2_0(w)
    assert raw[37] == (2 << 4) | (1 << 0) | (1 << 2) | (1 << 6)
    assert np.all(np.delete(raw[:64], 37) == 0b01010101)
    assert raw[64:66].view(np.float16)[0] == 1.0


def test_tq1_0_layout_stores_ceiled_base3_numbers() -> None:
    w = np.zeros((1, 256), dtype=np.float32)
    w[0, 0] = 1.0      # element 0 is the most significant digit of qs[0]: q = 2*81 + 1*(27+9+3+1)
    w[0, 255] = -1.0   # element 255 = 240 + 3 + 4*3: the last (x3-scaled) digit of qh[3]
    raw = quants.quantize_tq1_0(w)
    q0 = 2 * 81 + 27 + 9 + 3 + 1
    assert raw[0] == -(-q0 * 256 // 243)
    q_qh3 = (27 + 9 + 3 + 0) * 3     # digits 1,1,1,0 then x3
    assert raw[48 + 3] == -(-q_qh3 * 256 // 243)


def test_q8_0_decodes_known_values() -> None:
    # block absmax 127 gives d = 1 exactly, so integers encode as themselves
    w = np.concatenate([np.arange(-127, -95), np.arange(96, 128)]).astype(np.float32).reshape(2, 32)
    raw = quants.quantize_q8_0(w)
    assert raw[:2].view(np.float16)[0] == 1.0
    assert raw[2:34].view(np.int8).tolist() == list(range(-127, -95))
    np.testing.assert_array_equal(quants.dequantize_q8_0(raw, w.shape), w)
    halved = quants.dequantize_q8_0(quants.quantize_q8_0(w / 2), w.shape)
    np.testing.assert_array_equal(halved, w / 2)


# ---------------------------------------------------------------------------------------------- I2_S

def test_i2s_pack_places_each_element_per_the_x86_layout() -> None:
    for j in (0, 31, 32, 70, 127, 128 + 97):
        t = np.zeros((2, 128), dtype=np.int8)
        t.reshape(-1)[j] = 1
        raw = quants.pack_i2s(t, 0.5)
        block, k = divmod(j, 128)
        byte = 32 * block + k % 32
        shift = 6 - 2 * (k // 32)
        expected = np.full(64, 0b01010101, dtype=np.uint8)   # code 1 (= 0) everywhere
        expected[byte] = (0b01010101 & ~(3 << shift)) | (2 << shift)
        np.testing.assert_array_equal(raw[:64], expected)
        assert raw[64:68].view("<f4")[0] == 0.5 and not raw[68:].any()


def test_i2s_blocks_run_over_the_flat_index_across_rows() -> None:
    # rows of 192 (= 1.5 blocks of 128): row 1 starts mid-block, as for 1bitLLM-3B's 8640-wide FFN
    rng = np.random.default_rng(5)
    t = rng.integers(-1, 2, size=(2, 192)).astype(np.int8)
    raw = quants.pack_i2s(t, 0.125)
    back, scale = quants.unpack_i2s(raw, t.shape)
    np.testing.assert_array_equal(back, t)
    np.testing.assert_array_equal(quants.unpack_i2s(raw, (384,))[0], t.reshape(-1))
    assert scale == 0.125


def test_i2s_arm_layout_round_trips_and_differs() -> None:
    rng = np.random.default_rng(6)
    t = rng.integers(-1, 2, size=(4, 128)).astype(np.int8)
    arm = quants.pack_i2s(t, 1.5, layout="arm")
    assert not np.array_equal(arm, quants.pack_i2s(t, 1.5))
    t_first = np.zeros(64, dtype=np.int8)
    t_first[16] = 1                       # ARM: byte 0 holds elements 0, 16, 32, 48
    assert quants.pack_i2s(t_first, 1.0, layout="arm")[0] == (1 << 6) | (2 << 4) | (1 << 2) | 1
    back, scale = quants.unpack_i2s(arm, t.shape, layout="arm")
    np.testing.assert_array_equal(back, t)
    assert scale == 1.5


def test_i2s_code_3_decodes_as_zero() -> None:
    raw = np.zeros(128 // 4 + 32, dtype=np.uint8)
    raw[:32] = 0b11100100   # codes 3, 2, 1, 0
    raw[32:36] = np.array([2.0], dtype="<f4").view(np.uint8)
    t, scale = quants.unpack_i2s(raw, (128,))
    assert scale == 2.0
    assert t[:32].tolist() == [0] * 32 and t[32:64].tolist() == [1] * 32
    assert t[64:96].tolist() == [0] * 32 and t[96:].tolist() == [-1] * 32
    np.testing.assert_array_equal(quants.dequantize(raw, GGMLType.I2_S, (128,)), t.astype(np.float32) * 2)


def test_quantize_i2s_follows_bitnet_cpp() -> None:
    w = np.array([0.3, -0.3, 0.0, 5e-7, -5e-7, 0.2] * 64, dtype=np.float32)[:128]
    t, scale = quants.unpack_i2s(quants.quantize_i2s(w), w.shape)
    assert scale == np.float32(0.3)
    assert t[:6].tolist() == [1, -1, 0, 0, 0, 1]


def test_reference_i2s_tensors_unpack_and_repack(tinya_dir: Path) -> None:
    with GGUFReader(tinya_dir / "tinyA-i2s.gguf") as r:
        i2s = [t for t in r.tensors.values() if t.ggml_type == GGMLType.I2_S]
        assert len(i2s) == 14
        for info in i2s:
            raw = r.tensor_bytes(info.name)
            codes = quants.unpack_i2s_codes(raw, info.shape)
            assert set(np.unique(codes).tolist()) <= {0, 1, 2}, info.name
            assert len(np.unique(codes)) == 3, info.name
            ternary, scale = quants.unpack_i2s(raw, info.shape)
            assert scale > 0 and np.isfinite(scale)
            n = ternary.size
            repacked = quants.pack_i2s(ternary, scale)
            np.testing.assert_array_equal(repacked[: n // 4 + 4], raw[: n // 4 + 4])   # 28 tail bytes excepted
            np.testing.assert_array_equal(r.dequantize(info.name), ternary.astype(np.float32) * np.float32(scale))


# ---------------------------------------------------------------------------------------------- sizes, errors

def test_tensor_nbytes_per_type() -> None:
    assert quants.tensor_nbytes(GGMLType.I2_S, (2560, 6912)) == 2560 * 6912 // 4 + 32
    assert quants.tensor_nbytes(GGMLType.TQ2_0, (3, 512)) == 6 * 66
    assert quants.tensor_nbytes(GGMLType.TQ1_0, (3, 512)) == 6 * 54
    assert quants.tensor_nbytes(GGMLType.Q8_0, (5, 64)) == 10 * 34
    assert quants.tensor_nbytes(GGMLType.F16, (7, 3)) == 42
    assert quants.tensor_nbytes(GGMLType.BF16, (7,)) == 14
    assert quants.tensor_nbytes(GGMLType.F32, (7, 3)) == 84


@pytest.mark.parametrize("ggml_type, shape, match", [
    (GGMLType.TQ2_0, (2, 3200), "multiple of 256"),
    (GGMLType.TQ1_0, (2, 128), "multiple of 256"),
    (GGMLType.Q8_0, (2, 40), "multiple of 32"),
    (GGMLType.I2_S, (3, 40), "multiple of 128"),
    (GGMLType.F32, (0, 4), "invalid tensor shape"),
    (GGMLType.F32, (), "invalid tensor shape"),
])
def test_tensor_nbytes_rejects_bad_shapes(ggml_type: GGMLType, shape: tuple, match: str) -> None:
    with pytest.raises(GGUFError, match=match):
        quants.tensor_nbytes(ggml_type, shape)


def test_codecs_reject_bad_input() -> None:
    with pytest.raises(GGUFError, match="NaN"):
        quants.quantize_tq2_0(np.full((1, 256), np.nan, dtype=np.float32))
    with pytest.raises(GGUFError, match="multiple of 32"):
        quants.quantize_q8_0(np.ones((2, 48), dtype=np.float32))
    with pytest.raises(GGUFError, match="float16 range"):
        quants.quantize_tq2_0(np.full((1, 256), 1e6, dtype=np.float32))
    with pytest.raises(GGUFError, match=r"-1, 0 or \+1"):
        quants.pack_i2s(np.full(128, 2, dtype=np.int8), 1.0)
    with pytest.raises(GGUFError, match="integer array"):
        quants.pack_i2s(np.zeros(128, dtype=np.float32), 1.0)
    with pytest.raises(GGUFError, match="finite"):
        quants.pack_i2s(np.zeros(128, dtype=np.int8), float("inf"))
    with pytest.raises(GGUFError, match="expected 66 bytes, got 65"):
        quants.dequantize_tq2_0(np.zeros(65, dtype=np.uint8), (256,))
    with pytest.raises(GGUFError, match="expected 64 bytes"):
        quants.unpack_i2s(np.zeros(63, dtype=np.uint8), (128,))
    with pytest.raises(GGUFError, match="unknown I2_S layout"):
        quants.unpack_i2s(np.zeros(64, dtype=np.uint8), (128,), layout="riscv")
