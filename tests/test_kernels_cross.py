"""Build checks that need a toolchain: the NEON and wasm SIMD128 variants compile for their targets (with
clang, installable with `apt-get install clang`), and another Cython module can cimport the active table
through bitnet/kernels/_kernels.pxd (as bitnet.models._forward does)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "bitnet" / "kernels" / "src"
CLANG = shutil.which("clang")

CROSS = [
    ("kernels_arm.c", ["--target=aarch64-linux-gnu"], ["neon_i2s_gemm", "smull"]),
    ("kernels_arm.c", ["--target=aarch64-linux-gnu", "-march=armv8.2-a+dotprod"], ["neon_i2s_gemm", "sdot"]),
    ("kernels_wasm.c", ["--target=wasm32", "-msimd128"], ["wasm_i2s_gemm", "i16x8.extmul_low_i8x16_s"]),
]


@pytest.mark.skipif(CLANG is None, reason="clang is not installed (apt-get install clang) for cross compiles")
@pytest.mark.parametrize("source,flags,expect", CROSS, ids=["aarch64", "aarch64+dotprod", "wasm32-simd128"])
def test_cross_variant_compiles_to_real_simd(tmp_path: Path, source: str, flags: list, expect: list) -> None:
    """-ffreestanding: the file may use only compiler headers. The assembly must contain the variant's table
    functions and its SIMD instructions (not the stub branch of the #if)."""
    asm = tmp_path / "out.s"
    cmd = [CLANG, *flags, "-ffreestanding", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(SRC), "-S",
           str(SRC / source), "-o", str(asm)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    text = asm.read_text()
    for needle in expect:
        assert needle in text, f"{needle!r} missing from the {flags} build of {source}"
    obj = tmp_path / "out.o"
    cmd = [CLANG, *flags, "-ffreestanding", "-O2", "-I", str(SRC), "-c", str(SRC / source), "-o", str(obj)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and obj.stat().st_size > 0, res.stderr


def test_pxd_exposes_the_active_table_to_other_cython_modules(tmp_path: Path) -> None:
    """Compile a scratch module that cimports active_kernels and runs the table's quantizer from C."""
    pytest.importorskip("Cython")
    mod = tmp_path / "scratch_cimport.pyx"
    mod.write_text(textwrap.dedent("""
        # cython: language_level=3
        from libc.stdint cimport int8_t
        from bitnet.kernels._kernels cimport active_kernels, bn_kernels, bn_qinfo

        def run(float[::1] x, int8_t[::1] q):
            cdef const bn_kernels *kt = active_kernels()
            cdef bn_qinfo info
            with nogil:
                kt.quantize_act(&x[0], x.shape[0], &q[0], &info)
            return kt.variant, info.scale, info.sum
    """))
    setup = tmp_path / "setup.py"
    setup.write_text(textwrap.dedent(f"""
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        ext = Extension("scratch_cimport", ["scratch_cimport.pyx"], include_dirs=[{str(SRC)!r}])
        setup(ext_modules=cythonize([ext], include_path=[{str(ROOT)!r}], quiet=True))
    """))
    res = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], check=False,
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    check = textwrap.dedent("""
        import numpy as np, bitnet.kernels as bk, scratch_cimport
        x = np.linspace(-2, 1, 50).astype(np.float32); q = np.empty(50, np.int8)
        variant, scale, total = scratch_cimport.run(x, q)
        wq, ws, wsum = bk.quantize_act(x)
        assert bk.VARIANTS[variant] == bk.active_variant()
        assert np.array_equal(q, wq[0]) and scale == ws[0] and total == wsum[0]
        print("ok")
    """)
    env_path = f"{tmp_path}:{ROOT}"
    res = subprocess.run([sys.executable, "-c", check], check=False, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": env_path})
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
