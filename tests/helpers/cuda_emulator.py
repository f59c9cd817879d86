"""A stand-in for bitnet.backends.cuda.driver.CudaDevice that runs every kernel of kernels.cu on the host, with the CPU
kernels (bitnet.backends.cpu.kernels, the scalar ones where a wrapper offers the choice) and the I2G host model
(bitnet.backends.cuda.layout.i2g_dots) as each kernel's reference.

It lets the tests run the CUDA forward pass (bitnet/backends/cuda/forward.py) end to end without a GPU. Every launch's
arguments are checked against driver.PARAMS (count and C type); every pointer must fall inside a live
allocation with room for what the kernel reads or writes there; a call from a thread where the context was not
made current fails; no two pointer arguments of a launch are the same address where the kernel declares one of
them __restrict__; CUDA-graph capture records launches (a copy during capture fails, as on a GPU) that
`replay` runs again with whatever device memory then holds. The capture is thread-local, as the driver's
CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: an alloc, free or synchronize on the capturing thread fails with
CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture (end_capture then fails with
CUDA_ERROR_STREAM_CAPTURE_INVALIDATED). Kernels run at once on the host, but count as run (`ran`, the receipts')
only after a synchronization, as on the GPU; `faults` names kernels that fault (the fault surfaces at the next
synchronization, or at the launch itself with BITNET_CUDA_SYNC=1). The same functions give
tests/integration/test_cuda_gpu.py the expected results of the real kernels.

FakeDriver stands in for `cuda.bindings.driver` under the real CudaDevice, with a compute capability and a driver
version to pretend: it loads kernel images as the driver would (SASS for the GPU's architecture family, PTX
whose ISA the driver reads) and runs no kernel, for the tests of CudaDevice's own logic (which image it loads,
what it says when none loads, synchronization after launches).
"""
from __future__ import annotations

import bisect
import enum
import math
import re
import struct
import threading
from types import SimpleNamespace

import numpy as np

import bitnet.backends.cpu.kernels.testing as bk
from bitnet.backends.cuda.compile import SOURCE
from bitnet.backends.cuda.driver import PARAMS, CudaError
from bitnet.backends.cuda.layout import i2g_dots
from bitnet.settings import cuda_sync

QINFO = np.dtype([("scale", "<f4"), ("sum", "<i4")])
ARGBEST = np.dtype([("v", "<f4"), ("i", "<i4"), ("bad", "<i4"), ("pad", "<i4")])   # kernels.cu's ArgBest
NO_INDEX = 0x7FFFFFFF
# per kernel, which parameters are __restrict__ (kernels.cu)
RESTRICT = {name: tuple("__restrict__" in p for p in params.split(",")) for name, params in
            re.findall(r"__global__ void (\w+)\(([^)]*)\)", SOURCE.read_text())}
CAPTURE_UNSUPPORTED = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (operation not permitted when stream is capturing)"
CAPTURE_INVALIDATED = ("CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (operation failed due to a previous error during "
                       "capture)")
ILLEGAL_ADDRESS = "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)"
F32_MATMULS = {"f16_matmul": bk.GGML_F16, "bf16_matmul": bk.GGML_BF16, "f32_matmul": bk.GGML_F32,
               "q80_matmul": bk.GGML_Q8_0}


class EmulatedDevice:
    name = "emulated GPU (tests/helpers/cuda_emulator.py)"
    capability = (9, 0)
    driver_version = 13000
    image = "the CPU kernels (emulated)"

    def __init__(self, free_bytes: int = 8 << 30, faults: set[str] = frozenset()):
        self._bases: list[int] = []
        self._buffers: dict[int, np.ndarray] = {}
        self._next = 0x7000_0000_0000
        self.total = free_bytes
        self._capture: list | None = None
        self._capture_thread: int | None = None
        self._invalidated = False
        self.launches: dict[str, int] = {}
        self.captures = 0
        self.replays = 0
        self.ran: set[str] = set()
        self._pending: set[str] = set()
        self.faults = set(faults)         # kernels that fault when they run
        self._sticky: str | None = None   # a fault poisons the context, as on the GPU
        self.sync_launches = cuda_sync()
        self._thread = threading.local()
        self.activate()             # CudaDevice makes its context current on the creating thread

    def activate(self) -> None:
        self._thread.current = True

    def _current(self, what: str) -> None:
        """As the driver: a call on a thread where this device's context was never made current fails."""
        if not getattr(self._thread, "current", False):
            raise AssertionError(f"{what} on thread {threading.current_thread().name} without a current context")

    # -- memory
    def mem_info(self) -> tuple[int, int]:
        used = sum(b.nbytes for b in self._buffers.values())
        return max(self.total - used, 0), self.total

    def _capture_safe(self, call: str) -> None:
        """As the driver in thread-local capture mode: a call that may synchronize, on the capturing thread, is
        refused and invalidates the capture."""
        if self._capture is not None and self._capture_thread == threading.get_ident():
            self._invalidated = True
            raise CudaError(f"{call} failed: {CAPTURE_UNSUPPORTED}")

    def alloc(self, nbytes: int) -> int:
        self._current("alloc")
        self._capture_safe(f"cuMemAlloc({nbytes} bytes)")
        ptr = self._next
        self._next += (max(int(nbytes), 1) + 0xFFFF) & ~0xFFFF
        bisect.insort(self._bases, ptr)
        # garbage, not zeros: a kernel that reads what nothing wrote gives garbage here too
        self._buffers[ptr] = np.frombuffer(np.random.default_rng(ptr & 0xFFFF).bytes(max(int(nbytes), 1)),
                                           dtype=np.uint8).copy()
        return ptr

    def free(self, ptr: int) -> None:
        self._current("free")
        self._capture_safe("cuMemFree")
        del self._buffers[ptr]
        self._bases.remove(ptr)

    def view(self, ptr: int, dtype, count: int) -> np.ndarray:
        """`count` items of `dtype` at device address ptr (a view: writes go to device memory)."""
        i = bisect.bisect_right(self._bases, ptr) - 1
        if ptr == 0 or i < 0:
            raise AssertionError(f"pointer {ptr:#x} is not in any allocation")
        base = self._bases[i]
        buf, off = self._buffers[base], ptr - base
        n = count * np.dtype(dtype).itemsize
        if off + n > buf.nbytes:
            raise AssertionError(f"{n} bytes at {ptr:#x} overrun an allocation of {buf.nbytes} (offset {off})")
        return buf[off:off + n].view(dtype)

    def upload(self, ptr: int, host, nbytes: int | None = None) -> None:
        self._current("upload")
        self._no_capture("upload")
        src = np.frombuffer(memoryview(host).cast("B"), dtype=np.uint8)
        n = src.nbytes if nbytes is None else nbytes
        self.view(ptr, np.uint8, n)[:] = src[:n]

    def download(self, host, ptr: int, nbytes: int | None = None) -> None:
        self._current("download")
        self._no_capture("download")
        self.synchronize()      # CudaDevice.download waits for the stream, and so reports a fault
        dst = np.frombuffer(memoryview(host).cast("B"), dtype=np.uint8)
        n = dst.nbytes if nbytes is None else nbytes
        dst[:n] = self.view(ptr, np.uint8, n)

    def memset(self, ptr: int, nbytes: int) -> None:
        self.view(ptr, np.uint8, nbytes)[:] = 0

    def synchronize(self) -> None:
        self._sync("cuStreamSynchronize failed")

    def _sync(self, what: str) -> None:
        self._capture_safe("cuStreamSynchronize")
        pending, self._pending = self._pending, set()
        if self._sticky is not None:
            blame = ("" if self.sync_launches or not pending else
                     f"; one of {', '.join(sorted(pending))} faulted: BITNET_CUDA_SYNC=1 names which")
            raise CudaError(f"{what}: {self._sticky}{blame}")
        self.ran |= pending

    def reset_ran(self) -> None:
        self.ran.clear()
        self._pending.clear()

    def close(self) -> None:
        self._buffers.clear()
        self._bases.clear()

    # -- launches and graphs
    def _no_capture(self, what: str) -> None:
        if self._capture is not None:
            raise AssertionError(f"{what} while a CUDA graph is being captured")

    def launch(self, name: str, grid, block: int, *args) -> None:
        self._current(f"launching {name}")
        sig = PARAMS[name]
        assert len(args) == len(sig), f"{name}: {len(args)} arguments for {sig}"
        for a, c in zip(args, sig):
            if c in "piq":
                assert isinstance(a, (int, np.integer)) and not isinstance(a, bool), f"{name}: {a!r} for '{c}'"
            if c == "i":
                assert -2**31 <= a < 2**31, f"{name}: {a} does not fit an int"
            if c == "f":
                assert isinstance(a, float), f"{name}: {a!r} for a float"
        ptrs = [(a, r) for a, c, r in zip(args, sig, RESTRICT[name]) if c == "p" and a]
        for i, (a, r) in enumerate(ptrs):
            assert not any(a == b and (r or rb) for b, rb in ptrs[i + 1:]), \
                f"{name}: the same address {a:#x} for two pointers, one of them __restrict__"
        grid = (tuple(grid) + (1, 1))[:3]
        assert 1 <= block <= 1024 and block % 32 == 0, f"{name}: block of {block}"
        if self._capture is not None:
            self._capture.append((name, grid, block, args))
            return
        self.launches[name] = self.launches.get(name, 0) + 1
        self._pending.add(name)
        if name in self.faults:
            self._sticky = ILLEGAL_ADDRESS
        if self._sticky is None:
            KERNELS[name](self, grid, block, *args)
        if self.sync_launches:
            self._sync(f"kernel {name} failed (BITNET_CUDA_SYNC=1 synchronized after its launch)")

    def begin_capture(self) -> None:
        self._no_capture("begin_capture")
        self._capture, self._capture_thread, self._invalidated = [], threading.get_ident(), False

    def end_capture(self):
        graph, self._capture = self._capture, None
        if self._invalidated:
            raise CudaError(f"cuStreamEndCapture failed: {CAPTURE_INVALIDATED}")
        self.captures += 1
        return graph

    def replay(self, graph) -> None:
        self.replays += 1
        for name, grid, block, args in graph:
            self.launch(name, grid, block, *args)

    def destroy_graph(self, graph) -> None:
        pass

    # -- timing: host time stands in for the device's (tools/checks/gpu_check.py runs on this device in a test)
    def timer(self):
        return ([0.0], [0.0])

    def record(self, event) -> None:
        import time

        event[0] = time.perf_counter()

    def elapsed_ms(self, pair) -> float:
        return (pair[1][0] - pair[0][0]) * 1000


def norm_quant(dev, grid, block, x, up, gating, w, n, eps, do_norm, q, info):
    T = grid[0]
    xs = dev.view(x, np.float32, T * n).reshape(T, n)
    if gating:
        fn = bk.silu_mul if gating == 2 else bk.relu2_mul
        xs = fn(xs, dev.view(up, np.float32, T * n)).reshape(T, n)
    wv = dev.view(w, np.float32, n) if w else None
    qs, infos = dev.view(q, np.int8, T * n).reshape(T, n), dev.view(info, QINFO, T)
    for t in range(T):
        v = bk.rmsnorm(xs[t], wv, eps) if do_norm else xs[t]
        qt, scale, qsum = bk.quantize_act(v[None, :], variant="scalar")
        qs[t], infos[t] = qt[0], (scale[0], qsum[0])


def i2g_matmul(dev, grid, block, w0, w1, w2, K, M0, M1, M2, q, info, T, s0, s1, s2, y0, y1, y2, accumulate):
    assert grid[0] * (block // 32) >= M0 + M1 + M2 and 1 <= T <= 8 and K % 16 == 0
    qs = dev.view(q, np.int8, T * K).reshape(T, K)
    inf = dev.view(info, QINFO, T)
    for w, M, s, y in ((w0, M0, s0, y0), (w1, M1, s1, y1), (w2, M2, s2, y2)):
        if M == 0:
            continue
        dots = i2g_dots(dev.view(w, np.uint32, M * K // 16).reshape(M, K // 16), qs)
        v = ((dots.astype(np.float32) - inf["sum"].astype(np.float32)[:, None]) / inf["scale"][:, None]) * np.float32(s)
        out = dev.view(y, np.float32, T * M).reshape(T, M)
        out[:] = out + v if accumulate else v


def _float_matmul(name):
    def run(dev, grid, block, w, K, M, x, T, y, ldy, accumulate):
        assert grid[0] * (block // 32) >= M and 1 <= T <= 8
        # the kernels' vector loads: F16/BF16 read pairs (uint32) of w and float2 of x, Q8_0 float4 of x
        assert name not in ("f16_matmul", "bf16_matmul") or K % 2 == 0, f"{name}: odd K = {K}"
        assert x % (16 if name == "q80_matmul" else 8) == 0, f"{name}: x at {x:#x} is misaligned"
        gtype = F32_MATMULS[name]
        nbytes = bk._weight_bytes(gtype, K, M)
        xs = dev.view(x, np.float32, T * K).reshape(T, K)
        v = bk.float_matmul(dev.view(w, np.uint8, nbytes), gtype, K, M, xs, variant="scalar")
        out = dev.view(y, np.float32, (T - 1) * ldy + M)
        for t in range(T):
            row = out[t * ldy:t * ldy + M]
            row[:] = row + v[t] if accumulate else v[t]
    return run


def rmsnorm(dev, grid, block, x, w, n, eps, out):
    T = grid[0]
    xs, os_ = dev.view(x, np.float32, T * n).reshape(T, n), dev.view(out, np.float32, T * n).reshape(T, n)
    wv = dev.view(w, np.float32, n) if w else None
    for t in range(T):
        os_[t] = bk.rmsnorm(xs[t], wv, eps)


def rope_store(dev, grid, block, q, k, v, n_head, n_head_kv, head_dim, cs, pos, neox, kcache, vcache):
    T, half, kvd = grid[1], head_dim // 2, n_head_kv * head_dim
    assert grid[0] * block >= (n_head + n_head_kv) * half + kvd
    qs = dev.view(q, np.float32, T * n_head * head_dim).reshape(T, n_head, head_dim)
    ks = dev.view(k, np.float32, T * kvd).reshape(T, n_head_kv, head_dim)
    vs = dev.view(v, np.float32, T * kvd).reshape(T, kvd)
    ps = dev.view(pos, np.int32, T)
    i = np.arange(half)
    i0, i1 = (i, i + half) if neox else (2 * i, 2 * i + 1)
    for t in range(T):
        p = int(ps[t])
        a = dev.view(cs + 4 * p * head_dim, np.float32, head_dim)
        def rotated(x, c=a[0::2], s=a[1::2]):
            out = x.copy()
            out[:, i0] = x[:, i0] * c - x[:, i1] * s
            out[:, i1] = x[:, i0] * s + x[:, i1] * c
            return out

        qs[t] = rotated(qs[t])
        dev.view(kcache + 2 * p * kvd, np.uint16, kvd)[:] = bk.f32_to_f16(rotated(ks[t]).reshape(-1)).view(np.uint16)
        dev.view(vcache + 2 * p * kvd, np.uint16, kvd)[:] = bk.f32_to_f16(vs[t]).view(np.uint16)


def _gating(fn):
    def run(dev, grid, block, gate, up, n, out):
        assert grid[0] * block >= n
        dev.view(out, np.float32, n)[:] = fn(dev.view(gate, np.float32, n), dev.view(up, np.float32, n))
    return run


def attention_split(dev, grid, block, q, kcache, vcache, n_head, n_head_kv, head_dim, pos, chunk, scale, part_o,
                    part_ml):
    H, n_split, T = grid
    assert H == n_head and head_dim <= 256 and block <= 32 * 8
    kvd, group = n_head_kv * head_dim, n_head // n_head_kv
    qs = dev.view(q, np.float32, T * n_head * head_dim).reshape(T, n_head, head_dim)
    ps = dev.view(pos, np.int32, T)
    po = dev.view(part_o, np.float32, T * n_head * n_split * head_dim).reshape(T, n_head, n_split, head_dim)
    pm = dev.view(part_ml, np.float32, T * n_head * n_split * 2).reshape(T, n_head, n_split, 2)
    for t in range(T):
        n_kv = int(ps[t]) + 1
        keys = bk.f16_to_f32(dev.view(kcache, np.uint16, n_kv * kvd)).reshape(n_kv, n_head_kv, head_dim)
        vals = bk.f16_to_f32(dev.view(vcache, np.uint16, n_kv * kvd)).reshape(n_kv, n_head_kv, head_dim)
        for h in range(n_head):
            kh, vh = keys[:, h // group], vals[:, h // group]
            scores = (kh @ qs[t, h]).astype(np.float32) * np.float32(scale)
            for s in range(n_split):
                p0, p1 = s * chunk, min((s + 1) * chunk, n_kv)
                if p0 >= p1:
                    po[t, h, s], pm[t, h, s] = 0.0, (-math.inf, 0.0)
                    continue
                m = scores[p0:p1].max()
                e = np.exp(scores[p0:p1] - m)
                po[t, h, s], pm[t, h, s] = e @ vh[p0:p1], (m, e.sum())


def attention_combine(dev, grid, block, part_o, part_ml, n_head, head_dim, n_split, out):
    T = grid[1]
    assert grid[0] == n_head and block >= head_dim
    po = dev.view(part_o, np.float32, T * n_head * n_split * head_dim).reshape(T, n_head, n_split, head_dim)
    pm = dev.view(part_ml, np.float32, T * n_head * n_split * 2).reshape(T, n_head, n_split, 2)
    res = dev.view(out, np.float32, T * n_head * head_dim).reshape(T, n_head, head_dim)
    m = pm[..., 0].max(axis=2, keepdims=True)
    c = np.where(np.isneginf(pm[..., 0]), 0.0, np.exp(pm[..., 0] - m))
    res[:] = (c[..., None] * po).sum(axis=2) / (c * pm[..., 1]).sum(axis=2)[..., None]


def embed_rows(dev, grid, block, table, gtype, K, tokens, out):
    T = grid[1]
    assert grid[0] * block >= K
    toks = dev.view(tokens, np.int32, T)
    row_bytes = bk._weight_bytes(gtype, K, 1)
    rows = dev.view(out, np.float32, T * K).reshape(T, K)
    for t in range(T):
        r = int(toks[t])
        rows[t] = bk.dequant_row(gtype, dev.view(table + r * row_bytes, np.uint8, row_bytes), K, 0)


def argmax_blocks(dev, grid, block, logits, n, part):
    """Block b of the grid: the first index of the largest finite logit in its span [b * span, (b + 1) * span) and
    whether the span holds a non-finite one."""
    v, parts = dev.view(logits, np.float32, n), dev.view(part, ARGBEST, grid[0])
    span = -(-n // grid[0])
    for b in range(grid[0]):
        seg = v[b * span:min((b + 1) * span, n)]
        finite = np.isfinite(seg)
        best = int(np.argmax(np.where(finite, seg, -np.inf))) if finite.any() else None
        parts[b] = ((seg[best], b * span + best, int(not finite.all()), 0) if best is not None else
                    (-np.inf, NO_INDEX, int(seg.size > 0), 0))


def argmax(dev, grid, block, part, nparts, out):
    """The merge: the largest value, the smallest index among equals, the OR of the flags."""
    parts = dev.view(part, ARGBEST, nparts)
    best = min(range(nparts), key=lambda p: (-parts["v"][p], parts["i"][p]))
    i = int(parts["i"][best])
    dev.view(out, np.int32, 2)[:] = (0 if i == NO_INDEX else i, int(parts["bad"].any()))


KERNELS = {"norm_quant": norm_quant, "i2g_matmul": i2g_matmul, "rmsnorm": rmsnorm, "rope_store": rope_store,
           "relu2_mul": _gating(bk.relu2_mul), "silu_mul": _gating(bk.silu_mul),
           "attention_split": attention_split, "attention_combine": attention_combine, "embed_rows": embed_rows,
           "argmax_blocks": argmax_blocks, "argmax": argmax, **{name: _float_matmul(name) for name in F32_MATMULS}}
assert sorted(KERNELS) == sorted(PARAMS), "the emulator covers every kernel the launcher knows"


def has_gpu() -> bool:
    """Whether this machine has a GPU the CUDA backend can use (the real driver, not the emulator)."""
    from bitnet.backends.cuda import driver

    try:
        driver.CudaDevice().close()
    except driver.CudaUnavailableError:
        return False
    return True


# ---- a stand-in for cuda.bindings.driver under the real CudaDevice

class CUresult(enum.Enum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_IMAGE = 200
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222
    CUDA_ERROR_ILLEGAL_ADDRESS = 700


ERROR_TEXT = {CUresult.CUDA_SUCCESS: b"no error", CUresult.CUDA_ERROR_INVALID_IMAGE: b"device kernel image is invalid",
              CUresult.CUDA_ERROR_NO_DEVICE: b"no CUDA-capable device is detected",
              CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU: b"no kernel image is available for execution on the device",
              CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION: b"the provided PTX was compiled with an unsupported "
                                                           b"toolchain.",
              CUresult.CUDA_ERROR_ILLEGAL_ADDRESS: b"an illegal memory access was encountered"}
# the newest PTX ISA each driver's JIT reads (CUDA release notes), for the images the fake driver is given
DRIVER_PTX_ISA = [(11080, (7, 8)), (12000, (8, 0)), (12040, (8, 4)), (12080, (8, 7)), (12090, (8, 8)),
                  (13000, (9, 0))]


class FakeDriver:
    """cuda.bindings.driver as CudaDevice uses it, for a GPU of `capability` under a driver of `driver_version`.
    `loaded` is what cuModuleLoadData accepted: ('sass', arch), ('ptx', isa) or ('cubin',); `faults` names
    kernels whose launch poisons the context (the next cuStreamSynchronize fails with ILLEGAL_ADDRESS)."""

    CUresult = CUresult
    CUdevice_attribute = SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
                                         CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor")
    CUstream_flags = SimpleNamespace(CU_STREAM_NON_BLOCKING=SimpleNamespace(value=1))

    def __init__(self, capability: tuple[int, int], driver_version: int, name: str = "Fake GPU",
                 accept_cubin: bool = True, faults: set[str] = frozenset()):
        self.capability, self.driver_version, self.name = capability, driver_version, name
        self.accept_cubin, self.faults = accept_cubin, set(faults)
        self.loaded: tuple | None = None
        self.offered: list[str] = []       # the kinds of image offered, in order
        self.launched: list[str] = []
        self.synchronizations = 0
        self._sticky = CUresult.CUDA_SUCCESS
        self.released = False

    def cuGetErrorString(self, err):
        return CUresult.CUDA_SUCCESS, ERROR_TEXT[err]

    def cuInit(self, flags):
        return (CUresult.CUDA_SUCCESS,)

    def cuDriverGetVersion(self):
        return CUresult.CUDA_SUCCESS, self.driver_version

    def cuDeviceGetCount(self):
        return CUresult.CUDA_SUCCESS, 1

    def cuDeviceGet(self, ordinal):
        return CUresult.CUDA_SUCCESS, ordinal

    def cuDeviceGetAttribute(self, attr, dev):
        return CUresult.CUDA_SUCCESS, self.capability[0 if attr == "major" else 1]

    def cuDeviceGetName(self, size, dev):
        return CUresult.CUDA_SUCCESS, self.name.encode() + b"\0" * (size - len(self.name))

    def cuDevicePrimaryCtxRetain(self, dev):
        return CUresult.CUDA_SUCCESS, "context"

    def cuDevicePrimaryCtxRelease(self, dev):
        self.released = True
        return (CUresult.CUDA_SUCCESS,)

    def cuCtxSetCurrent(self, ctx):
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamCreate(self, flags):
        return CUresult.CUDA_SUCCESS, "stream"

    def cuStreamDestroy(self, stream):
        return (CUresult.CUDA_SUCCESS,)

    def cuModuleLoadData(self, image: bytes):
        """As the driver: a fatbin loads when it has SASS of the GPU's major version and a minor not above its
        own; PTX when the driver's JIT reads its ISA; a cubin (NVRTC's) as `accept_cubin` says."""
        if image[:4] == struct.pack("<I", 0xBA55ED50):
            self.offered.append("fatbin")
            _, _, header, size = struct.unpack_from("<IHHQ", image)
            off, archs = header, []
            while off < header + size:
                kind, _, entry_header, payload = struct.unpack_from("<HHIQ", image, off)
                if kind == 2:
                    archs.append(struct.unpack_from("<I", image, off + 28)[0])
                off += entry_header + payload
            major, minor = self.capability
            runs = [a for a in archs if a // 10 == major and a % 10 <= minor]
            if not runs:
                return CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU, None
            self.loaded = ("sass", max(runs))
        elif image[:4] == b"\x7fELF":
            self.offered.append("cubin")
            if not self.accept_cubin:
                return CUresult.CUDA_ERROR_INVALID_IMAGE, None
            self.loaded = ("cubin",)
        else:
            self.offered.append("ptx")
            isa = tuple(int(v) for v in re.search(rb"\.version (\d+)\.(\d+)", image).groups())
            readable = max((i for v, i in DRIVER_PTX_ISA if v <= self.driver_version), default=(0, 0))
            if isa > readable:
                return CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION, None
            self.loaded = ("ptx", isa)
        return CUresult.CUDA_SUCCESS, "module"

    def cuModuleGetFunction(self, module, name: bytes):
        return CUresult.CUDA_SUCCESS, name.decode()

    def cuModuleUnload(self, module):
        return (CUresult.CUDA_SUCCESS,)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        self.launched.append(fn)
        if fn in self.faults:
            self._sticky = CUresult.CUDA_ERROR_ILLEGAL_ADDRESS
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamSynchronize(self, stream):
        self.synchronizations += 1
        return (self._sticky,)


def make_fatbin(archs: list[int], ptx_archs: list[int] = (80,)) -> bytes:
    """A fatbin laid out as nvcc writes one (see FakeDriver.cuModuleLoadData), with an ELF entry per arch of `archs`
    and a PTX entry per arch of `ptx_archs` (payloads are placeholders: nothing here runs them)."""
    entries = b""
    for kind, arch in [(1, a) for a in ptx_archs] + [(2, a) for a in archs]:
        payload = (b"\x7fELF" if kind == 2 else b".version 9.0\0") + bytes(52)
        header = struct.pack("<HHIQIIII", kind, 0x0101, 64, len(payload), 0, 0, 0x10008, arch) + bytes(32)
        entries += header + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(entries)) + entries
