"""The CUDA kernels (bitnet/backends/cuda/kernels.cu) without a GPU: every kernel compiles to PTX and to cubin for sm_80
and sm_90 with no register spills, and the I2G weight layout with the kernel's word decoding gives the CPU
kernels' exact integers (bitnet/backends/cuda/layout.py models the kernel's dp4a loop on the host).

Running the kernels against their CPU references needs a GPU: tests/integration/test_cuda_gpu.py (skipped
without one) and tools/checks/gpu_check.py; tests/unit/test_cuda_backend.py runs the forward pass around them on
an emulated device.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kernel_cases import pack_i2s

import bitnet.backends.cpu.kernels.testing as bk
from bitnet.backends.cuda.layout import i2g_dots, i2s_codes, i2s_to_i2g
from bitnet.errors import ModelError

SOURCE = Path(__file__).resolve().parents[2] / "bitnet" / "backends" / "cuda" / "kernels.cu"
NVCC = shutil.which("nvcc")
KERNELS = sorted(re.findall(r"__global__ void (\w+)\(", SOURCE.read_text()))
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")


def _signature(params: str) -> str:
    """A kernel's parameter list as the launcher's codes: p pointer, i int, q int64, f float."""
    codes = []
    for p in params.split(","):
        p = " ".join(p.split())
        codes.append("p" if "*" in p else "q" if p.startswith("int64_t") else "i" if p.startswith("int ")
                     else "f" if p.startswith("float ") else "?" + p)
    return "".join(codes)


def test_the_launcher_packs_every_kernels_parameters_as_the_source_declares_them() -> None:
    """bitnet.backends.cuda.driver.PARAMS decides the C type of each launch argument: a mismatch with kernels.cu would
    pass garbage to a kernel on the GPU, so it is held to the source here."""
    from bitnet.backends.cuda.driver import PARAMS

    declared = {name: _signature(params) for name, params in
                re.findall(r"__global__ void (\w+)\(([^)]*)\)", SOURCE.read_text())}
    assert declared == PARAMS


@needs_nvcc
@pytest.mark.parametrize("arch", ["80", "90"])
def test_every_kernel_compiles_to_ptx(arch: str, tmp_path: Path) -> None:
    out = tmp_path / f"kernels_{arch}.ptx"
    subprocess.run([NVCC, "-ptx", f"-arch=compute_{arch}", "-o", str(out), str(SOURCE)], check=True,
                   capture_output=True, text=True, timeout=300)
    ptx = out.read_text()
    assert f".target sm_{arch}" in ptx
    entries = sorted(re.findall(r"\.visible \.entry (\w+)\(", ptx))
    assert entries == KERNELS     # extern "C": the launcher finds each kernel by its plain name


@needs_nvcc
@pytest.mark.parametrize("arch", ["80", "90"])
def test_every_kernel_compiles_to_cubin_without_spills_or_stack(arch: str, tmp_path: Path) -> None:
    res = subprocess.run([NVCC, "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-o", str(tmp_path / "k.cubin"),
                          str(SOURCE)], check=True, capture_output=True, text=True, timeout=300)
    compiled = re.findall(r"Compiling entry function '(\w+)' for 'sm_(\d+)'", res.stderr)
    assert sorted(name for name, a in compiled if a == arch) == KERNELS
    # no spills, and no stack frame either: a per-token accumulator array left in local memory would be one
    spills = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", res.stderr)
    assert len(spills) == len(KERNELS) and all(s == ("0", "0", "0") for s in spills), res.stderr


@pytest.mark.parametrize("K,M", [(128, 3), (2560, 9), (6912, 4), (64, 32)])
def test_i2g_layout_gives_the_cpu_integers(K: int, M: int) -> None:
    rng = np.random.default_rng(K + M)
    data = pack_i2s(rng.integers(0, 4, M * K).astype(np.uint8), 1.0)   # code 3 included: reads as 1
    words = i2s_to_i2g(data, K, M)
    assert words.shape == (M, K // 16) and words.dtype == np.uint32
    q = rng.integers(-128, 128, (3, K)).astype(np.int8)
    dots = i2g_dots(words, q)
    # the CPU kernel with scale 1, sum 0 and wscale 1 returns the integer dot sum(code * q) itself
    want = np.stack([bk.ternary_matmul_q(data, bk.GGML_I2_S, K, M, q[t:t + 1], np.float32(1.0), 0,
                                         variant="scalar")[0] for t in range(3)])
    np.testing.assert_array_equal(dots.astype(np.float32), want)
    np.testing.assert_array_equal(dots, q.astype(np.int64) @ i2s_codes(data, K, M).T.astype(np.int64))


def test_i2g_needs_rows_of_16() -> None:
    data = pack_i2s(np.ones(16 * 40, np.uint8), 1.0)
    with pytest.raises(ModelError, match="multiple of 16 inputs, got K = 40"):
        i2s_to_i2g(data, 40, 16)


def test_nvrtc_compiles_the_same_source() -> None:
    """The runtime fallback when no PTX was built: NVRTC (the nvidia-cuda-nvrtc wheel) compiles kernels.cu
    to PTX on a machine without a GPU as well."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="pip install '.[cuda]' for NVRTC")
    from bitnet.backends.cuda.compile import compile_with_nvrtc

    ptx = compile_with_nvrtc(SOURCE.read_text(), "compute_90", nvrtc)
    assert sorted(re.findall(r"\.visible \.entry (\w+)\(", ptx)) == KERNELS


@needs_nvcc
def test_the_build_ships_ptx_of_every_kernel() -> None:
    from bitnet.backends.cuda import compile as cc

    assert cc.BUILT_PTX.exists(), "setup.py's build_ext writes bitnet/backends/cuda/kernels.ptx when nvcc is present"
    ptx = cc.kernels_ptx()
    assert ".target sm_80" in ptx
    assert sorted(re.findall(r"\.visible \.entry (\w+)\(", ptx)) == KERNELS


@needs_nvcc
def test_the_build_writes_a_fatbin_with_sass_for_each_architecture_beside_the_ptx(tmp_path: Path) -> None:
    """bitnet/backends/cuda/build.py (setup.py's build_ext runs it): SASS for sm_80, 86, 89, 90 and whatever newer
    of SASS_ARCHS this nvcc targets, read back by the loader's fatbin parser; and the package's own files."""
    from bitnet.backends.cuda import build
    from bitnet.backends.cuda import compile as cc

    ptx, fatbin = build.build_kernels(str(tmp_path))
    archs = cc.fatbin_sass(Path(fatbin).read_bytes())
    assert archs == build.nvcc_sass_archs(NVCC) and {80, 86, 89, 90} <= set(archs)
    assert cc.ptx_isa(Path(ptx).read_text()) >= (7, 8)
    assert cc.BUILT_FATBIN.exists(), "setup.py's build_ext writes bitnet/backends/cuda/kernels.fatbin with nvcc"
    assert cc.fatbin_sass(cc.BUILT_FATBIN.read_bytes()) == archs


def test_a_file_that_is_not_a_fatbin_is_refused_by_name() -> None:
    from bitnet.backends.cuda import compile as cc

    with pytest.raises(cc.CudaCompileError, match=r"^kernels\.fatbin is not an nvcc fatbin \(bad magic\)"):
        cc.fatbin_sass(b"\x7fELF" + bytes(60))


def test_nvrtc_compiles_a_cubin_for_a_real_architecture() -> None:
    """The last image the loader tries: SASS for exactly the device's architecture, which no PTX JIT (and so no
    PTX ISA of the driver) is needed for."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="pip install '.[cuda]' for NVRTC")
    from bitnet.backends.cuda.compile import compile_with_nvrtc

    cubin = compile_with_nvrtc(SOURCE.read_text(), "sm_86", nvrtc, cubin=True)
    assert cubin[:4] == b"\x7fELF" and all(name.encode() in cubin for name in KERNELS)


def test_without_built_ptx_the_kernels_come_from_nvrtc_or_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    from bitnet.backends.cuda import compile as cc

    monkeypatch.setattr(cc, "BUILT_PTX", tmp_path / "absent.ptx")
    try:
        import cuda.bindings.nvrtc  # noqa: F401
    except ImportError:
        with pytest.raises(cc.CudaCompileError, match=r"no NVRTC to compile them: pip install 'bitnet-engine\[cuda\]'"):
            cc.kernels_ptx()
    else:
        assert sorted(re.findall(r"\.visible \.entry (\w+)\(", cc.kernels_ptx())) == KERNELS


def test_nvrtc_reports_a_kernel_that_does_not_compile() -> None:
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="pip install '.[cuda]' for NVRTC")
    from bitnet.backends.cuda.compile import CudaCompileError, compile_with_nvrtc

    with pytest.raises(CudaCompileError, match="identifier \"undefined_thing\" is undefined"):
        compile_with_nvrtc('extern "C" __global__ void k(float *x) { x[0] = undefined_thing; }', "compute_80", nvrtc)
