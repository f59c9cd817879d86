"""kernels.cu to PTX: the PTX built into the package by nvcc when it was present at build time, else NVRTC at
run time (the nvidia-cuda-nvrtc wheel of the `.[cuda]` extra, pinned to CUDA 13.0, whose PTX ISA the lent
machines' driver accepts)."""
from __future__ import annotations

from pathlib import Path

from bitnet.errors import BitNetError

SOURCE = Path(__file__).with_name("kernels.cu")
BUILT_PTX = Path(__file__).with_name("kernels.ptx")   # written by setup.py's build_ext when nvcc was there


class CudaCompileError(BitNetError):
    """kernels.cu did not compile (the message carries the compiler's log)."""


def _check(result, what: str, nvrtc, prog=None) -> tuple:
    err, *rest = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        log = ""
        if prog is not None:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            buf = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, buf)
            log = buf.rstrip(b"\0").decode(errors="replace").strip()
        raise CudaCompileError(f"NVRTC {what} failed ({err.name}){': ' + log if log else ''}")
    return tuple(rest)


def compile_with_nvrtc(source: str, arch: str, nvrtc=None) -> str:
    """PTX text of `source` for a virtual architecture such as 'compute_90'."""
    if nvrtc is None:
        from cuda.bindings import nvrtc
    prog, = _check(nvrtc.nvrtcCreateProgram(source.encode(), b"kernels.cu", 0, [], []), "nvrtcCreateProgram",
                   nvrtc)
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        _check(nvrtc.nvrtcCompileProgram(prog, len(opts), opts), "compilation", nvrtc, prog)
        size, = _check(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize", nvrtc)
        buf = b" " * size
        _check(nvrtc.nvrtcGetPTX(prog, buf), "nvrtcGetPTX", nvrtc)
        return buf.rstrip(b"\0").decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def kernels_ptx() -> str:
    """The kernels' PTX: the one built with the package, else compiled now with NVRTC (compute_80)."""
    if BUILT_PTX.exists():
        return BUILT_PTX.read_text()
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        raise CudaCompileError("this install has no prebuilt CUDA kernels (nvcc was absent at build time) and no "
                               "NVRTC to compile them: pip install 'bitnet-engine[cuda]'") from None
    return compile_with_nvrtc(SOURCE.read_text(), "compute_80", nvrtc)


__all__ = ["BUILT_PTX", "CudaCompileError", "SOURCE", "compile_with_nvrtc", "kernels_ptx"]
