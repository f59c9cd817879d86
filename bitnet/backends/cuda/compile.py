"""Which image of the kernels a GPU loads, in order: SASS for its compute capability from kernels.fatbin, else the PTX
of kernels.ptx (JIT-compiled by the driver, which must read its PTX ISA), else a cubin compiled now by NVRTC for
exactly this GPU (the nvidia-cuda-nvrtc wheel of the `.[cuda]` extra). The two files are built by nvcc with the
package (bitnet/backends/cuda/build.py); an install built without nvcc has neither and uses NVRTC.

`kernel_images` decides on the host, from the device's compute capability and the driver's CUDA version
(cuDriverGetVersion), so that a GPU/driver pair with no usable image gets one error saying what the driver
supports and what the package needs, not CUDA_ERROR_UNSUPPORTED_PTX_VERSION from deep in a load.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bitnet.errors import BitNetError

SOURCE = Path(__file__).with_name("kernels.cu")
BUILT_PTX = Path(__file__).with_name("kernels.ptx")         # written by setup.py's build_ext when nvcc was there
BUILT_FATBIN = Path(__file__).with_name("kernels.fatbin")   # likewise: SASS per architecture

# The oldest driver (cuDriverGetVersion: 1000 * major + 10 * minor) whose JIT reads each PTX ISA version.
PTX_ISA_DRIVER = {(7, 8): 11080, (8, 0): 12000, (8, 1): 12010, (8, 2): 12020, (8, 3): 12030, (8, 4): 12040,
                  (8, 5): 12050, (8, 6): 12070, (8, 7): 12080, (8, 8): 12090, (9, 0): 13000}
DRIVER_BRANCH = {13000: "R580"}     # the driver branch that first shipped a CUDA version, where the message names it

FATBIN_MAGIC = 0xBA55ED50
FATBIN_ELF = 2                      # entry kinds: 1 PTX, 2 ELF (SASS)


class CudaCompileError(BitNetError):
    """kernels.cu did not compile (the message carries the compiler's log)."""


@dataclass(frozen=True)
class KernelImage:
    """One way to load the kernels: `what` names it in messages and in CudaDevice.image; `data` makes the bytes
    cuModuleLoadData takes (lazily: NVRTC compiles only when the images before it were refused)."""

    what: str
    data: Callable[[], bytes]


def cuda_version(v: int) -> str:
    """cuDriverGetVersion's 12040 as '12.4'."""
    return f"{v // 1000}.{v % 1000 // 10}"


def ptx_isa(ptx: str) -> tuple[int, int]:
    """The `.version` of a PTX text."""
    m = re.search(r"^\s*\.version\s+(\d+)\.(\d+)", ptx, re.MULTILINE)
    if not m:
        raise CudaCompileError("the kernels' PTX has no .version line")
    return int(m.group(1)), int(m.group(2))


def fatbin_sass(data: bytes) -> list[int]:
    """The architectures (80 for sm_80, ...) of the SASS images in an nvcc fatbin: a 16-byte header (magic, version,
    header size, payload size), then entries of (kind u16, version u16, header size u32, payload size u64, ...,
    architecture u32 at byte 28 of the entry)."""
    if len(data) < 16 or struct.unpack_from("<I", data)[0] != FATBIN_MAGIC:
        raise CudaCompileError("kernels.fatbin is not an nvcc fatbin (bad magic): rebuild the package with nvcc")
    _, _, header, size = struct.unpack_from("<IHHQ", data)
    archs, off, end = [], header, min(header + size, len(data))
    while off + 32 <= end:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, off)
        if entry_header < 32:
            raise CudaCompileError(f"kernels.fatbin has a malformed entry at byte {off}: rebuild the package")
        if kind == FATBIN_ELF:
            archs.append(struct.unpack_from("<I", data, off + 28)[0])
        off += entry_header + payload
    return sorted(set(archs))


def sass_for(archs: list[int], capability: tuple[int, int]) -> int | None:
    """The SASS of `archs` a GPU of `capability` runs: the same major version and the highest minor not above the
    GPU's (SASS of sm_XY runs on sm_XZ for Z >= Y, never across major versions); None when there is none."""
    major, minor = capability
    fits = [a for a in archs if a // 10 == major and a % 10 <= minor]
    return max(fits) if fits else None


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return None
    return nvrtc


def kernel_images(capability: tuple[int, int], driver_version: int, fatbin: Path | None = None,
                  ptx: Path | None = None, nvrtc="auto") -> tuple[list[KernelImage], list[str]]:
    """(the images to try in order, why each other one is not tried) for a GPU of `capability` under a driver of
    `driver_version`. fatbin/ptx: the built files (default: the package's); nvrtc: the cuda.bindings.nvrtc module,
    None for none (default: import it if installed)."""
    fatbin = BUILT_FATBIN if fatbin is None else fatbin
    ptx = BUILT_PTX if ptx is None else ptx
    nvrtc = _nvrtc() if nvrtc == "auto" else nvrtc
    sm = f"sm_{capability[0]}{capability[1]}"
    images: list[KernelImage] = []
    skipped: list[str] = []
    if fatbin.exists():
        data = fatbin.read_bytes()
        archs = fatbin_sass(data)
        arch = sass_for(archs, capability)
        if arch is not None:
            images.append(KernelImage(f"SASS sm_{arch} (kernels.fatbin)", lambda: data))
        else:
            skipped.append(f"kernels.fatbin has no SASS for {sm} (it has {', '.join(f'sm_{a}' for a in archs)})")
    else:
        skipped.append("no kernels.fatbin (the package was built without nvcc)")
    if ptx.exists():
        text = ptx.read_text()
        isa = ptx_isa(text)
        need = PTX_ISA_DRIVER.get(isa)
        if need is None or driver_version >= need:
            images.append(KernelImage(f"PTX ISA {isa[0]}.{isa[1]} (kernels.ptx)", lambda: text.encode() + b"\0"))
        else:
            branch = f", {DRIVER_BRANCH[need]}+" if need in DRIVER_BRANCH else ""
            skipped.append(f"kernels.ptx is PTX ISA {isa[0]}.{isa[1]}, which needs a driver for CUDA "
                           f"{cuda_version(need)} or newer{branch}")
    else:
        skipped.append("no kernels.ptx")
    if nvrtc is not None:
        images.append(KernelImage(f"NVRTC cubin for {sm}", lambda: compile_with_nvrtc(
            SOURCE.read_text(), sm, nvrtc, cubin=True)))
    else:
        skipped.append("no NVRTC (pip install 'bitnet-engine[cuda]')")
    return images, skipped


def no_image_error(gpu: str, capability: tuple[int, int], driver_version: int, refused: list[str]) -> str:
    """The one-line reason no image loaded: the driver's CUDA version, each image's fate, and what would work."""
    sm = f"sm_{capability[0]}{capability[1]}"
    need = max(PTX_ISA_DRIVER.values())
    return (f"device='cuda': none of the kernels' images loads on {gpu} ({sm}) under this NVIDIA driver, which "
            f"supports CUDA {cuda_version(driver_version)} (cuDriverGetVersion {driver_version}): "
            f"{'; '.join(refused)}. The package needs SASS for {sm} in kernels.fatbin (build it with an nvcc that "
            f"targets {sm}) or a driver for CUDA {cuda_version(need)} or newer ({DRIVER_BRANCH[need]}+)")


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


def compile_with_nvrtc(source: str, arch: str, nvrtc=None, cubin: bool = False):
    """PTX text of `source` for a virtual architecture such as 'compute_90', or with cubin=True the cubin bytes for a
    real one such as 'sm_90' (SASS: the driver loads it without reading any PTX ISA)."""
    if nvrtc is None:
        from cuda.bindings import nvrtc
    prog, = _check(nvrtc.nvrtcCreateProgram(source.encode(), b"kernels.cu", 0, [], []), "nvrtcCreateProgram",
                   nvrtc)
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        _check(nvrtc.nvrtcCompileProgram(prog, len(opts), opts), "compilation", nvrtc, prog)
        kind = "CUBIN" if cubin else "PTX"
        size, = _check(getattr(nvrtc, f"nvrtcGet{kind}Size")(prog), f"nvrtcGet{kind}Size", nvrtc)
        buf = b" " * size
        _check(getattr(nvrtc, f"nvrtcGet{kind}")(prog, buf), f"nvrtcGet{kind}", nvrtc)
        return buf if cubin else buf.rstrip(b"\0").decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def kernels_ptx() -> str:
    """The kernels' PTX: the one built with the package, else compiled now with NVRTC (compute_80)."""
    if BUILT_PTX.exists():
        return BUILT_PTX.read_text()
    nvrtc = _nvrtc()
    if nvrtc is None:
        raise CudaCompileError("this install has no prebuilt CUDA kernels (nvcc was absent at build time) and no "
                               "NVRTC to compile them: pip install 'bitnet-engine[cuda]'")
    return compile_with_nvrtc(SOURCE.read_text(), "compute_80", nvrtc)


__all__ = ["BUILT_FATBIN", "BUILT_PTX", "CudaCompileError", "KernelImage", "PTX_ISA_DRIVER", "SOURCE",
           "compile_with_nvrtc", "cuda_version", "fatbin_sass", "kernel_images", "kernels_ptx", "no_image_error",
           "ptx_isa", "sass_for"]
