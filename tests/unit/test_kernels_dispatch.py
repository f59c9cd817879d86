"""Variant dispatch: BITNET_KERNEL forcing (in subprocesses, since the choice happens at import), clear
errors, cpu_info contents and the ran-kernels receipts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HARDWARE

import bitnet.backends.cpu.kernels.testing as bk
from bitnet.errors import KernelError

ROOT = Path(__file__).resolve().parents[2]


def _import_with(env_value: str, code: str = "import bitnet.backends.cpu.kernels as k; print(k.active_variant())"):
    env = {**os.environ, "BITNET_KERNEL": env_value, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_env_forces_the_scalar_variant() -> None:
    res = _import_with("scalar")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "scalar"


@pytest.mark.skipif("avx2" not in bk.supported_variants(), reason=HARDWARE + "this CPU cannot run the avx2 kernels")
def test_env_forces_avx2() -> None:
    res = _import_with("AVX2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "avx2"


def test_env_with_an_unknown_name_lists_the_valid_ones() -> None:
    res = _import_with("sse9")
    assert res.returncode != 0
    assert "KernelError" in res.stderr and "BITNET_KERNEL=sse9" in res.stderr
    assert "scalar, avx2, avx512, neon, wasm" in res.stderr


@pytest.mark.skipif("avx512" in bk.supported_variants(), reason=HARDWARE + "this CPU runs AVX-512 VNNI")
def test_env_avx512_without_the_features_names_the_missing_ones() -> None:
    res = _import_with("avx512")
    assert res.returncode != 0
    assert "KernelError" in res.stderr
    if "avx512" in bk.compiled_variants():
        missing = [f for f in ("avx512f", "avx512bw", "avx512vl", "avx512vnni")
                   if not bk.cpu_info()["features"][f]]
        assert "missing CPU features" in res.stderr
        assert all(f in res.stderr for f in missing)
    else:
        assert "not compiled into this build" in res.stderr


@pytest.mark.skipif("amx" not in bk.supported_variants(), reason=HARDWARE + "this CPU cannot run AMX-INT8 tiles")
def test_env_forces_amx_and_cpu_info_says_so() -> None:
    res = _import_with("amx", "import bitnet; i = bitnet.cpu_info(); print(i['variant'], i['best_variant'])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["amx", "amx"]
    res = _import_with("avx512", "import bitnet; print(bitnet.cpu_info()['variant'])")
    assert res.stdout.strip() == "avx512", res.stderr


@pytest.mark.skipif("amx" in bk.supported_variants(), reason=HARDWARE + "this CPU runs AMX-INT8 tiles")
def test_env_amx_without_the_features_names_the_missing_ones() -> None:
    res = _import_with("amx")
    assert res.returncode != 0
    # the exception's own line (the traceback above it quotes the `raise KernelError(...)` source line too)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("bitnet.errors.KernelError")]
    assert len(line) == 1 and "BITNET_KERNEL=amx" in line[0], res.stderr
    if "amx" in bk.compiled_variants():
        features = bk.cpu_info()["features"]
        missing = [f for f in bk.VARIANT_FEATURES["amx"] if not features[f]]
        if not features["amx_tile"]:
            missing.remove("amx_os")   # the OS's leave is not named for a CPU without tiles
        assert "missing CPU features " + ", ".join(missing) in line[0]
    else:
        assert "not compiled into this build" in line[0]


def test_the_tile_model_is_never_chosen_by_itself() -> None:
    info = bk.cpu_info()
    assert "amx-model" in info["supported_variants"] and info["best_variant"] != "amx-model"


@pytest.mark.parametrize("name", [v for v in bk.VARIANTS if v not in bk.compiled_variants()])
def test_set_variant_not_compiled_says_so(name: str) -> None:
    with pytest.raises(KernelError, match="not compiled into this build"):
        bk.set_variant(name)


def test_cpu_info_describes_the_machine_and_the_choice() -> None:
    info = bk.cpu_info()
    assert set(info) == {"features", "compiled_variants", "supported_variants", "best_variant", "variant",
                         "omp_max_threads"}
    assert "scalar" in info["supported_variants"]
    assert set(info["supported_variants"]) <= set(info["compiled_variants"])
    preferred = [v for v in ("amx", "avx512", "avx2", "neon", "wasm") if v in info["supported_variants"]]
    assert info["best_variant"] == (preferred[0] if preferred else "scalar")
    assert info["omp_max_threads"] >= 1
    assert isinstance(info["features"]["avx2"], bool)
    if info["features"]["avx2"] and info["features"]["fma"] and info["features"]["f16c"]:
        assert "avx2" in info["supported_variants"]


def test_set_variant_switches_the_active_table_and_receipts_follow() -> None:
    before = bk.active_variant()
    try:
        for name in bk.supported_variants():
            bk.set_variant(name)
            assert bk.active_variant() == name
            bk.reset_ran()
            assert bk.ran_kernels() == []
            x = np.ones((2, 64), np.float32)
            raw = np.ones(64 * 3, np.float16).view(np.uint8)
            bk.float_matmul(raw, bk.GGML_F16, 64, 3, x)      # T=2: gemm
            bk.float_matmul(raw, bk.GGML_F16, 64, 3, x[0])   # T=1: recorded as gemv
            base = {"amx": "avx512", "amx-model": "scalar"}.get(name, name)   # tables that extend another
            assert set(bk.ran_kernels()) == {f"f16_gemm.{base}", f"f16_gemv.{base}"}
    finally:
        bk.set_variant(before)
