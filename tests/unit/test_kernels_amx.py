"""The AMX-INT8 bodies of the multi-token matmuls (I2_S gemm, Q8_0 head gemm).

Both run as two variants: ``amx`` (the real tile instructions; AMX CPUs only) and ``amx-model`` (the same loop
nest, packing and finishing on a C model of tileloadd / tdpbssd / tilestored, on every CPU). Each must give the
scalar reference's bits at every shape the tiles cut differently: rows that do not fill a 16-row group or a pair
of them, tokens that do not fill a 16-token tile or a pair of them, row ranges that start anywhere, code 3, the
integer extremes; and the engine's logits with ``amx`` must equal those with ``avx512`` bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import HARDWARE
from kernel_cases import pack_i2s

import bitnet
import bitnet.backends.cpu.kernels.testing as bk
from bitnet.gguf import quants
from bitnet.gguf.constants import GGMLType

HAS_AMX = "amx" in bk.supported_variants()
NEEDS_AMX = pytest.mark.skipif(not HAS_AMX, reason=HARDWARE + "this CPU (or OS) cannot run AMX-INT8 tiles")
AMX_VARIANTS = ["amx-model", pytest.param("amx", marks=NEEDS_AMX)]
MIN_TOKENS = 16   # fewer tokens go to the base table (kernels_amx.c BN_AMX_MIN_TOKENS)


def _i2s(K: int, M: int, rng: np.random.Generator, code_max: int = 3) -> np.ndarray:
    return pack_i2s(rng.integers(0, code_max + 1, M * K).astype(np.uint8), 0.61, rng)


def _q(T: int, K: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = rng.integers(-128, 128, (T, K)).astype(np.int8)
    return q, rng.uniform(0.5, 2.0, T).astype(np.float32), q.astype(np.int64).sum(1).astype(np.int32)


@pytest.mark.parametrize("variant", AMX_VARIANTS)
@pytest.mark.parametrize("K,M", [(128, 5), (256, 16), (640, 33), (2560, 40), (6912, 17)])
def test_i2s_gemm_matches_scalar(variant: str, K: int, M: int) -> None:
    rng = np.random.default_rng(K + M)
    data = _i2s(K, M, rng)
    for T in (16, 17, 31, 32, 33, 50):
        q, scale, qsum = _q(T, K, rng)
        args = (data, bk.GGML_I2_S, K, M, q, scale, qsum)
        want = bk.ternary_matmul_q(*args, variant="scalar")
        bk.reset_ran()
        np.testing.assert_array_equal(bk.ternary_matmul_q(*args, variant=variant, n_threads=2), want)
        assert f"i2s_gemm.{variant}" in bk.ran_kernels()


@pytest.mark.parametrize("variant", AMX_VARIANTS)
@pytest.mark.parametrize("chunk", [1, 7, 16, 24, 40])
def test_i2s_row_ranges_anywhere(variant: str, chunk: int) -> None:
    """Calls of `chunk` rows: groups that start anywhere and end past the matrix (the gathers must not read it)."""
    K, M, T = 384, 45, 35
    rng = np.random.default_rng(chunk)
    data = _i2s(K, M, rng)
    q, scale, qsum = _q(T, K, rng)
    args = (data, bk.GGML_I2_S, K, M, q, scale, qsum)
    np.testing.assert_array_equal(bk.ternary_matmul_q(*args, variant=variant, row_chunk=chunk, n_threads=2),
                                  bk.ternary_matmul_q(*args, variant="scalar"))


@pytest.mark.parametrize("variant", AMX_VARIANTS)
@pytest.mark.parametrize("qv", [-128, 127])
def test_i2s_extremes_and_code3(variant: str, qv: int) -> None:
    """All codes 2 against all activations at an extreme up to K = 65536 (the exact integer comes out: scale 1,
    sum 0, wscale 1), and a weight of code 3 only (value 0, read as code 1)."""
    K, M, T = 65536, 2, MIN_TOKENS
    q = np.full((T, K), qv, np.int8)
    got = bk.ternary_matmul_q(pack_i2s(np.full(M * K, 2, np.uint8), 1.0), bk.GGML_I2_S, K, M, q, np.float32(1.0),
                              0, variant=variant)
    assert np.all(got == np.float32(2 * qv * K)), got
    K = 1024
    q = np.full((T, K), qv, np.int8)
    threes = pack_i2s(np.full(M * K, 3, np.uint8), 1.0)
    got = bk.ternary_matmul_q(threes, bk.GGML_I2_S, K, M, q, np.float32(1.0), 0, variant=variant)
    assert np.all(got == np.float32(qv * K)), got


@pytest.mark.parametrize("variant", AMX_VARIANTS)
def test_short_batches_and_odd_k_take_the_base_body(variant: str) -> None:
    """Below a tile of tokens, K % 128 != 0 (rows inside blocks) and one token (gemv): the base table's kernels
    run, and the receipts say so."""
    base = "avx512" if variant == "amx" else "scalar"
    rng = np.random.default_rng(3)
    for K, M, T, kernel in ((256, 8, MIN_TOKENS - 1, "i2s_gemm"), (96, 12, 20, "i2s_gemm"), (256, 8, 1, "i2s_gemv")):
        data = _i2s(K, M, rng)
        q, scale, qsum = _q(T, K, rng)
        args = (data, bk.GGML_I2_S, K, M, q, scale, qsum)
        bk.reset_ran()
        got = bk.ternary_matmul_q(*args, variant=variant)
        assert bk.ran_kernels() == [f"{kernel}.{base}"]
        np.testing.assert_array_equal(got, bk.ternary_matmul_q(*args, variant="scalar"))


def _q80(K: int, M: int, rng: np.random.Generator) -> np.ndarray:
    w = (rng.standard_normal((M, K)) * 0.05).astype(np.float32)
    w[1] = 0.0                       # a row whose blocks all have d = 0
    return bk.encode_q80(quants.quantize(w, GGMLType.F32), bk.GGML_F32, K, M)


@pytest.mark.parametrize("variant", AMX_VARIANTS)
@pytest.mark.parametrize("K", [32, 96, 256, 288, 2560])
def test_q8_head_gemm_matches_scalar(variant: str, K: int) -> None:
    """Blocks one by one into lane b % 8 (nb % 8 != 0 leaves lanes untouched), rows and tokens that do not fill
    tiles, a token of zeros (d = 0): the scalar reference's bits."""
    rng = np.random.default_rng(K)
    M = 37
    w = _q80(K, M, rng)
    for T in (16, 19, 33):
        x = rng.standard_normal((T, K)).astype(np.float32)
        x[2] = 0.0
        want = bk.q8_matmul(w, K, M, x, variant="scalar")
        bk.reset_ran()
        np.testing.assert_array_equal(bk.q8_matmul(w, K, M, x, variant=variant, n_threads=2), want)
        assert f"q80q8_gemm.{variant}" in bk.ran_kernels()


@pytest.fixture()
def restore_variant():
    before = bk.active_variant()
    yield
    bk.set_variant(before)


def _engine(path, variant: str, lm_head: str, text: str) -> tuple[np.ndarray, list[str]]:
    bk.set_variant(variant)
    bk.reset_ran()
    with bitnet.load(path, n_threads=2, lm_head=lm_head) as model:
        logits = model.logits(model.tokenize(text))
    return logits, bk.ran_kernels()


PROMPT = "The meaning of life is a question that philosophers have asked for centuries, and the answer"


@pytest.mark.parametrize("lm_head", ["exact", "q8_0"])
@pytest.mark.parametrize("variant,base", [("amx-model", "scalar"), pytest.param("amx", "avx512", marks=NEEDS_AMX)])
def test_engine_logits_equal_the_base_variant(variant: str, base: str, lm_head: str, small_model_path,
                                              restore_variant) -> None:
    """A prompt longer than a tile of tokens through the whole model: the logits of every position with the AMX
    bodies are those of the table they extend (avx512 for amx: the VNNI integers; scalar for the model)."""
    want, _ = _engine(small_model_path, base, lm_head, PROMPT)
    got, ran = _engine(small_model_path, variant, lm_head, PROMPT)
    assert want.shape[0] >= MIN_TOKENS
    assert f"i2s_gemm.{variant}" in ran
    if lm_head == "q8_0":
        assert f"q80q8_gemm.{variant}" in ran
    np.testing.assert_array_equal(got, want)
