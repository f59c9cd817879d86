"""The LUT form of I2_S weights (bitnet.backends.cpu.kernels.lut_pack / lut_matmul) and the measured choice of path.

Every variant's LUT kernels must give the I2_S reference's bits (the scalar multiply-add kernel), for any
shape, any int8 activations, row ranges that cut tiles, and the never-written code 3; the engine must give the
same logits with either path; the choice is measured once per CPU and kept in the user cache directory.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_for_hardware
from kernel_cases import pack_i2s

import bitnet
import bitnet.backends.cpu.kernels.testing as bk
from bitnet.backends.cpu.kernels import choice
from bitnet.errors import KernelError

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = bk.supported_variants()


def _case(K: int, M: int, rng: np.random.Generator, code_max: int = 3) -> tuple[np.ndarray, float]:
    data = pack_i2s(rng.integers(0, code_max + 1, M * K).astype(np.uint8), 0.61, rng)
    return data, float(data[M * K // 4:M * K // 4 + 4].view(np.float32)[0])


def _reference(data: np.ndarray, K: int, M: int, q: np.ndarray, scale, qsum: np.ndarray) -> np.ndarray:
    scale = np.broadcast_to(np.asarray(scale, np.float32), (q.shape[0],))
    return np.concatenate([bk.ternary_matmul_q(data, bk.GGML_I2_S, K, M, q[t:t + 1], scale[t], qsum[t],
                                               variant="scalar") for t in range(q.shape[0])])


# (K, M): K % 4 != 0 and rows that start mid-block (M*K % 128 == 0 only), M not a multiple of 32 or 64,
# runs of more than 60 steps (the int16 widening), the 2B4T shapes
SHAPES = [(128, 6), (96, 12), (32, 12), (36, 32), (30, 64), (640, 10), (8640, 6), (2560, 70), (6912, 33),
          (2560, 2560)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("K,M", SHAPES)
def test_lut_matches_the_i2s_reference(variant: str, K: int, M: int) -> None:
    rng = np.random.default_rng(K * 7 + M)
    data, wscale = _case(K, M, rng)
    lut = bk.lut_pack(data, K, M)
    assert lut.size == bk.lut_pack(data, K, M, n_threads=1).size
    np.testing.assert_array_equal(lut, bk.lut_pack(data, K, M, n_threads=1))   # packing threads agree
    for T in (1, 2, 5, 9):
        q = rng.integers(-128, 128, (T, K)).astype(np.int8)
        scale = rng.uniform(0.1, 3.0, T).astype(np.float32)
        qsum = q.astype(np.int64).sum(1).astype(np.int32)
        want = _reference(data, K, M, q, scale, qsum)
        got = bk.lut_matmul(lut, K, M, q, scale, qsum, wscale, variant=variant)
        np.testing.assert_array_equal(got, want)
        if T == 1:
            np.testing.assert_array_equal(bk.lut_matmul(lut, K, M, q, scale, qsum, wscale, variant=variant,
                                                        gemm=True), want)


@pytest.mark.parametrize("variant", VARIANTS)
def test_row_ranges_that_cut_tiles(variant: str) -> None:
    K, M = 2560, 100
    rng = np.random.default_rng(3)
    data, wscale = _case(K, M, rng)
    lut = bk.lut_pack(data, K, M)
    q = rng.integers(-128, 128, (3, K)).astype(np.int8)
    qsum = q.astype(np.int64).sum(1).astype(np.int32)
    want = _reference(data, K, M, q, np.float32(0.5), qsum)
    for chunk in (1, 7, 33, 50):
        np.testing.assert_array_equal(bk.lut_matmul(lut, K, M, q[:1], np.float32(0.5), qsum[:1], wscale,
                                                    variant=variant, row_chunk=chunk), want[:1])
        np.testing.assert_array_equal(bk.lut_matmul(lut, K, M, q, np.float32(0.5), qsum, wscale,
                                                    variant=variant, row_chunk=chunk), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("qv", [-128, 127])
@pytest.mark.parametrize("code", [0, 2])
def test_extreme_activations_do_not_wrap(variant: str, qv: int, code: int) -> None:
    """All weights +1 or -1 against all activations at -128 or 127, K = 65536: every int8 batch and int16
    run of the LUT kernel sits at its bound. With scale 1 and wscale 1 the output is the exact ternary dot
    (the LUT kernels rely on qi.sum being the sum of q, as the contract says; the quantizer always gives it)."""
    K, M = 65536, 2
    data = pack_i2s(np.full(M * K, code, np.uint8), 1.0)
    lut = bk.lut_pack(data, K, M)
    q = np.full((2, K), qv, np.int8)
    qsum = np.full(2, qv * K, np.int32)
    for T in (1, 2):
        got = bk.lut_matmul(lut, K, M, q[:T], np.float32(1.0), qsum[:T], 1.0, variant=variant)
        assert np.all(got == np.float32((code - 1) * qv * K)), got
        np.testing.assert_array_equal(got, _reference(data, K, M, q[:T], np.float32(1.0), qsum[:T]))


def test_code_3_reads_as_weight_zero() -> None:
    K, M = 256, 4
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 4, M * K).astype(np.uint8)
    data = pack_i2s(codes, 1.0)
    same = pack_i2s(np.where(codes == 3, 1, codes).astype(np.uint8), 1.0)
    np.testing.assert_array_equal(bk.lut_pack(data, K, M), bk.lut_pack(same, K, M))


def test_lut_arguments_are_checked() -> None:
    data, _ = _case(256, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="I2_S weight \\[M=4, K=256\\] needs 260 bytes, got 100"):
        bk.lut_pack(data[:100], 256, 4)
    with pytest.raises(ValueError, match="LUT-form weight of \\[4, 256\\] has 2048 bytes, got 100"):
        bk.lut_matmul(np.zeros(100, np.uint8), 256, 4, np.zeros((1, 256), np.int8), 1.0, 0, 1.0)


# ---- the engine with either path

def _greedy_logits(path: Path, monkeypatch, ternary: str) -> np.ndarray:
    monkeypatch.setenv("BITNET_KERNEL", ternary)
    bk.reset_ran()
    with bitnet.load(path, n_threads=2) as model:
        ids = model.tokenize("The meaning of life is")
        logits = model.logits(ids)
        text = model.generate("The meaning of life is", max_tokens=12, temperature=0).text
    ran = bk.ran_kernels()
    assert any(k.startswith("i2l_gemv." if ternary == "lut" else "i2s_gemv.") for k in ran), ran
    return logits, text


@pytest.mark.parametrize("model", ["small", "tinyA"])
def test_engine_gives_the_same_bits_with_the_lut_path(model: str, monkeypatch, small_model_path: Path,
                                                      tinya_dir: Path) -> None:
    path = small_model_path if model == "small" else tinya_dir / "tinyA-i2s.gguf"
    mac_logits, mac_text = _greedy_logits(path, monkeypatch, "mac")
    lut_logits, lut_text = _greedy_logits(path, monkeypatch, "lut")
    assert lut_text == mac_text
    np.testing.assert_array_equal(lut_logits, mac_logits)


# ---- the measured choice

def _trial(ratio: float, spread: float = 0.01) -> dict:
    return {"mac_us": 100.0, "lut_us": 100.0 * ratio, "ratio": ratio, "spread": spread}


def _measured(decode: list[float], prefill: list[float], spread: float = 0.01) -> dict:
    return {"decode": [_trial(r, spread) for r in decode], "prefill": [_trial(r, spread) for r in prefill]}


def test_lut_is_chosen_only_when_it_wins_decode_by_the_margin_in_every_trial_and_keeps_prefill() -> None:
    assert choice.judge(_measured([0.8, 0.85, 0.82], [1.0, 1.05, 0.95])) == ("lut", True)
    # decode wins but the LUT prefill is slower than the margin allows (what the LUT path does on VNNI cores)
    assert choice.judge(_measured([0.8, 0.8, 0.8], [1.7, 1.75, 1.8])) == ("mac", True)
    # a win smaller than the margin (10.75 vs 11.79 ms once chose LUT) keeps the multiply-add path
    assert choice.judge(_measured([0.93, 0.91, 0.95], [1.0, 1.0, 1.0])) == ("mac", True)
    assert choice.judge(_measured([1.1, 1.2, 1.05], [1.6, 1.6, 1.6])) == ("mac", True)


def test_a_noisy_measurement_is_never_trusted() -> None:
    # timings that spread more than NOISE within a trial cannot choose LUT, nor keep a close call
    assert choice.judge(_measured([0.5, 0.5, 0.5], [1.0, 1.0, 1.0], spread=0.3)) == (choice.DEFAULT, False)
    assert choice.judge(_measured([0.93, 0.95, 0.92], [1.0, 1.0, 1.0], spread=0.3)) == (choice.DEFAULT, False)
    # trials that contradict each other (72 vs 178 ms under load in one, a loss in another)
    assert choice.judge(_measured([0.4, 1.1, 0.8], [1.0, 1.0, 1.0])) == (choice.DEFAULT, False)
    # quiet trials of which only some say LUT wins: no verdict holds in every trial
    assert choice.judge(_measured([0.85, 0.95, 0.85], [1.0, 1.0, 1.0])) == (choice.DEFAULT, False)
    # a loss in every trial stands however noisy the timings (what a VNNI core shows: LUT 1.4x decode, 2x prefill)
    assert choice.judge(_measured([1.44, 1.51, 1.48], [2.05, 2.05, 2.05], spread=0.3)) == ("mac", True)


def test_choice_is_measured_once_and_cached(monkeypatch, tmp_path: Path) -> None:
    if bk.active_variant() not in choice.LUT_VARIANTS:
        skip_for_hardware(f"the {bk.active_variant()} variant has no SIMD LUT kernels: the choice is always 'mac'")
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BITNET_KERNEL", raising=False)
    measured = _measured([1.0, 1.0, 1.0], [1.7, 1.7, 1.7])
    calls = []
    monkeypatch.setattr(choice, "measure", lambda n_threads: calls.append(n_threads) or measured)
    first = choice.ternary_path(64)          # more threads than this process has CPUs
    assert first == "mac" and calls == [choice.available_cpus()]
    cache = Path(choice.cache_path())
    assert cache.parent == tmp_path
    (key, entry), = json.loads(cache.read_text()).items()
    assert choice.cpu_model() in key and bk.active_variant() in key
    assert f"| {choice.available_cpus()} threads |" in key      # measured for the CPUs it has, never 64
    assert entry["choice"] == first and entry["decode"] == measured["decode"]
    # a later load reads the cache instead of measuring: flip the stored answer and see it come back
    flipped = "lut"
    cache.write_text(json.dumps({key: {**entry, "choice": flipped}}))
    assert choice.ternary_path(64) == flipped and len(calls) == 1
    # BITNET_KERNEL overrides the cache
    monkeypatch.setenv("BITNET_KERNEL", first)
    assert choice.ternary_path() == first
    monkeypatch.setenv("BITNET_KERNEL", f"{bk.active_variant()}+{flipped}")
    assert choice.ternary_path() == flipped


def test_an_entry_from_the_old_single_phase_measurement_is_measured_again(monkeypatch, tmp_path: Path) -> None:
    """A cache written before decode and prefill were both measured (one noisy GEMV timing once chose LUT for
    good) is not trusted."""
    if bk.active_variant() not in choice.LUT_VARIANTS:
        skip_for_hardware(f"the {bk.active_variant()} variant has no SIMD LUT kernels: the choice is always 'mac'")
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BITNET_KERNEL", raising=False)
    key = choice._key(bk.active_variant(), 1)
    Path(choice.cache_path()).write_text(json.dumps({key: {"choice": "lut", "mac_us": 11.79, "lut_us": 10.75}}))
    monkeypatch.setattr(choice, "measure", lambda n_threads: _measured([1.4, 1.4, 1.4], [2.0, 2.0, 2.0]))
    assert choice.ternary_path(1) == "mac"
    assert json.loads(Path(choice.cache_path()).read_text())[key]["choice"] == "mac"


def test_a_noisy_measurement_is_not_cached(monkeypatch, tmp_path: Path) -> None:
    if bk.active_variant() not in choice.LUT_VARIANTS:
        skip_for_hardware(f"the {bk.active_variant()} variant has no SIMD LUT kernels: the choice is always 'mac'")
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BITNET_KERNEL", raising=False)
    monkeypatch.setattr(choice, "measure", lambda n_threads: _measured([0.5, 0.5, 0.5], [1, 1, 1], spread=0.5))
    assert choice.ternary_path() == choice.DEFAULT
    assert not Path(choice.cache_path()).exists()


def test_the_real_measurement_gives_a_verdict_from_both_phases(monkeypatch) -> None:
    if bk.active_variant() not in choice.LUT_VARIANTS:
        skip_for_hardware(f"the {bk.active_variant()} variant has no SIMD LUT kernels")
    measured = choice.measure(1, trials=2, rounds=5)
    for phase in ("decode", "prefill"):
        assert len(measured[phase]) == 2
        for t in measured[phase]:
            assert t["mac_us"] > 0 and t["lut_us"] > 0 and t["spread"] >= 0
            assert t["ratio"] == pytest.approx(t["lut_us"] / t["mac_us"], rel=1e-2)
    assert choice.judge(measured)[0] in ("mac", "lut")


def test_a_corrupt_or_unwritable_cache_only_means_measuring(monkeypatch, tmp_path: Path) -> None:
    if bk.active_variant() not in choice.LUT_VARIANTS:
        skip_for_hardware(f"the {bk.active_variant()} variant has no SIMD LUT kernels")
    monkeypatch.delenv("BITNET_KERNEL", raising=False)
    monkeypatch.setattr(choice, "measure", lambda n_threads: _measured([1, 1, 1], [1, 1, 1]))
    (tmp_path / "kernel-choice.json").write_text("{not json")
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path))
    assert choice.ternary_path() == "mac"
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BITNET_CACHE_DIR", str(blocker))     # the cache directory cannot be created
    assert choice.ternary_path() == "mac"


def test_bad_ternary_path_in_the_environment_is_named(monkeypatch) -> None:
    monkeypatch.setenv("BITNET_KERNEL", "lut+mac")
    with pytest.raises(KernelError, match="BITNET_KERNEL=lut\\+mac: expected a variant"):
        bk.requested_ternary_path()


def test_env_variant_and_path_together_at_import() -> None:
    code = "import bitnet.backends.cpu.kernels as k; print(k.active_variant(), k.requested_ternary_path())"
    res = subprocess.run([sys.executable, "-c", code], env={"BITNET_KERNEL": "scalar+lut", "PATH": "/usr/bin"},
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["scalar", "lut"]
