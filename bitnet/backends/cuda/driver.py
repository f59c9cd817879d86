"""The GPU as the CUDA forward pass sees it: memory, copies, kernel launches and CUDA graphs, over `cuda.bindings`
(the driver API of the `.[cuda]` extra; no PyTorch, no CuPy).

The forward pass (bitnet/backends/cuda/forward.py) talks only to the small interface of `CudaDevice`, so the tests can
run it against an emulated device whose kernels are the CPU kernels (tests/helpers/cuda_emulator.py). Device addresses
are plain ints; offsets into a buffer are added to them.

PARAMS declares each kernel's parameters ('p' pointer, 'i' int, 'q' int64, 'f' float), in the order of
kernels.cu (a test holds the two together), so that a launch packs exactly the C types the kernel reads.

Kernels run asynchronously: a fault inside one surfaces at the next synchronization. So `ran` (the receipts'
kernels) takes a launch only once a synchronization after it succeeded, and with BITNET_CUDA_SYNC=1 every
launch is followed by one, which names the kernel that faulted.
"""
from __future__ import annotations

import ctypes

from bitnet.errors import BitNetError

PARAMS: dict[str, str] = {
    "norm_quant": "ppipifipp",
    "i2g_matmul": "pppiiiippifffpppi",
    "f16_matmul": "piipipii",
    "bf16_matmul": "piipipii",
    "f32_matmul": "piipipii",
    "q80_matmul": "piipipii",
    "rmsnorm": "ppifp",
    "rope_store": "pppiiippipp",
    "relu2_mul": "ppqp",
    "silu_mul": "ppqp",
    "attention_split": "pppiiipifpp",
    "attention_combine": "ppiiip",
    "embed_rows": "piipp",
    "argmax_blocks": "pip",
    "argmax": "pip",
}
_CTYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int, "q": ctypes.c_longlong, "f": ctypes.c_float}
MIN_CAPABILITY = (8, 0)   # dp4a everywhere, but the kernels are built and tested for sm_80 and newer


class CudaUnavailableError(BitNetError):
    """device="cuda" was asked for where there is no usable GPU (no extra, no driver, no device, too old)."""


class CudaError(BitNetError):
    """A CUDA driver call failed."""


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        raise CudaUnavailableError("device='cuda' needs the CUDA extra: pip install 'bitnet-engine[cuda]' "
                                   "(cuda-bindings is not installed)") from None
    return driver


def _check(driver, result, what: str):
    """The value(s) of a driver call, or CudaError naming the call and the driver's error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        _, text = driver.cuGetErrorString(err)
        raise CudaError(f"{what} failed: {err.name} ({text.decode() if isinstance(text, bytes) else text})")
    return rest[0] if len(rest) == 1 else tuple(rest) if rest else None


def _error_text(driver, err) -> str:
    _, text = driver.cuGetErrorString(err)
    return f"{err.name} ({text.decode() if isinstance(text, bytes) else text})"


class CudaDevice:
    """One GPU, its primary context, one stream, and the kernels of kernels.cu loaded from PTX."""

    def __init__(self, ordinal: int = 0):
        from bitnet.settings import cuda_sync

        d = self._d = _driver()
        self._allocations: list[int] = []
        self._module = self._stream = None
        try:
            err, = d.cuInit(0)
        except RuntimeError as e:        # cuda.bindings could not dlopen libcuda: no NVIDIA driver here
            raise CudaUnavailableError(f"device='cuda' needs an NVIDIA GPU and its driver: {e}") from None
        if err == d.CUresult.CUDA_ERROR_NO_DEVICE:
            raise CudaUnavailableError("device='cuda': the NVIDIA driver found no CUDA GPU")
        _check(d, (err,), "cuInit")
        self.driver_version = int(_check(d, d.cuDriverGetVersion(), "cuDriverGetVersion"))
        count = _check(d, d.cuDeviceGetCount(), "cuDeviceGetCount")
        if not 0 <= ordinal < count:
            raise CudaUnavailableError(f"device='cuda': GPU {ordinal} asked for, {count} present")
        self._dev = _check(d, d.cuDeviceGet(ordinal), "cuDeviceGet")
        attr = d.CUdevice_attribute
        self.capability = (
            _check(d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self._dev), "cc"),
            _check(d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self._dev), "cc"))
        name = _check(d, d.cuDeviceGetName(256, self._dev), "cuDeviceGetName")
        self.name = name.split(b"\0")[0].decode()
        if self.capability < MIN_CAPABILITY:
            raise CudaUnavailableError(f"device='cuda': {self.name} is sm_{self.capability[0]}{self.capability[1]};"
                                       f" the kernels need sm_{MIN_CAPABILITY[0]}{MIN_CAPABILITY[1]} or newer")
        self._ctx = _check(d, d.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")
        self.activate()
        self._stream = _check(d, d.cuStreamCreate(d.CUstream_flags.CU_STREAM_NON_BLOCKING.value), "cuStreamCreate")
        try:
            self._module, self.image = self._load_kernels()
        except BaseException:
            self.close()        # the stream and the context reference go with the failed device
            raise
        self._functions = {name: _check(d, d.cuModuleGetFunction(self._module, name.encode()),
                                        f"cuModuleGetFunction({name})") for name in PARAMS}
        self.sync_launches = cuda_sync()
        self.ran: set[str] = set()        # kernels whose launch a successful synchronization followed, since reset
        self._pending: set[str] = set()   # launched (directly or in a replayed graph), not yet synchronized
        self._capturing: set[str] | None = None
        self._graph_kernels: dict[int, frozenset[str]] = {}

    def _load_kernels(self):
        """(module, what was loaded): the first image of compile.kernel_images the driver accepts (SASS for this
        GPU, then PTX, then an NVRTC cubin), else CudaUnavailableError naming the driver's CUDA version and why
        each image was refused."""
        from bitnet.backends.cuda.compile import CudaCompileError, kernel_images, no_image_error

        d = self._d
        images, refused = kernel_images(self.capability, self.driver_version)
        for image in images:
            try:
                data = image.data()
            except CudaCompileError as e:
                refused.append(f"{image.what} did not compile ({str(e).splitlines()[0]})")
                continue
            err, module = d.cuModuleLoadData(data)
            if err == d.CUresult.CUDA_SUCCESS:
                return module, image.what
            refused.append(f"the driver refused {image.what} ({err.name})")
        raise CudaUnavailableError(no_image_error(self.name, self.capability, self.driver_version, refused))

    def activate(self) -> None:
        """Make this GPU's context current on the calling thread: each entry point of the forward pass calls it,
        since a server evaluates on worker threads and a driver call without a current context fails."""
        _check(self._d, self._d.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    # -- memory
    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory."""
        self.activate()
        return tuple(int(v) for v in _check(self._d, self._d.cuMemGetInfo(), "cuMemGetInfo"))

    def alloc(self, nbytes: int) -> int:
        self.activate()
        ptr = int(_check(self._d, self._d.cuMemAlloc(max(int(nbytes), 1)), f"cuMemAlloc({nbytes} bytes)"))
        self._allocations.append(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr in self._allocations:
            self._allocations.remove(ptr)
            self.activate()     # a context's cache may be freed by the garbage collector on any thread
            _check(self._d, self._d.cuMemFree(ptr), "cuMemFree")

    def upload(self, ptr: int, host, nbytes: int | None = None) -> None:
        """Copy a host buffer (bytes, memoryview, numpy array) to the device, in stream order."""
        view = memoryview(host).cast("B")
        n = view.nbytes if nbytes is None else nbytes
        _check(self._d, self._d.cuMemcpyHtoDAsync(ptr, view, n, self._stream), "cuMemcpyHtoDAsync")

    def download(self, host, ptr: int, nbytes: int | None = None) -> None:
        """Copy device memory into a writable host buffer and wait for it."""
        view = memoryview(host).cast("B")
        n = view.nbytes if nbytes is None else nbytes
        _check(self._d, self._d.cuMemcpyDtoHAsync(view, ptr, n, self._stream), "cuMemcpyDtoHAsync")
        self.synchronize()

    def memset(self, ptr: int, nbytes: int) -> None:
        _check(self._d, self._d.cuMemsetD8Async(ptr, 0, nbytes, self._stream), "cuMemsetD8Async")

    # -- kernels
    def launch(self, name: str, grid: tuple[int, ...], block: int, *args) -> None:
        sig = PARAMS[name]
        if len(args) != len(sig):
            raise TypeError(f"{name} takes {len(sig)} arguments ({sig}), got {len(args)}")
        gx, gy, gz = (tuple(grid) + (1, 1))[:3]
        params = (tuple(args), tuple(_CTYPES[c] for c in sig))
        _check(self._d, self._d.cuLaunchKernel(self._functions[name], gx, gy, gz, block, 1, 1, 0, self._stream,
                                               params, 0), f"launching {name}")
        if self._capturing is not None:    # recorded, not run: no synchronization can follow inside a capture
            self._capturing.add(name)
            return
        self._pending.add(name)
        if self.sync_launches:
            self._sync(f"kernel {name} failed (BITNET_CUDA_SYNC=1 synchronized after its launch)")

    def synchronize(self) -> None:
        self._sync("cuStreamSynchronize failed")

    def _sync(self, what: str) -> None:
        """Wait for the stream; its kernels count as run only when no error came back (a faulted kernel poisons
        the context, so nothing launched since the last good synchronization is claimed)."""
        err, = self._d.cuStreamSynchronize(self._stream)
        pending, self._pending = self._pending, set()
        if err != self._d.CUresult.CUDA_SUCCESS:
            blame = ("" if self.sync_launches or not pending else
                     f"; one of {', '.join(sorted(pending))} faulted: BITNET_CUDA_SYNC=1 names which")
            raise CudaError(f"{what}: {_error_text(self._d, err)}{blame}")
        self.ran |= pending

    def reset_ran(self) -> None:
        self.ran.clear()
        self._pending.clear()

    # -- CUDA graphs: the launches between begin_capture and end_capture are recorded, not run
    def begin_capture(self) -> None:
        mode = self._d.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        _check(self._d, self._d.cuStreamBeginCapture(self._stream, mode), "cuStreamBeginCapture")
        self._capturing = set()

    def end_capture(self):
        names, self._capturing = frozenset(self._capturing or ()), None
        graph = _check(self._d, self._d.cuStreamEndCapture(self._stream), "cuStreamEndCapture")
        try:
            exe = _check(self._d, self._d.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        finally:
            self._d.cuGraphDestroy(graph)
        self._graph_kernels[int(exe)] = names
        return exe

    def replay(self, graph) -> None:
        _check(self._d, self._d.cuGraphLaunch(graph, self._stream), "cuGraphLaunch")
        self._pending |= self._graph_kernels.get(int(graph), frozenset())

    def destroy_graph(self, graph) -> None:
        self._graph_kernels.pop(int(graph), None)
        self._d.cuGraphExecDestroy(graph)

    # -- timing (tools/checks/gpu_check.py)
    def timer(self):
        """A pair of events; `elapsed_ms(pair)` after recording both with `record(event)`."""
        flags = self._d.CUevent_flags.CU_EVENT_DEFAULT.value
        return (_check(self._d, self._d.cuEventCreate(flags), "cuEventCreate"),
                _check(self._d, self._d.cuEventCreate(flags), "cuEventCreate"))

    def record(self, event) -> None:
        _check(self._d, self._d.cuEventRecord(event, self._stream), "cuEventRecord")

    def elapsed_ms(self, pair) -> float:
        _check(self._d, self._d.cuEventSynchronize(pair[1]), "cuEventSynchronize")
        return float(_check(self._d, self._d.cuEventElapsedTime(pair[0], pair[1]), "cuEventElapsedTime"))

    def close(self) -> None:
        for ptr in list(getattr(self, "_allocations", ())):
            self.free(ptr)
        if getattr(self, "_module", None) is not None:
            self._d.cuModuleUnload(self._module)
            self._module = None
        if getattr(self, "_stream", None) is not None:
            self._d.cuStreamDestroy(self._stream)
            self._stream = None
            self._d.cuDevicePrimaryCtxRelease(self._dev)


__all__ = ["CudaDevice", "CudaError", "CudaUnavailableError", "MIN_CAPABILITY", "PARAMS"]
