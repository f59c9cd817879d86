"""Scalar reference kernels and light ops against independent numpy computations (docs/formats.md §3, §4).

The weight packers are written from the spec, independently of the C code (tests/helpers/kernel_cases.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import FLOAT_TYPES, float_case, pack_i2s, pack_tq1, pack_tq2

import bitnet.backends.cpu.kernels.testing as bk
from bitnet.errors import KernelError


def unpack_tq1(data: np.ndarray, M: int, K: int) -> np.ndarray:
    """Codes [M, K] decoded with the spec's digit formula ((uint8)(byte*3^n) * 3) >> 8."""
    blk = data.reshape(-1, 54)

    def digits(b: np.ndarray, n: int) -> np.ndarray:
        return ((b.astype(np.uint16) * 3 ** n % 256) * 3 >> 8).astype(np.int64)

    out = np.empty((blk.shape[0], 256), np.int64)
    for n in range(5):
        out[:, 32 * n:32 * n + 32] = digits(blk[:, :32], n)
        out[:, 160 + 16 * n:176 + 16 * n] = digits(blk[:, 32:48], n)
    for n in range(4):
        out[:, 240 + 4 * n:244 + 4 * n] = digits(blk[:, 48:52], n)
    return out.reshape(M, K)


# ---- numpy references ----


def np_quantize(x: np.ndarray) -> tuple[np.ndarray, np.float32, int]:
    amax = max(1e-5, float(np.abs(x.astype(np.float64)).max()))
    s = np.float32(127.0 / amax)
    q = np.clip(np.rint(x.astype(np.float32) * s), -128, 127).astype(np.int8)
    return q, s, int(q.astype(np.int64).sum())


def ternary_values(codes: np.ndarray, i2s: bool) -> np.ndarray:
    """codes -> ternary values: I2_S decodes code 3 as 0; TQ2_0 uses code - 1 for every code."""
    v = codes.astype(np.int64) - 1
    return np.where(codes == 3, 0, v) if i2s else v


def np_i2s(codes_mk: np.ndarray, wscale: float, q: np.ndarray, s: np.float32, qsum: int) -> np.ndarray:
    dot = ternary_values(codes_mk, True) @ q.astype(np.int64) + qsum  # sum code*q = sum (v+1) q
    return ((dot.astype(np.float32) - np.float32(qsum)) / s * np.float32(wscale)).astype(np.float32)


def np_tq(codes_mk: np.ndarray, d: np.ndarray, q: np.ndarray, s: np.float32) -> np.ndarray:
    """Block by block in float32 (two roundings per block), as FORMATS / the scalar reference define it."""
    M, K = codes_mk.shape
    vals = codes_mk.astype(np.int64) - 1
    acc = np.zeros(M, np.float32)
    df = np.asarray(d, np.float16).astype(np.float32).reshape(M, -1)
    for b in range(K // 256):
        sl = slice(256 * b, 256 * b + 256)
        blk = (vals[:, sl] @ q[sl].astype(np.int64)).astype(np.float32)
        acc = (acc + (df[:, b] * blk).astype(np.float32)).astype(np.float32)
    return acc / s


# ---- tests: quantization ----


def test_quantize_matches_numpy_including_ties() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1000)).astype(np.float32) * np.float32([[0.01], [1.0], [300.0]])
    # exact ties: amax 127 makes s == 1, so x.5 values hit round-half-to-even
    x = np.concatenate([x, np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5] + [0.0] * 993], np.float32)])
    q, scale, qsum = bk.quantize_act(x, variant="scalar")
    for t in range(4):
        wq, ws, wsum = np_quantize(x[t])
        np.testing.assert_array_equal(q[t], wq)
        assert scale[t] == ws and qsum[t] == wsum
    assert list(q[3, :7]) == [127, 0, 2, 2, 0, -2, -2]


def test_quantize_tiny_input_uses_the_amax_floor() -> None:
    x = np.full(64, 1e-9, np.float32)
    q, scale, _ = bk.quantize_act(x, variant="scalar")
    assert scale[0] == np.float32(127.0 / 1e-5)
    np.testing.assert_array_equal(q[0], np_quantize(x)[0])


# ---- tests: ternary formats, scalar reference ----


@pytest.mark.parametrize("K,M", [(256, 6), (640, 5), (96, 8), (8640, 4)])
def test_i2s_scalar_matches_numpy(K: int, M: int) -> None:
    """Includes rows that start mid-block (K % 128 != 0) and code 3, which must decode as 0."""
    rng = np.random.default_rng(K)
    codes = rng.integers(0, 4, M * K).astype(np.uint8)
    data = pack_i2s(codes, 0.37, rng)
    x = rng.standard_normal((3, K)).astype(np.float32)
    y = bk.ternary_matmul(data, bk.GGML_I2_S, K, M, x, variant="scalar")
    for t in range(3):
        q, s, qsum = np_quantize(x[t])
        np.testing.assert_array_equal(y[t], np_i2s(codes.reshape(M, K), 0.37, q, s, qsum))
    y1 = bk.ternary_matmul(data, bk.GGML_I2_S, K, M, x[1], variant="scalar")
    np.testing.assert_array_equal(y1, y[1])


def test_i2s_scalar_code3_reads_as_zero() -> None:
    K, M = 128, 1
    x = np.linspace(-1, 1, K).astype(np.float32)
    y3 = bk.ternary_matmul(pack_i2s(np.full(K, 3, np.uint8), 1.0), bk.GGML_I2_S, K, M, x, variant="scalar")
    y1 = bk.ternary_matmul(pack_i2s(np.full(K, 1, np.uint8), 1.0), bk.GGML_I2_S, K, M, x, variant="scalar")
    assert y3[0] == y1[0] == 0.0


def test_tq2_scalar_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    M, K = 5, 768
    codes = rng.integers(0, 4, (M, K)).astype(np.uint8)  # code 3 is (3 - 1) = +2, as llama.cpp decodes it
    d = rng.uniform(0.01, 0.1, (M, K // 256)).astype(np.float16)
    data = pack_tq2(codes, d)
    x = rng.standard_normal((2, K)).astype(np.float32)
    y = bk.ternary_matmul(data, bk.GGML_TQ2_0, K, M, x, variant="scalar")
    for t in range(2):
        q, s, _ = np_quantize(x[t])
        np.testing.assert_array_equal(y[t], np_tq(codes, d, q, s))


def test_tq1_packer_round_trips_with_the_spec_decoder() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 3, (4, 512)).astype(np.uint8)
    data = pack_tq1(codes, np.ones((4, 2), np.float16))
    np.testing.assert_array_equal(unpack_tq1(data, 4, 512), codes)


def test_tq1_scalar_matches_numpy() -> None:
    rng = np.random.default_rng(8)
    M, K = 4, 512
    codes = rng.integers(0, 3, (M, K)).astype(np.uint8)
    d = rng.uniform(0.01, 0.1, (M, K // 256)).astype(np.float16)
    data = pack_tq1(codes, d)
    x = rng.standard_normal((3, K)).astype(np.float32)
    y = bk.ternary_matmul(data, bk.GGML_TQ1_0, K, M, x, variant="scalar")
    for t in range(3):
        q, s, _ = np_quantize(x[t])
        np.testing.assert_array_equal(y[t], np_tq(codes, d, q, s))


# ---- tests: float-weight matmuls, scalar reference ----




@pytest.mark.parametrize("ggml_type", FLOAT_TYPES)
def test_float_matmul_scalar_matches_numpy(ggml_type: int) -> None:
    rng = np.random.default_rng(ggml_type)
    M, K = 7, 96
    raw, w = float_case(ggml_type, M, K, rng)
    x = rng.standard_normal((3, K)).astype(np.float32)
    y = bk.float_matmul(raw, ggml_type, K, M, x, variant="scalar")
    want = x.astype(np.float64) @ w.T
    bound = np.abs(x.astype(np.float64)) @ np.abs(w.T) * K * 2.0 ** -23
    assert np.all(np.abs(y - want) <= bound + 1e-6)
    np.testing.assert_array_equal(bk.float_matmul(raw, ggml_type, K, M, x[2], variant="scalar"), y[2])


@pytest.mark.parametrize("ggml_type", FLOAT_TYPES)
def test_dequant_row_matches_numpy(ggml_type: int) -> None:
    rng = np.random.default_rng(10 + ggml_type)
    raw, w = float_case(ggml_type, 4, 64, rng)
    np.testing.assert_array_equal(bk.dequant_row(ggml_type, raw, 64, 2), w[2].astype(np.float32))


# ---- tests: attention and light ops ----


def np_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    hd = q.size
    sc = k[:, :hd].astype(np.float64) @ q.astype(np.float64) * scale
    p = np.exp(sc - sc.max())
    p /= p.sum()
    return p @ v[:, :hd].astype(np.float64)


def test_attention_scalar_matches_numpy_with_row_stride() -> None:
    rng = np.random.default_rng(11)
    hd, n_kv, stride = 64, 37, 80
    q = rng.standard_normal(hd).astype(np.float32)
    k = rng.standard_normal((n_kv, stride)).astype(np.float16)
    v = rng.standard_normal((n_kv, stride)).astype(np.float16)
    out = bk.attention(q, k, v, 1 / 8, variant="scalar")
    np.testing.assert_allclose(out, np_attention(q, k, v, 1 / 8), rtol=1e-5, atol=1e-5)


def _q8_rows_as_float(rows: np.ndarray, hd: int) -> np.ndarray:
    """Q8_0 rows [n, hd/32*34] -> their values d * q, [n, hd] (docs/formats.md)."""
    blocks = rows.reshape(rows.shape[0], hd // 32, 34)
    d = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)
    return (d * blocks[:, :, 2:].view(np.int8).astype(np.float32)).reshape(rows.shape[0], hd)


def test_attention_q8_scalar_matches_numpy_on_the_dequantized_cache() -> None:
    rng = np.random.default_rng(12)
    hd, n_kv = 64, 41
    q = rng.standard_normal((2, hd)).astype(np.float32)
    k = bk.encode_q80_rows(rng.standard_normal((n_kv, hd)))
    v = bk.encode_q80_rows(rng.standard_normal((n_kv, hd)))
    out, ml = bk.attention_q8(q, k, v, 1 / 8, variant="scalar", with_ml=True)
    kf, vf = _q8_rows_as_float(k, hd), _q8_rows_as_float(v, hd)
    for h in range(2):
        np.testing.assert_allclose(out[h], np_attention(q[h], kf, vf, 1 / 8), rtol=1e-5, atol=1e-5)
        scores = kf.astype(np.float64) @ q[h].astype(np.float64) / 8
        np.testing.assert_allclose(ml[h], [scores.max(), np.exp(scores - scores.max()).sum()], rtol=1e-5)


def test_attention_of_spans_merged_in_order_equals_the_whole() -> None:
    """Flash-decoding's fold: the positions cut into spans, each span's attention with its max and sum, folded
    left to right, give the attention over all of them (to rounding); one span is returned unchanged."""
    rng = np.random.default_rng(13)
    hd, n_kv = 64, 300
    q = rng.standard_normal((2, hd)).astype(np.float32) * 3
    k = rng.standard_normal((n_kv, hd)).astype(np.float16)
    v = rng.standard_normal((n_kv, hd)).astype(np.float16)
    whole, whole_ml = bk.attention(q, k, v, 1 / 8, variant="scalar", with_ml=True)
    cuts = [0, 7, 128, 256, 300]
    spans = [bk.attention(q, k[a:b], v[a:b], 1 / 8, variant="scalar", with_ml=True) for a, b in zip(cuts, cuts[1:])]
    merged = bk.attention_merge(np.stack([o for o, _ in spans]), np.stack([m for _, m in spans]))
    np.testing.assert_allclose(merged, whole, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(merged, spans[0][0])
    np.testing.assert_array_equal(bk.attention_merge(whole[None], whole_ml[None]), whole)


@pytest.mark.parametrize("q_shape,kv_shape", [((0,), (3, 8)), ((2, 0), (3, 8)), ((2, 3, 4), (3, 8)),
                                               ((8,), (0, 8)), ((16,), (3, 8)), ((2, 8), (3,))])
def test_attention_rejects_bad_shapes(q_shape: tuple, kv_shape: tuple) -> None:
    k = np.zeros(kv_shape, np.float16)
    with pytest.raises(ValueError, match="q must|k and v must"):
        bk.attention(np.zeros(q_shape, np.float32), k, k, 1.0)


def test_rmsnorm_matches_numpy() -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal(2560).astype(np.float32) * 3
    w = rng.standard_normal(2560).astype(np.float32)
    mean = np.float32(np.mean(x.astype(np.float64) ** 2))
    want = (x * (np.float32(1.0) / np.sqrt(mean + np.float32(1e-5)))) * w
    np.testing.assert_allclose(bk.rmsnorm(x, w, 1e-5), want, rtol=2e-7, atol=0)
    np.testing.assert_allclose(bk.rmsnorm(x, None, 1e-5), want / w, rtol=1e-6)


@pytest.mark.parametrize("neox", [True, False])
def test_rope_matches_numpy(neox: bool) -> None:
    rng = np.random.default_rng(13)
    heads, hd, rd, pos, base = 3, 64, 48, 1234, 500000.0
    x = rng.standard_normal((heads, hd)).astype(np.float32)
    theta = pos * base ** (-2.0 * np.arange(rd // 2) / rd)
    c, s = np.cos(theta), np.sin(theta)
    want = x.astype(np.float64).copy()
    i0 = np.arange(rd // 2) if neox else 2 * np.arange(rd // 2)
    i1 = i0 + rd // 2 if neox else i0 + 1
    a, b = x[:, i0].astype(np.float64), x[:, i1].astype(np.float64)
    want[:, i0], want[:, i1] = a * c - b * s, a * s + b * c
    out = bk.rope(x, pos, base, rope_dim=rd, neox=neox)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, rd:], x[:, rd:])  # beyond rope_dim: untouched


def test_softmax_and_activations_match_numpy() -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal(300).astype(np.float32) * 10
    e = np.exp(x.astype(np.float64) - x.max())
    np.testing.assert_allclose(bk.softmax(x), e / e.sum(), rtol=1e-5, atol=1e-9)
    assert np.all(bk.softmax(np.full(4, -np.inf, np.float32)) == 0)
    g, u = x[:150], x[150:]
    np.testing.assert_allclose(bk.relu2_mul(g, u), np.maximum(g, 0) ** 2 * u, rtol=1e-6)
    np.testing.assert_allclose(bk.silu_mul(g, u), g / (1 + np.exp(-g.astype(np.float64))) * u, rtol=1e-5,
                               atol=1e-6)


def test_f16_conversions_round_to_nearest_even_everywhere() -> None:
    bits = np.arange(1 << 16, dtype=np.uint32)
    # every half, plus the float midpoint above each one (a tie) and a hair either side of it
    halves = bits.astype(np.uint16).view(np.float16)
    finite = np.isfinite(halves)
    f = halves.astype(np.float32)
    np.testing.assert_array_equal(bk.f16_to_f32(halves).view(np.uint32), f.view(np.uint32))
    with np.errstate(over="ignore"):  # the step above 65504 is inf; numpy's own cast overflows to inf too
        up = np.nextafter(halves[finite], np.float16(np.inf)).astype(np.float64)
        mids = (f[finite].astype(np.float64) + up) / 2
        below = np.nextafter(mids.astype(np.float32), np.float32(0))
        special = np.float32([1e-30, 7e-8, 3e-8, 65519.0, 65520.0, 1e10, -1e10, np.inf, -np.inf])
        probe = np.concatenate([f, mids.astype(np.float32), below, special])
        probe = probe[~np.isnan(probe)]
        want = probe.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(bk.f32_to_f16(probe).view(np.uint16), want)
    assert np.isnan(bk.f32_to_f16(np.float32([np.nan]))[0])


def test_bf16_to_f32_is_a_shift() -> None:
    bits = np.array([0x3f80, 0xc000, 0x0001, 0x7f80], np.uint16)
    np.testing.assert_array_equal(bk.bf16_to_f32(bits), (bits.astype(np.uint32) << 16).view(np.float32))


# ---- tests: argument checking ----


def test_bad_arguments_give_clear_errors() -> None:
    x = np.zeros(128, np.float32)
    with pytest.raises(ValueError, match="needs 36 bytes"):
        bk.ternary_matmul(np.zeros(10, np.uint8), bk.GGML_I2_S, 128, 1, x)
    with pytest.raises(ValueError, match="multiple of 128"):
        bk.ternary_matmul(np.zeros(100, np.uint8), bk.GGML_I2_S, 100, 1, np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="multiple of 256"):
        bk.ternary_matmul(np.zeros(100, np.uint8), bk.GGML_TQ2_0, 128, 1, x)
    with pytest.raises(ValueError, match="shape"):
        bk.ternary_matmul(pack_i2s(np.zeros(128, np.uint8), 1.0), bk.GGML_I2_S, 128, 1,
                          np.zeros(64, np.float32))
    with pytest.raises(KernelError, match="ggml type"):
        bk.ternary_matmul(np.zeros(64, np.uint8), bk.GGML_F16, 128, 1, x)
    with pytest.raises(KernelError, match="valid variants"):
        bk.quantize_act(x, variant="sse9")


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_stream_read_reads_every_word_once(n_threads):
    """The benchmark's bandwidth probe must really read everything (its sum proves it), whatever the split."""
    from bitnet.backends.cpu.kernels import _kernels

    data = np.arange(1, 100_003, dtype=np.uint64)
    assert _kernels.stream_read(data, n_threads) == int(data.sum())


def test_the_type_ids_the_c_code_reads_are_those_of_the_format_module() -> None:
    """Every ggml type id is stated once for Python and Cython (bitnet.gguf.constants); the C code's own names for
    the ones it reads must agree with it."""
    from bitnet.backends.cpu.kernels import _kernels
    from bitnet.gguf.constants import GGMLType

    assert _kernels.C_TYPE_IDS == {name: int(GGMLType[name]) for name in _kernels.C_TYPE_IDS}
    assert set(_kernels.C_TYPE_IDS) == {"F32", "F16", "Q8_0", "BF16"}
