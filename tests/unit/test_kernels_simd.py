"""Every SIMD variant this CPU runs, against the scalar reference.

Integer results (the ternary dots) must be bit-exact, including on adversarial activations that would wrap an
int16 accumulator; the I2_S and TQ outputs are even bit-identical to the scalar reference because every
variant shares the float finishing steps. Float-weight matmuls and attention agree to a tight tolerance.
"""
from __future__ import annotations

import platform

import numpy as np
import pytest
from conftest import HARDWARE
from kernel_cases import FLOAT_TYPES, float_case, pack_i2s, pack_tq1, pack_tq2

import bitnet.backends.cpu.kernels.testing as bk

SIMD = [v for v in bk.VARIANTS if v != "scalar"]
_WHY = {"avx2": "needs AVX2+FMA+F16C", "avx512": "needs AVX-512 F/BW/VL/VNNI",
        "amx": "needs AVX-512 VNNI, AMX-TILE/INT8 and the OS's leave to use the tiles",
        "neon": "needs an aarch64 build", "wasm": "needs a wasm SIMD128 build", "amx-model": "is portable C"}


# amx-model (the AMX loop nest on a C model of the tiles) is built for, and runs on, every architecture
_ARCH = {"avx2": "x86_64", "avx512": "x86_64", "amx": "x86_64", "amd64": "x86_64", "neon": "aarch64",
         "arm64": "aarch64", "wasm": "wasm32"}


def _variant_params() -> list:
    params = []
    for v in SIMD:
        runs = v in bk.supported_variants()
        built = "compiled in, but this CPU lacks them" if v in bk.compiled_variants() else "not in this build"
        # a variant of this architecture missing from the build is a build fault, not hardware CI may lack
        here = _ARCH.get(platform.machine().lower(), platform.machine().lower())
        other_arch = _ARCH.get(v, here) != here
        prefix = HARDWARE if v in bk.compiled_variants() or other_arch else ""
        reason = f"{prefix}{v} kernels cannot run here: {_WHY[v]} ({built})"
        params.append(pytest.param(v, marks=pytest.mark.skipif(not runs, reason=reason)))
    return params


VARIANTS = _variant_params()


def _ternary_case(fmt: int, M: int, K: int, rng: np.random.Generator, code_max: int = 3) -> np.ndarray:
    if fmt == bk.GGML_I2_S:
        return pack_i2s(rng.integers(0, code_max + 1, M * K).astype(np.uint8), 0.61, rng)
    d = rng.uniform(0.005, 0.1, (M, K // 256)).astype(np.float16)
    if fmt == bk.GGML_TQ2_0:
        return pack_tq2(rng.integers(0, code_max + 1, (M, K)).astype(np.uint8), d)
    return pack_tq1(rng.integers(0, min(code_max, 2) + 1, (M, K)).astype(np.uint8), d)


@pytest.mark.parametrize("variant", VARIANTS)
def test_quantize_act_is_bit_identical(variant: str) -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 31, 32, 33, 100, 2560, 6912):
        x = (rng.standard_normal((2, n)) * rng.uniform(0.001, 100)).astype(np.float32)
        x[1, n // 2] = 1e4  # one huge outlier
        ws = bk.quantize_act(x, variant="scalar")
        got = bk.quantize_act(x, variant=variant)
        for a, b in zip(got, ws):
            np.testing.assert_array_equal(a, b)
    ties = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -126.5, 126.5] * 8, np.float32)
    np.testing.assert_array_equal(bk.quantize_act(ties, variant=variant)[0],
                                  bk.quantize_act(ties, variant="scalar")[0])


I2S_SHAPES = [(128, 6), (640, 10), (384, 9), (96, 12), (32, 12), (8640, 6), (2560, 20), (6912, 4)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("K,M", I2S_SHAPES)
def test_i2s_matches_scalar(variant: str, K: int, M: int) -> None:
    rng = np.random.default_rng(K * 31 + M)
    data = _ternary_case(bk.GGML_I2_S, M, K, rng)
    for T in (1, 2, 3, 4, 5, 9):
        x = rng.standard_normal((T, K)).astype(np.float32)
        want = bk.ternary_matmul(data, bk.GGML_I2_S, K, M, x, variant="scalar")
        np.testing.assert_array_equal(bk.ternary_matmul(data, bk.GGML_I2_S, K, M, x, variant=variant), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", [bk.GGML_TQ2_0, bk.GGML_TQ1_0])
@pytest.mark.parametrize("K,M", [(256, 5), (768, 7), (2560, 3), (17408, 3)])  # 68 blocks: two runs
def test_tq_matches_scalar(variant: str, fmt: int, K: int, M: int) -> None:
    rng = np.random.default_rng(K + M + fmt)
    data = _ternary_case(fmt, M, K, rng)
    for T in (1, 3, 4, 6):
        x = rng.standard_normal((T, K)).astype(np.float32)
        want = bk.ternary_matmul(data, fmt, K, M, x, variant="scalar")
        np.testing.assert_array_equal(bk.ternary_matmul(data, fmt, K, M, x, variant=variant), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", [bk.GGML_I2_S, bk.GGML_TQ2_0, bk.GGML_TQ1_0])
def test_row_ranges_gemv_and_gemm_agree(variant: str, fmt: int) -> None:
    """Row ranges starting anywhere (3 rows per call; with K=8640, I2_S rows 3, 9, ... start mid-block), and
    a single token through gemv and gemm gives identical results."""
    K = 8640 if fmt == bk.GGML_I2_S else 1280
    M = 12
    rng = np.random.default_rng(fmt)
    data = _ternary_case(fmt, M, K, rng)
    q = rng.integers(-128, 128, (1, K)).astype(np.int8)
    args = (data, fmt, K, M, q, np.float32(0.7), int(q.astype(np.int64).sum()))
    want = bk.ternary_matmul_q(*args, variant="scalar")
    gemv = bk.ternary_matmul_q(*args, variant=variant, row_chunk=3)
    gemm = bk.ternary_matmul_q(*args, variant=variant, row_chunk=3, gemm=True)
    np.testing.assert_array_equal(gemv, want)
    np.testing.assert_array_equal(gemm, gemv)


def _exact_dot(fmt: int, codes_value: int, qv: int, K: int) -> float:
    """The integer a kernel must produce for constant codes and activations (scale 1, see below)."""
    if fmt == bk.GGML_I2_S:
        return float(codes_value * qv * K)  # with qsum=0 passed in, y = dot = sum code*q
    return float((codes_value - 1) * qv * K)  # TQ: d = 1, y = sum (code - 1) q


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", [bk.GGML_I2_S, bk.GGML_TQ2_0, bk.GGML_TQ1_0])
@pytest.mark.parametrize("qv", [-128, 127])
@pytest.mark.parametrize("K,M", [(65536, 2), (1 << 20, 1)])
def test_extreme_activations_do_not_wrap(variant: str, fmt: int, qv: int, K: int, M: int) -> None:
    """All codes at their maximum against all activations at -128 or 127, up to K = 2^20: every int16 partial
    sum of such products would wrap after 64..128 elements. With scale 1, (for I2_S) sum 0 and wscale 1 the
    output is the exact integer: |dot| <= 2^28 and every partial sum is a multiple of 2^8 * 127 or 2^8 * 128
    below 2^28, so float32 holds each exactly."""
    cmax = 2 if fmt != bk.GGML_TQ2_0 else 3
    if fmt == bk.GGML_I2_S:
        data = pack_i2s(np.full(M * K, cmax, np.uint8), 1.0)
    elif fmt == bk.GGML_TQ2_0:
        data = pack_tq2(np.full((M, K), cmax, np.uint8), np.ones((M, K // 256), np.float16))
    else:
        data = pack_tq1(np.full((M, K), cmax, np.uint8), np.ones((M, K // 256), np.float16))
    q = np.full((2, K), qv, np.int8)
    want = _exact_dot(fmt, cmax, qv, K)
    for gemm in (False, True):
        qt = q[:2] if gemm else q[:1]
        got = bk.ternary_matmul_q(data, fmt, K, M, qt, np.float32(1.0), 0, variant=variant, gemm=gemm)
        assert np.all(got == np.float32(want)), (got, want)
        ref = bk.ternary_matmul_q(data, fmt, K, M, qt, np.float32(1.0), 0, variant="scalar")
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_int8_activations_are_exact(variant: str) -> None:
    """Arbitrary int8 (including -128, which the quantizer itself never produces) at 2B4T-like shapes."""
    rng = np.random.default_rng(5)
    for K, M in ((2560, 8), (6912, 5), (8640, 4)):
        data = _ternary_case(bk.GGML_I2_S, M, K, rng)
        q = rng.integers(-128, 128, (5, K)).astype(np.int8)
        q[0] = -128
        args = (data, bk.GGML_I2_S, K, M, q, np.float32(1.0), 0)
        np.testing.assert_array_equal(bk.ternary_matmul_q(*args, variant=variant),
                                      bk.ternary_matmul_q(*args, variant="scalar"))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ggml_type", FLOAT_TYPES)
@pytest.mark.parametrize("K,M", [(256, 9), (2560, 5), (100, 7)])
def test_float_matmul_matches_scalar(variant: str, ggml_type: int, K: int, M: int) -> None:
    if ggml_type == bk.GGML_Q8_0 and K % 32:      # Q8_0 rows are whole 32-element blocks: refused, by name
        with pytest.raises(ValueError, match="Q8_0 needs K to be a multiple of 32"):
            bk.float_matmul(bytes(M * 34 * 4), ggml_type, K, M, np.zeros(K, np.float32), variant=variant)
        return
    rng = np.random.default_rng(K * 7 + M + ggml_type)
    raw, w = float_case(ggml_type, M, K, rng)
    for T in (1, 2, 3, 4, 5, 11):
        x = rng.standard_normal((T, K)).astype(np.float32)
        got = bk.float_matmul(raw, ggml_type, K, M, x, variant=variant)
        want = bk.float_matmul(raw, ggml_type, K, M, x, variant="scalar")
        # both orders of float summation are within K * eps * sum|w x| of the exact value
        bound = np.abs(x.astype(np.float64)) @ np.abs(w.T) * K * 2.0 ** -23
        assert np.all(np.abs(got - want) <= bound + 1e-6)
        assert np.allclose(got, x.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("hd,n_kv,stride",
                         [(128, 1, 128), (128, 300, 640), (64, 17, 64), (72, 5, 80), (20, 3, 20)])
def test_attention_matches_scalar(variant: str, hd: int, n_kv: int, stride: int) -> None:
    rng = np.random.default_rng(hd + n_kv)
    q = rng.standard_normal(hd).astype(np.float32)
    k = rng.standard_normal((n_kv, stride)).astype(np.float16)
    v = rng.standard_normal((n_kv, stride)).astype(np.float16)
    got = bk.attention(q, k, v, hd ** -0.5, variant=variant)
    np.testing.assert_allclose(got, bk.attention(q, k, v, hd ** -0.5, variant="scalar"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_q,hd,n_kv,stride", [(2, 128, 300, 640), (3, 64, 9, 64), (4, 72, 5, 80), (5, 20, 3, 20)])
def test_attention_head_groups_equal_heads_one_by_one(variant: str, n_q: int, hd: int, n_kv: int,
                                                     stride: int) -> None:
    """The heads of a GQA group in one call (each K/V vector converted once for two of them) give exactly what
    each head gives alone, and agree with the scalar reference."""
    rng = np.random.default_rng(n_q * hd + n_kv)
    q = rng.standard_normal((n_q, hd)).astype(np.float32)
    k = rng.standard_normal((n_kv, stride)).astype(np.float16)
    v = rng.standard_normal((n_kv, stride)).astype(np.float16)
    got = bk.attention(q, k, v, hd ** -0.5, variant=variant)
    alone = np.stack([bk.attention(q[h], k, v, hd ** -0.5, variant=variant) for h in range(n_q)])
    np.testing.assert_array_equal(got, alone)
    np.testing.assert_allclose(got, bk.attention(q, k, v, hd ** -0.5, variant="scalar"), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("avx512" not in bk.supported_variants() or "avx2" not in bk.supported_variants(),
                    reason=f"{HARDWARE}the 512-bit attention runs on AVX-512 machines only")
@pytest.mark.parametrize("n_q,hd,n_kv,stride", [(4, 128, 256, 128), (4, 128, 4000, 128), (4, 128, 13, 640),
                                                (1, 64, 1, 64), (2, 64, 17, 80), (5, 32, 9, 32), (8, 128, 100, 128),
                                                (3, 48, 7, 48), (4, 72, 5, 80), (8, 64, 3, 64), (12, 48, 5, 64),
                                                (16, 128, 255, 128), (20, 48, 37, 64), (64, 128, 256, 128)])
def test_attention_avx512_gives_the_avx2_bits(n_q: int, hd: int, n_kv: int, stride: int) -> None:
    """The AVX-512 f16 attention runs the 256-bit body's float operations in 512-bit registers (two positions a
    vector for the scores, 16 dims a vector for the weighted sum): the same outputs, max and sum, bit for bit, for
    every group size, span length (partial last blocks) and head_dim (48: 16-dim passes only; 72: not a multiple
    of 16, the 256-bit body's own path); eight heads and more (a prompt's tokens sharing a span) go eight at a
    time."""
    rng = np.random.default_rng(n_q * 1000 + n_kv)
    q = rng.standard_normal((n_q, hd)).astype(np.float32)
    k = (rng.standard_normal((n_kv, stride)) * 2).astype(np.float16)
    v = rng.standard_normal((n_kv, stride)).astype(np.float16)
    got, got_ml = bk.attention(q, k, v, hd ** -0.5, variant="avx512", with_ml=True)
    want, want_ml = bk.attention(q, k, v, hd ** -0.5, variant="avx2", with_ml=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_ml, want_ml)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_q,hd,n_kv,stride", [(4, 128, 256, 128), (4, 128, 13, 640), (8, 128, 100, 128),
                                                (2, 32, 37, 32), (4, 48, 9, 48), (3, 72, 5, 80), (2, 4, 7, 4)])
@pytest.mark.parametrize("ahead_bytes", [1, 4096, 65536, 200000])
def test_attention_fetching_ahead_changes_nothing(variant: str, n_q: int, hd: int, n_kv: int, stride: int,
                                                  ahead_bytes: int) -> None:
    """The hint of the caller's next span (fetched during the weighted sum, spread over its passes: one, several,
    the 16-dim tail passes, or none when head_dim < 8) never changes a bit of the outputs, the max or the sum,
    whatever its size."""
    rng = np.random.default_rng(n_q * hd + n_kv)
    q = rng.standard_normal((n_q, hd)).astype(np.float32)
    k = rng.standard_normal((n_kv, stride)).astype(np.float16)
    v = rng.standard_normal((n_kv, stride)).astype(np.float16)
    ahead = rng.integers(0, 255, ahead_bytes, dtype=np.uint8)
    want, want_ml = bk.attention(q, k, v, hd ** -0.5, variant=variant, with_ml=True)
    got, got_ml = bk.attention(q, k, v, hd ** -0.5, variant=variant, with_ml=True, ahead=ahead)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_ml, want_ml)
    if hd % 32 == 0:
        k8, v8 = bk.encode_q80_rows(k[:, :hd].astype(np.float32)), bk.encode_q80_rows(v[:, :hd].astype(np.float32))
        want = bk.attention_q8(q, k8, v8, hd ** -0.5, variant=variant)
        np.testing.assert_array_equal(bk.attention_q8(q, k8, v8, hd ** -0.5, variant=variant, ahead=ahead), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_kv", [8, 13, 1000])
def test_attention_softmax_over_a_wide_score_range(variant: str, n_kv: int) -> None:
    """Scores spread over hundreds: most exponentials underflow (the SIMD softmax flushes below e^-87.3 to 0
    where libm gives denormals), a few dominate; the outputs still agree with the scalar reference."""
    rng = np.random.default_rng(n_kv)
    q = rng.standard_normal(128).astype(np.float32)
    k = (rng.standard_normal((n_kv, 128)) * 40).astype(np.float16)
    v = rng.standard_normal((n_kv, 128)).astype(np.float16)
    got = bk.attention(q, k, v, 128 ** -0.5, variant=variant)
    np.testing.assert_allclose(got, bk.attention(q, k, v, 128 ** -0.5, variant="scalar"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_q,hd,n_kv", [(1, 128, 1), (4, 128, 256), (3, 64, 37), (2, 32, 9)])
def test_attention_q8_matches_scalar(variant: str, n_q: int, hd: int, n_kv: int) -> None:
    """The Q8_0-cache attention (the 8-bit KV cache) against the scalar reference, with the max and sum of
    exponentials that spans are merged with; heads in a group (fours on AVX-512) give what each gives alone."""
    rng = np.random.default_rng(n_q * hd + n_kv)
    q = rng.standard_normal((n_q, hd)).astype(np.float32)
    k = bk.encode_q80_rows(rng.standard_normal((n_kv, hd)) * rng.uniform(0.1, 10, (n_kv, 1)))
    v = bk.encode_q80_rows(rng.standard_normal((n_kv, hd)))
    got, ml = bk.attention_q8(q, k, v, hd ** -0.5, variant=variant, with_ml=True)
    want, want_ml = bk.attention_q8(q, k, v, hd ** -0.5, variant="scalar", with_ml=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, np.stack([bk.attention_q8(q[h], k, v, hd ** -0.5, variant=variant)
                                                 for h in range(n_q)]))
    np.testing.assert_allclose(ml, want_ml, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_reports_the_max_and_sum_of_the_scalar_reference(variant: str) -> None:
    rng = np.random.default_rng(21)
    q = rng.standard_normal((4, 128)).astype(np.float32)
    k = rng.standard_normal((257, 640)).astype(np.float16)
    v = rng.standard_normal((257, 640)).astype(np.float16)
    _, ml = bk.attention(q, k, v, 128 ** -0.5, variant=variant, with_ml=True)
    np.testing.assert_allclose(ml, bk.attention(q, k, v, 128 ** -0.5, variant="scalar", with_ml=True)[1], rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_simd_kernels_record_that_they_ran(variant: str) -> None:
    rng = np.random.default_rng(9)
    data = _ternary_case(bk.GGML_I2_S, 4, 256, rng)
    bk.reset_ran()
    x = rng.standard_normal(256).astype(np.float32)
    bk.ternary_matmul(data, bk.GGML_I2_S, 256, 4, x, variant=variant)
    # the AMX tables run their base table's single-token kernels (test_kernels_amx.py has their own receipts)
    base = {"amx": "avx512", "amx-model": "scalar"}.get(variant, variant)
    assert set(bk.ran_kernels()) == {f"quantize_act.{base}", f"i2s_gemv.{base}"}
