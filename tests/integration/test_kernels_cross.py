"""Checks that need a toolchain: the NEON and wasm SIMD128 variants compile for their targets (clang, from
`apt-get install clang lld`) and give the scalar reference's results when run (wasm under node, aarch64 under
qemu-user from `apt-get install qemu-user-static`); and another Cython module can cimport the active table
through bitnet/backends/cpu/kernels/_kernels.pxd (as bitnet.backends.cpu._forward does)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import HARDWARE
from kernel_cases import pack_i2s, pack_tq1, pack_tq2

import bitnet.backends.cpu.kernels.testing as bk

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "bitnet" / "backends" / "cpu" / "kernels" / "src"
CLANG = shutil.which("clang")
NODE = shutil.which("node")
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")

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
        from bitnet.backends.cpu.kernels._kernels cimport active_kernels, bn_kernels, bn_qinfo

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
        import numpy as np, bitnet.backends.cpu.kernels.testing as bk, scratch_cimport
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


# ---- running the cross variants: a freestanding harness that reads a request and writes the results ----

HARNESS = r"""
#include "kernels_internal.h"

#ifdef FREESTANDING
volatile uint8_t bn_ran[BN_V_COUNT][BN_K_COUNT];

/* table entries the harness never calls (the scalar fallbacks live in kernels_scalar.c, which needs libm) */
#define TRAP_TQ(name) void name(const uint8_t *d, int64_t K, int64_t r0, int64_t r1, const int8_t *q, \
    const bn_qinfo *qi, float *y) { __builtin_trap(); }
#define TRAP_TQM(name) void name(const uint8_t *d, int64_t K, int64_t r0, int64_t r1, const int8_t *q, \
    const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) { __builtin_trap(); }
#define TRAP_F(name) void name(const uint8_t *d, int64_t K, int64_t r0, int64_t r1, const float *x, \
    int64_t T, float *y, int64_t ldy) { __builtin_trap(); }
TRAP_TQ(bn_scalar_tq2_gemv) TRAP_TQ(bn_scalar_tq1_gemv)
TRAP_TQM(bn_scalar_tq2_gemm) TRAP_TQM(bn_scalar_tq1_gemm)
TRAP_F(bn_scalar_bf16_gemm) TRAP_F(bn_scalar_q80_gemm) TRAP_F(bn_scalar_f32_gemm)
void bn_scalar_attention(const float *q, int64_t nq, const bn_f16 *k, const bn_f16 *v, int64_t s, int64_t n,
                         int64_t hd, float sc, float *scores, float *out, float *ml, const void *ahead,
                         int64_t ahead_bytes) { __builtin_trap(); }
void bn_scalar_attention_q8(const float *q, int64_t nq, const uint8_t *k, const uint8_t *v, int64_t rb, int64_t n,
                            int64_t hd, float sc, float *scores, float *out, float *ml, const void *ahead,
                            int64_t ahead_bytes) { __builtin_trap(); }
void bn_scalar_q80_q8_gemm(const uint8_t *d, int64_t K, int64_t r0, int64_t r1, const int8_t *xq,
                           const float *xd, int64_t T, float *y, int64_t ldy) { __builtin_trap(); }
void bn_lut_tables(const int8_t *q, int64_t K, int8_t *tables) { __builtin_trap(); }
void bn_scalar_i2l_gemv(const uint8_t *l, int64_t K, int64_t r0, int64_t r1, const int8_t *t,
                        const bn_qinfo *qi, float w, float *y) { __builtin_trap(); }
void bn_scalar_i2l_gemm(const uint8_t *l, int64_t K, int64_t r0, int64_t r1, const int8_t *t,
                        const bn_qinfo *qi, int64_t T, float w, float *y, int64_t ldy) { __builtin_trap(); }

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst; const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

#endif

static uint8_t g_in[1 << 22] __attribute__((aligned(64)));
static uint8_t g_out[1 << 20] __attribute__((aligned(64)));
uint8_t *in_ptr(void) { return g_in; }
uint8_t *out_ptr(void) { return g_out; }

/* header: int64 op, K, M, T, use_gemm, row_chunk, n_data; then data (padded to 8), then activations */
int run(void) {
    const bn_kernels *kt = VARIANT_TABLE();
    const int64_t *h = (const int64_t *)g_in;
    const int64_t op = h[0], K = h[1], M = h[2], T = h[3], gemm = h[4], chunk = h[5], n_data = h[6];
    const uint8_t *data = g_in + 64;
    const uint8_t *act = data + ((n_data + 7) & ~7);
    if (op == 1) { /* quantize: act = float x[T][K] -> q[T][K] then T qinfo */
        bn_qinfo *qi = (bn_qinfo *)(g_out + ((T * K + 7) & ~7));
        for (int64_t t = 0; t < T; t++)
            kt->quantize_act((const float *)act + t * K, K, (int8_t *)g_out + t * K, qi + t);
        return (int)(((T * K + 7) & ~7) + 8 * T);
    }
    if (op == 6) { /* attention: data = k then v (M rows of `chunk` halves), act = float scale (8 bytes), q[T][K];
                    out: T heads of K floats, then each head's max score and sum of exponentials */
        static float scores[1 << 14];
        const bn_f16 *kk = (const bn_f16 *)data, *vv = kk + M * chunk;
        float scale;
        memcpy(&scale, act, 4);
        kt->attention((const float *)(act + 8), T, kk, vv, chunk, M, K, scale, scores, (float *)g_out,
                      (float *)g_out + T * K, NULL, 0);
        return (int)(4 * T * K + 8 * T);
    }
    float *y = (float *)g_out;
    for (int64_t r0 = 0; r0 < M; r0 += chunk) {
        const int64_t r1 = r0 + chunk < M ? r0 + chunk : M;
        if (op == 2) { /* i2s: act = int8 q[T][K] (padded) then T qinfo */
            const int8_t *q = (const int8_t *)act;
            const bn_qinfo *qi = (const bn_qinfo *)(act + ((T * K + 7) & ~7));
            float wscale;
            memcpy(&wscale, data + M * K / 4, 4);
            if (T == 1 && !gemm) kt->i2s_gemv(data, K, r0, r1, q, qi, wscale, y);
            else kt->i2s_gemm(data, K, r0, r1, q, qi, T, wscale, y, M);
        } else if (op == 4 || op == 5) { /* tq2 / tq1: as i2s, without wscale */
            const int8_t *q = (const int8_t *)act;
            const bn_qinfo *qi = (const bn_qinfo *)(act + ((T * K + 7) & ~7));
            if (T == 1 && !gemm) (op == 4 ? kt->tq2_gemv : kt->tq1_gemv)(data, K, r0, r1, q, qi, y);
            else (op == 4 ? kt->tq2_gemm : kt->tq1_gemm)(data, K, r0, r1, q, qi, T, y, M);
        } else if (op == 7) { /* f32: act = float x[T][K] */
            kt->f32_gemm(data, K, r0, r1, (const float *)act, T, y, M);
        } else { /* f16: act = float x[T][K] */
            kt->f16_gemm(data, K, r0, r1, (const float *)act, T, y, M);
        }
    }
    return (int)(4 * T * M);
}

#if defined(__aarch64__)
static long sys3(long nr, long a, long b, long c) {
    register long x8 __asm__("x8") = nr, x0 __asm__("x0") = a, x1 __asm__("x1") = b, x2 __asm__("x2") = c;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
void _start(void) {
    long got = 0, n;
    while ((n = sys3(63, 0, (long)(g_in + got), (long)sizeof(g_in) - got)) > 0) got += n;
    const long len = run();
    for (long off = 0; off < len; off += n)
        if ((n = sys3(64, 1, (long)(g_out + off), len - off)) <= 0) break;
    sys3(93, 0, 0, 0);
    __builtin_unreachable();
}
#endif

#ifdef NATIVE_MAIN
#include <stdio.h>
int main(void) {
    fread(g_in, 1, sizeof(g_in), stdin);
    fwrite(g_out, 1, (size_t)run(), stdout);
    return 0;
}
#endif
"""

NODE_RUNNER = """
const fs = require('fs');
const [wasmPath, inPath, outPath] = process.argv.slice(2);
WebAssembly.instantiate(fs.readFileSync(wasmPath), {}).then(({instance}) => {
  const ex = instance.exports;
  new Uint8Array(ex.memory.buffer).set(fs.readFileSync(inPath), ex.in_ptr());
  const n = ex.run();
  fs.writeFileSync(outPath, Buffer.from(ex.memory.buffer, ex.out_ptr(), n));
});
"""

RUNNERS = {
    "wasm32-simd128": (["--target=wasm32", "-msimd128"], "kernels_wasm.c", "bn_kernels_wasm", NODE),
    "aarch64": (["--target=aarch64-linux-gnu"], "kernels_arm.c", "bn_kernels_neon", QEMU),
    "aarch64+dotprod": (["--target=aarch64-linux-gnu", "-march=armv8.2-a+dotprod"], "kernels_arm.c",
                        "bn_kernels_neon", QEMU),
}


def _build_runner(name: str, tmp_path: Path):
    """A callable request(bytes) -> bytes that runs the harness for one cross target."""
    flags, source, table, tool = RUNNERS[name]
    if CLANG is None or shutil.which("ld.lld") is None:
        pytest.skip("clang and lld are not installed (apt-get install clang lld)")
    if tool is None:
        pytest.skip("node is not installed" if "wasm" in name else
                    "qemu-user is not installed (apt-get install qemu-user-static)")
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / ("h.wasm" if "wasm" in name else "h.elf")
    link = (["-Wl,--no-entry", "-Wl,--export=run", "-Wl,--export=in_ptr", "-Wl,--export=out_ptr"]
            if "wasm" in name else ["-static", "-fuse-ld=lld", "-Wl,-e,_start"])
    cmd = [CLANG, *flags, "-ffreestanding", "-nostdlib", "-O2", "-DFREESTANDING", f"-DVARIANT_TABLE={table}",
           "-I", str(SRC),
           str(tmp_path / "harness.c"), str(SRC / source), *link, "-o", str(exe)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    def request(blob: bytes) -> bytes:
        if "wasm" in name:
            (tmp_path / "runner.js").write_text(NODE_RUNNER)
            (tmp_path / "in.bin").write_bytes(blob)
            res = subprocess.run([tool, str(tmp_path / "runner.js"), str(exe), str(tmp_path / "in.bin"),
                                  str(tmp_path / "out.bin")], check=False, capture_output=True, timeout=120)
            assert res.returncode == 0, res.stderr.decode()
            return (tmp_path / "out.bin").read_bytes()
        res = subprocess.run([tool, str(exe)], input=blob, check=False, capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        return res.stdout

    return request


def _blob(op: int, K: int, M: int, T: int, data: bytes, act: bytes, gemm: bool = False,
          chunk: int = 0) -> bytes:
    head = np.array([op, K, M, T, int(gemm), chunk or M, len(data), 0], np.int64).tobytes()
    pad = b"\0" * (-len(data) % 8)
    return head + data + pad + act


def _qinfo_bytes(scale: np.ndarray, total: np.ndarray) -> bytes:
    info = np.empty(2 * len(scale), np.uint32)
    info[0::2] = np.asarray(scale, np.float32).view(np.uint32)
    info[1::2] = np.asarray(total, np.int32).view(np.uint32)
    return info.tobytes()


@pytest.mark.parametrize("name", [n for n in RUNNERS if "aarch64" in n or "wasm" in n])
def test_simd128_attention_runs_like_the_scalar_reference(tmp_path: Path, name: str) -> None:
    """NEON's and WebAssembly's own attention kernels, with the max and sum of exponentials: GQA head pairs and
    singles, row strides, head dims off the vector width, and a wide score range (underflowing exponentials)."""
    request = _build_runner(name, tmp_path)
    rng = np.random.default_rng(5)
    for n_q, hd, n_kv, stride, spread in ((2, 128, 300, 640, 1), (3, 64, 9, 64, 1), (1, 72, 5, 80, 1),
                                          (2, 20, 3, 20, 1), (2, 128, 1000, 128, 40)):
        q = rng.standard_normal((n_q, hd)).astype(np.float32)
        k = (rng.standard_normal((n_kv, stride)) * spread).astype(np.float16)
        v = rng.standard_normal((n_kv, stride)).astype(np.float16)
        scale = np.float32(hd ** -0.5)
        act = scale.tobytes() + b"\0" * 4 + q.tobytes()
        out = np.frombuffer(request(_blob(6, hd, n_kv, n_q, k.tobytes() + v.tobytes(), act, chunk=stride)),
                            np.float32)
        want, want_ml = bk.attention(q, k, v, float(scale), variant="scalar", with_ml=True)
        np.testing.assert_allclose(out[:n_q * hd].reshape(n_q, hd), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[n_q * hd:].reshape(n_q, 2), want_ml, rtol=1e-5)   # what spans merge with


@pytest.mark.parametrize("name", list(RUNNERS))
def test_cross_variant_runs_like_the_scalar_reference(tmp_path: Path, name: str) -> None:
    request = _build_runner(name, tmp_path)
    rng = np.random.default_rng(42)

    # quantize_act: bit-identical (ties included)
    for K in (7, 100, 2560):
        x = (rng.standard_normal((3, K)) * 5).astype(np.float32)
        x[1, :8] = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -126.5, 126.5] if K >= 8 else x[1, :8]
        out = request(_blob(1, K, 0, 3, b"", x.tobytes()))
        q, scale, total = bk.quantize_act(x, variant="scalar")
        np.testing.assert_array_equal(np.frombuffer(out[:3 * K], np.int8).reshape(3, K), q)
        info = np.frombuffer(out[(3 * K + 7) // 8 * 8:], np.uint32)
        np.testing.assert_array_equal(info[0::2].view(np.float32), scale)
        np.testing.assert_array_equal(info[1::2].view(np.int32), total)

    # I2_S gemv / gemm, mid-block rows, odd row ranges, extreme and random int8: bit-identical
    cases = ((640, 10, 1, 3), (8640, 6, 5, 3), (96, 12, 3, 5), (2560, 4, 1, 4), (65536, 2, 2, 1))
    for K, M, T, chunk in cases:
        codes = rng.integers(0, 4, M * K).astype(np.uint8) if K < 65536 else np.full(M * K, 2, np.uint8)
        data = pack_i2s(codes, 0.61, rng)
        q = rng.integers(-128, 128, (T, K)).astype(np.int8) if K < 65536 else np.full((T, K), -128, np.int8)
        scale = rng.uniform(0.5, 2, T).astype(np.float32)
        total = q.astype(np.int64).sum(1).astype(np.int32)
        want = bk.ternary_matmul_q(data, bk.GGML_I2_S, K, M, q, scale, total, variant="scalar")
        for gemm in {False, T > 1, True}:
            act = q.tobytes() + b"\0" * (-q.size % 8) + _qinfo_bytes(scale, total)
            out = request(_blob(2, K, M, T, data.tobytes(), act, gemm=gemm, chunk=chunk))
            np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(T, M), want)

    # F16 matmul: close to the scalar reference
    for K, M, T in ((2560, 9, 1), (100, 5, 3), (256, 6, 4)):
        w = rng.standard_normal((M, K)).astype(np.float16)
        w.reshape(-1)[:4] = [np.float16(6e-8), np.float16(-3e-5), np.float16(65504), np.float16(0)]
        x = rng.standard_normal((T, K)).astype(np.float32)
        out = np.frombuffer(request(_blob(3, K, M, T, w.tobytes(), x.tobytes())), np.float32).reshape(T, M)
        want = bk.float_matmul(w.view(np.uint8).reshape(-1), bk.GGML_F16, K, M, x, variant="scalar")
        bound = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64).T) * K * 2.0 ** -23
        assert np.all(np.abs(out - want) <= bound + 1e-6)
        # F32 matmul: an F32 copy of the same weights gives the F16 kernel's results bit for bit
        out32 = np.frombuffer(request(_blob(7, K, M, T, w.astype(np.float32).tobytes(), x.tobytes())), np.float32)
        np.testing.assert_array_equal(out32.reshape(T, M), out)


# ---- the AVX-512 VNNI code path, on a machine without AVX-512 ----

VNNI_EMU = r"""
/* kernels_x86_impl.h instantiated with BN_VNNI=1 for AVX2, with vpdpbusd emulated exactly for the operands
   the kernels give it (codes 0..3 times int8: a vpmaddubsw pair never saturates). */
#include "kernels_internal.h"
#include <immintrin.h>
#undef _mm256_dpbusd_epi32
#define _mm256_dpbusd_epi32(acc, a, b) \
    _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((a), (b)), _mm256_set1_epi16(1)))
#define BN_NAME(x) vnniemu_##x
#define BN_FN static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define BN_API static __attribute__((target("avx2,fma,f16c")))
#define BN_VARIANT BN_V_AVX512
#define BN_GETTER bn_kernels_vnniemu
#define BN_VNNI 1
#include "kernels_x86_impl.h"
"""


@pytest.mark.skipif("avx2" not in bk.supported_variants(), reason=HARDWARE + "the emulation needs AVX2")
def test_vnni_template_path_matches_scalar_with_emulated_vpdpbusd(tmp_path: Path) -> None:
    """The avx512 table differs from avx2 only in its dot primitive (vpdpbusd into int32, no int16 stage).
    This CPU cannot execute AVX-512, so build that code path with vpdpbusd emulated by AVX2 and check its
    ternary kernels bit for bit against the scalar reference."""
    gcc = shutil.which("gcc") or shutil.which("cc") or CLANG
    if gcc is None:
        pytest.skip("no C compiler")
    (tmp_path / "emu.c").write_text(VNNI_EMU)
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "vnniemu"
    srcs = [str(SRC / f"{n}.c") for n in ("kernels_scalar", "lut", "ops", "dispatch", "cpu_features", "kernels_x86",
                                          "kernels_amx", "kernels_arm", "kernels_wasm")]
    (tmp_path / "decl.h").write_text('#include "kernels.h"\nconst bn_kernels *bn_kernels_vnniemu(void);\n')
    cmd = [gcc, "-O2", "-DNATIVE_MAIN", "-DVARIANT_TABLE=bn_kernels_vnniemu", "-include", str(tmp_path / "decl.h"),
           "-I", str(SRC), str(tmp_path / "harness.c"), str(tmp_path / "emu.c"), *srcs, "-lm", "-o", str(exe)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    def request(blob: bytes) -> bytes:
        res = subprocess.run([str(exe)], input=blob, check=False, capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        return res.stdout

    rng = np.random.default_rng(7)
    for K, M, T, chunk in ((8640, 6, 5, 3), (640, 10, 1, 3), (96, 12, 4, 5), (65536, 2, 2, 1)):
        extreme = K == 65536
        codes = np.full(M * K, 2, np.uint8) if extreme else rng.integers(0, 4, M * K).astype(np.uint8)
        data = pack_i2s(codes, 0.61, rng)
        q = np.full((T, K), -128, np.int8) if extreme else rng.integers(-128, 128, (T, K)).astype(np.int8)
        scale = rng.uniform(0.5, 2, T).astype(np.float32)
        total = q.astype(np.int64).sum(1).astype(np.int32)
        want = bk.ternary_matmul_q(data, bk.GGML_I2_S, K, M, q, scale, total, variant="scalar")
        act = q.tobytes() + b"\0" * (-q.size % 8) + _qinfo_bytes(scale, total)
        for gemm in {False, T > 1}:
            out = request(_blob(2, K, M, T, data.tobytes(), act, gemm=gemm, chunk=chunk))
            np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(T, M), want)
    for op, fmt in ((4, bk.GGML_TQ2_0), (5, bk.GGML_TQ1_0)):
        K, M, T = 768, 5, 5
        d = rng.uniform(0.01, 0.1, (M, K // 256)).astype(np.float16)
        codes = rng.integers(0, 4 if op == 4 else 3, (M, K)).astype(np.uint8)
        data = pack_tq2(codes, d) if op == 4 else pack_tq1(codes, d)
        q = rng.integers(-128, 128, (T, K)).astype(np.int8)
        scale = rng.uniform(0.5, 2, T).astype(np.float32)
        want = bk.ternary_matmul_q(data, fmt, K, M, q, scale, 0, variant="scalar")
        act = q.tobytes() + b"\0" * (-q.size % 8) + _qinfo_bytes(scale, np.zeros(T, np.int32))
        out = request(_blob(op, K, M, T, data.tobytes(), act, chunk=2))
        np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(T, M), want)


@pytest.mark.parametrize("name", list(RUNNERS))
def test_f16_weights_widen_exactly_for_every_half(tmp_path: Path, name: str) -> None:
    """Each of the 65536 halves as a weight, alone in its row, against one-hot activations: the product with 1.0
    is the widened half itself, so any conversion error (subnormals, infinities, NaN, signs) shows."""
    request = _build_runner(name, tmp_path)
    K = T = 8
    x = np.eye(T, K, dtype=np.float32)
    for start in (0, 32768):
        halves = np.arange(start, start + 32768, dtype=np.uint32).astype(np.uint16)
        M = len(halves)
        w = np.zeros((M, K), np.uint16)
        w[np.arange(M), np.arange(M) % K] = halves
        out = np.frombuffer(request(_blob(3, K, M, T, w.tobytes(), x.tobytes())), np.float32).reshape(T, M)
        got = out[np.arange(M) % K, np.arange(M)]
        want = halves.view(np.float16).astype(np.float32)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(got[~nan], want[~nan])
