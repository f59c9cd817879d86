"""Every CUDA kernel on a real GPU against its CPU reference (tests/helpers/cuda_emulator.py runs the CPU kernels with
the same arguments on the same memory contents), and the whole backend against the CPU backend. Skipped where
there is no usable GPU (CI, this project's development machines); tools/checks/gpu_check.py is the timing side.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import skip_for_hardware, testdata_path
from cuda_emulator import ARGBEST, QINFO, EmulatedDevice
from kernel_cases import pack_i2s

import bitnet
import bitnet.backends.cpu.kernels.testing as bk
from bitnet.backends.cuda.forward import ARGMAX_BLOCK, ARGMAX_PARTS
from bitnet.backends.cuda.layout import i2s_to_i2g

pytestmark = pytest.mark.gpu


def _gpu():
    from bitnet.backends.cuda.driver import CudaDevice, CudaUnavailableError

    try:
        return CudaDevice()
    except CudaUnavailableError as e:
        skip_for_hardware(f"no usable GPU: {e}")


@pytest.fixture(scope="module")
def gpu():
    dev = _gpu()
    yield dev
    dev.close()


def run_both(gpu, name: str, grid, block: int, args: list, buffers: dict[str, np.ndarray]) -> list[dict]:
    """Launch `name` on the GPU and on the emulator with the same buffers; '@name' in args is that buffer's
    address on each device. Returns each device's buffers after the launch."""
    return run_both_many(gpu, [(name, grid, block, args)], buffers)


def run_both_many(gpu, launches: list[tuple], buffers: dict[str, np.ndarray]) -> list[dict]:
    """run_both for several launches in a row: (name, grid, block, args) each."""
    results = []
    for dev in (gpu, EmulatedDevice()):
        ptrs = {}
        for key, host in buffers.items():
            ptrs[key] = dev.alloc(host.nbytes)
            dev.upload(ptrs[key], np.ascontiguousarray(host))
        for name, grid, block, args in launches:
            dev.launch(name, grid, block, *[ptrs[a[1:]] if isinstance(a, str) else a for a in args])
        dev.synchronize()
        out = {}
        for key, host in buffers.items():
            out[key] = np.empty_like(host)
            dev.download(out[key], ptrs[key])
            dev.free(ptrs[key])
        results.append(out)
    return results


RNG = np.random.default_rng(12)


@pytest.mark.parametrize("n,gating,do_norm", [(128, 0, 1), (2560, 0, 1), (6912, 1, 1), (6912, 2, 1), (2560, 0, 0),
                                             (6912, 1, 0)])
def test_norm_quant(gpu, n, gating, do_norm):
    T = 3
    x = RNG.standard_normal((T, n)).astype(np.float32)
    bufs = dict(x=x, up=RNG.standard_normal((T, n)).astype(np.float32), w=RNG.random(n).astype(np.float32) + 0.5,
                q=np.zeros((T, n), np.int8), info=np.zeros(T, QINFO))
    g, e = run_both(gpu, "norm_quant", (T,), 256, ["@x", "@up", gating, "@w", n, 1e-5, do_norm, "@q", "@info"],
                    bufs)
    diff = np.abs(g["q"].astype(int) - e["q"].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999       # the norm's sum is ordered differently
    np.testing.assert_allclose(g["info"]["scale"], e["info"]["scale"], rtol=1e-6)


@pytest.mark.parametrize("K,Ms,T", [(2560, (2560, 640, 640), 1), (2560, (6912, 6912, 0), 3), (6912, (2560, 0, 0), 8)])
def test_i2g_matmul_is_bit_exact(gpu, K, Ms, T):
    data, words, ptr_args = {}, {}, []
    for i, M in enumerate(Ms):
        if M:
            raw = pack_i2s(RNG.integers(0, 3, M * K).astype(np.uint8), 0.02)
            words[f"w{i}"] = i2s_to_i2g(raw, K, M)
        data[f"y{i}"] = RNG.standard_normal((T, max(M, 1))).astype(np.float32)
    x = RNG.standard_normal((T, K)).astype(np.float32)
    q, scale, qsum = bk.quantize_act(x)
    info = np.zeros(T, QINFO)
    info["scale"], info["sum"] = scale, qsum
    bufs = dict(**words, **data, q=q, info=info)
    for i in range(3):
        ptr_args.append(f"@w{i}" if Ms[i] else 0)      # unused segments: null, never read
    args = [*ptr_args, K, *Ms, "@q", "@info", T, 0.02, 0.5, 1.5, *[f"@y{i}" if Ms[i] else 0 for i in range(3)], 1]
    g, e = run_both(gpu, "i2g_matmul", (-(-sum(Ms) // 8),), 256, args, bufs)
    for i in range(3):
        np.testing.assert_array_equal(g[f"y{i}"], e[f"y{i}"])


# K = 96: three Q8_0 blocks a row, 102 bytes, so odd rows start 2-byte aligned only (q80_matmul's 16-bit loads)
@pytest.mark.parametrize("K,M,T", [(2560, 1000, 5), (96, 37, 8)])
@pytest.mark.parametrize("kernel,gtype", [("f16_matmul", bk.GGML_F16), ("bf16_matmul", bk.GGML_BF16),
                                          ("f32_matmul", bk.GGML_F32), ("q80_matmul", bk.GGML_Q8_0)])
def test_float_matmuls(gpu, kernel, gtype, K, M, T):
    w = RNG.standard_normal((M, K)).astype(np.float32) * 0.05
    raw = {bk.GGML_F16: lambda: w.astype(np.float16).view(np.uint8),
           bk.GGML_BF16: lambda: (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8),
           bk.GGML_F32: lambda: w.view(np.uint8),
           bk.GGML_Q8_0: lambda: bk.encode_q80(w.astype(np.float16).view(np.uint8).reshape(-1), bk.GGML_F16, K,
                                               M)}[gtype]()
    bufs = dict(w=np.ascontiguousarray(raw).reshape(-1), x=RNG.standard_normal((T, K)).astype(np.float32),
                y=np.zeros((T, M), np.float32))
    g, e = run_both(gpu, kernel, (-(-M // 8),), 256, ["@w", K, M, "@x", T, "@y", M, 0], bufs)
    np.testing.assert_allclose(g["y"], e["y"], rtol=1e-4, atol=1e-4)


def test_rmsnorm(gpu):
    T, n = 4, 2560
    bufs = dict(x=RNG.standard_normal((T, n)).astype(np.float32), w=RNG.random(n).astype(np.float32),
                out=np.zeros((T, n), np.float32))
    g, e = run_both(gpu, "rmsnorm", (T,), 256, ["@x", "@w", n, 1e-5, "@out"], bufs)
    np.testing.assert_allclose(g["out"], e["out"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("neox", [0, 1])
def test_rope_store(gpu, neox):
    T, H, HKV, HD, n_ctx = 3, 20, 5, 128, 64
    kvd = HKV * HD
    bufs = dict(q=RNG.standard_normal((T, H * HD)).astype(np.float32),
                k=RNG.standard_normal((T, kvd)).astype(np.float32), v=RNG.standard_normal((T, kvd)).astype(np.float32),
                cs=bk.rope_table(n_ctx, HD, 500000.0), pos=np.array([5, 6, 7], np.int32),
                kc=np.zeros((n_ctx, kvd), np.uint16), vc=np.zeros((n_ctx, kvd), np.uint16))
    work = (H + HKV) * HD // 2 + kvd
    g, e = run_both(gpu, "rope_store", (-(-work // 256), T), 256,
                    ["@q", "@k", "@v", H, HKV, HD, "@cs", "@pos", neox, "@kc", "@vc"], bufs)
    for key in ("q", "kc", "vc"):
        np.testing.assert_array_equal(g[key], e[key])


@pytest.mark.parametrize("kernel", ["relu2_mul", "silu_mul"])
def test_gating(gpu, kernel):
    n = 6912 * 3
    bufs = dict(g=RNG.standard_normal(n).astype(np.float32), u=RNG.standard_normal(n).astype(np.float32),
                out=np.zeros(n, np.float32))
    g, e = run_both(gpu, kernel, (-(-n // 256),), 256, ["@g", "@u", n, "@out"], bufs)
    np.testing.assert_allclose(g["out"], e["out"], rtol=1e-6, atol=1e-7)
    # in place, as the forward pass runs it (out == gate: neither is __restrict__)
    g2, _ = run_both(gpu, kernel, (-(-n // 256),), 256, ["@g", "@u", n, "@g"], bufs)
    np.testing.assert_allclose(g2["g"], e["out"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_kv_last", [1, 63, 64, 300])
def test_split_k_attention(gpu, n_kv_last):
    T, H, HKV, HD, n_ctx, chunk = 2, 20, 5, 128, 512, 64
    kvd, n_split = HKV * HD, n_ctx // chunk
    bufs = dict(q=RNG.standard_normal((T, H * HD)).astype(np.float32),
                kc=bk.f32_to_f16(RNG.standard_normal(n_ctx * kvd).astype(np.float32)).view(np.uint16),
                vc=bk.f32_to_f16(RNG.standard_normal(n_ctx * kvd).astype(np.float32)).view(np.uint16),
                pos=np.array([max(n_kv_last - 2, 0), n_kv_last - 1], np.int32),
                po=np.zeros(T * H * n_split * HD, np.float32), pm=np.zeros(T * H * n_split * 2, np.float32),
                out=np.zeros((T, H * HD), np.float32))
    scale = float(np.float32(1) / np.sqrt(np.float32(HD)))
    g, e = run_both(gpu, "attention_split", (H, n_split, T), 128,
                    ["@q", "@kc", "@vc", H, HKV, HD, "@pos", chunk, scale, "@po", "@pm"], bufs)
    bufs.update(po=g["po"], pm=g["pm"])
    g2, e2 = run_both(gpu, "attention_combine", (H, T), 128, ["@po", "@pm", H, HD, n_split, "@out"], bufs)
    np.testing.assert_allclose(g2["out"], e2["out"], rtol=1e-4, atol=1e-5)
    # and against the CPU attention kernel itself, head by head
    for t in range(T):
        n_kv = int(bufs["pos"][t]) + 1
        for h in range(H):
            kv = slice((h // 4) * HD, (h // 4 + 1) * HD)
            want = bk.attention(bufs["q"][t, h * HD:(h + 1) * HD],
                                bufs["kc"].reshape(n_ctx, kvd)[:n_kv, kv], bufs["vc"].reshape(n_ctx, kvd)[:n_kv, kv],
                                scale)
            np.testing.assert_allclose(g2["out"][t, h * HD:(h + 1) * HD], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gtype", [bk.GGML_F16, bk.GGML_BF16, bk.GGML_F32, bk.GGML_Q8_0])
def test_embed_rows(gpu, gtype):
    V, K = 50, 256
    w = RNG.standard_normal((V, K)).astype(np.float32)
    table = {bk.GGML_F16: lambda: w.astype(np.float16).view(np.uint8),
             bk.GGML_BF16: lambda: (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8),
             bk.GGML_F32: lambda: w.view(np.uint8),
             bk.GGML_Q8_0: lambda: bk.encode_q80(w.astype(np.float16).view(np.uint8).reshape(-1), bk.GGML_F16,
                                                 K, V)}[gtype]()
    bufs = dict(t=np.ascontiguousarray(table).reshape(-1), tok=np.array([0, 49, 7], np.int32),
                out=np.zeros((3, K), np.float32))
    g, e = run_both(gpu, "embed_rows", (1, 3), 256, ["@t", gtype, K, "@tok", "@out"], bufs)
    np.testing.assert_array_equal(g["out"], e["out"])


@pytest.mark.parametrize("parts", [1, 7, ARGMAX_PARTS])
@pytest.mark.parametrize("case", ["plain", "ties", "nan", "inf", "all nan"])
def test_two_stage_argmax(gpu, case, parts):
    v = RNG.standard_normal(128256).astype(np.float32)
    if case == "ties":
        v[[70000, 12, 90000, 1003]] = 50.0       # in different blocks of the first stage: 12 wins
    if case == "nan":
        v[5] = np.nan
    if case == "inf":
        v[100000] = np.inf
    if case == "all nan":
        v[:] = np.nan
    bufs = dict(v=v, part=np.zeros(parts, ARGBEST), out=np.zeros(2, np.int32))
    g, e = run_both_many(gpu, [("argmax_blocks", (parts,), ARGMAX_BLOCK, ["@v", v.size, "@part"]),
                               ("argmax", (1,), 128, ["@part", parts, "@out"])], bufs)
    np.testing.assert_array_equal(g["out"], e["out"])
    finite = np.isfinite(v)
    assert g["out"].tolist() == [int(np.argmax(np.where(finite, v, -np.inf))), int(not finite.all())]


def test_the_gpu_loads_the_packages_sass_for_its_architecture(gpu):
    from bitnet.backends.cuda import compile as cc

    arch = cc.sass_for(cc.fatbin_sass(cc.BUILT_FATBIN.read_bytes()), gpu.capability) \
        if cc.BUILT_FATBIN.exists() else None
    if arch is not None:
        assert gpu.image == f"SASS sm_{arch} (kernels.fatbin)"
    else:       # built without nvcc, or a GPU newer than the fatbin
        assert gpu.image.startswith(("PTX ISA", "NVRTC cubin")), gpu.image


def test_with_cuda_sync_a_faulting_kernel_is_named(gpu):
    """An illegal address (rmsnorm reading from 0x100) with BITNET_CUDA_SYNC=1 is reported by that kernel's launch.
    In a child process: the fault poisons the GPU context for the rest of the process."""
    import os
    import subprocess
    import sys

    code = ("from bitnet.backends.cuda.driver import CudaDevice, CudaError\n"
            "dev = CudaDevice()\nout = dev.alloc(4096)\n"
            "try:\n    dev.launch('rmsnorm', (1,), 256, 0x100, 0, 1024, 1e-5, out)\nexcept CudaError as e:\n"
            "    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, BITNET_CUDA_SYNC="1"))
    assert res.stdout.startswith("kernel rmsnorm failed (BITNET_CUDA_SYNC=1 synchronized after its launch): "
                                 "CUDA_ERROR_ILLEGAL_ADDRESS"), res.stdout + res.stderr


def test_the_backend_matches_the_cpu_on_tinya():
    _gpu().close()
    path = testdata_path("tinyA", "tinyA-i2s.gguf")
    cpu, gpu = bitnet.load(path, n_ctx=256), bitnet.load(path, n_ctx=256, device="cuda")
    ids = [int(t) for t in np.random.default_rng(0).integers(0, cpu.n_vocab, 100)]
    a, b = cpu.logits(ids), gpu.logits(ids)
    assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() >= 0.999
    assert gpu.generate(ids[:10], max_tokens=32, temperature=0).tokens == \
        cpu.generate(ids[:10], max_tokens=32, temperature=0).tokens
    gpu.close()
