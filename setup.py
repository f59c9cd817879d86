"""Build the compiled core: GGUF loader, kernels, forward pass and sampler (Cython + C, OpenMP).

One portable x86-64 build carries every ISA variant of the hot kernels (chosen at import time through
function-level target attributes), so no `-march=native` is ever passed. BITNET_BUILD_NATIVE=1 is a
developer-only escape hatch for profiling.
"""
import os
import platform
import runpy
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

machine = platform.machine().lower()
is_wasm = sys.platform == "emscripten"
is_msvc = sys.platform == "win32"

compile_args = ["/O2", "/openmp"] if is_msvc else ["-O3", "-fno-math-errno", "-fno-trapping-math"]
link_args = []
is_macos = sys.platform == "darwin"


def libomp_prefix() -> str:
    """Homebrew's libomp (`brew install libomp`): Apple's clang has the OpenMP front end but ships no runtime."""
    candidates = [os.environ.get("BITNET_LIBOMP_PREFIX", ""), "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"]
    for prefix in candidates:
        if prefix and os.path.isfile(os.path.join(prefix, "include", "omp.h")):
            return prefix
    sys.exit("building on macOS needs OpenMP: `brew install libomp` (or set BITNET_LIBOMP_PREFIX)")


if is_macos:
    omp = libomp_prefix()
    compile_args += ["-Xpreprocessor", "-fopenmp", f"-I{omp}/include"]
    link_args += [f"-L{omp}/lib", "-lomp"]
elif not is_msvc and not is_wasm:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if is_wasm:
    compile_args.append("-msimd128")
if os.environ.get("BITNET_BUILD_NATIVE") == "1" and not is_msvc:
    compile_args.append("-march=native")

KERNEL_DIR = "bitnet/backends/cpu/kernels"
kernel_sources = [
    f"{KERNEL_DIR}/src/{name}.c"
    for name in ("cpu_features", "dispatch", "kernels_scalar", "kernels_x86", "kernels_amx", "kernels_arm",
                 "kernels_wasm", "lut", "ops", "repack")
]


# Headers the C sources include: listed so that editing one rebuilds the extensions that use it.
kernel_headers = [f"{KERNEL_DIR}/src/{name}" for name in sorted(os.listdir(f"{KERNEL_DIR}/src")) if name.endswith(".h")]


def ext(name: str, pyx: str, sources: list[str] = ()) -> Extension:
    return Extension(
        name,
        [pyx, *sources],
        depends=kernel_headers if sources else [],
        include_dirs=[np.get_include(), f"{KERNEL_DIR}/src"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


extensions = [
    ext("bitnet.gguf._reader", "bitnet/gguf/_reader.pyx"),
    ext("bitnet.backends.cpu.kernels._kernels", f"{KERNEL_DIR}/_kernels.pyx", kernel_sources),
    # The forward pass calls the portable light ops directly (stateless C, linked in) and reaches the ISA
    # kernels through the dispatch table exported by bitnet.backends.cpu.kernels._kernels.
    ext("bitnet.backends.cpu._forward", "bitnet/backends/cpu/_forward.pyx", [f"{KERNEL_DIR}/src/ops.c"]),
    ext("bitnet.sampling._sampler", "bitnet/sampling/_sampler.pyx"),
]

# Developer convenience: BITNET_EXTENSIONS=bitnet.backends.cpu.kernels._kernels,... rebuilds only those in place.
only = [name for name in os.environ.get("BITNET_EXTENSIONS", "").split(",") if name]
if only:
    extensions = [e for e in extensions if e.name in only]

# libbitnet (the C ABI, capi/) is built after the extensions by capi/setup_hook.py; run by path because the
# build backend does not put the project root on sys.path.
CAPIBuildExt = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "capi", "setup_hook.py"))[
    "CAPIBuildExt"]


# The CUDA kernels, when nvcc is here: kernels.fatbin (SASS for sm_80 .. sm_120, loaded without JIT and by drivers
# older than the PTX's ISA) and kernels.ptx (compute_80, JIT-compiled for other GPUs), written by
# bitnet/backends/cuda/build.py (run by path: the package cannot be imported yet). Without nvcc the backend
# compiles the shipped kernels.cu with NVRTC at run time (bitnet/backends/cuda/compile.py).
CUDA_DIR = os.path.join("bitnet", "backends", "cuda")
CUDA_OUTPUTS = ("kernels.ptx", "kernels.fatbin")


class BuildExt(CAPIBuildExt):
    def run(self) -> None:
        super().run()
        import shutil

        if shutil.which("nvcc") is None or is_wasm:
            return
        build_kernels = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), CUDA_DIR,
                                                    "build.py"))["build_kernels"]
        out_dir = CUDA_DIR if self.inplace else os.path.join(self.build_lib, CUDA_DIR)
        try:
            build_kernels(out_dir, os.path.join(CUDA_DIR, "kernels.cu"))
        except RuntimeError as e:
            print(f"warning: nvcc could not build the CUDA kernels (NVRTC will compile them at run time): {e}")

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        built = [os.path.join(self.build_lib, CUDA_DIR, name) for name in CUDA_OUTPUTS]
        return outputs + ([] if self.inplace else [p for p in built if os.path.exists(p)])


setup(
    cmdclass={"build_ext": BuildExt},
    # The four extensions compile independently: one per core halves a newcomer's `pip install .` on two cores.
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
        include_path=["bitnet"],
    ),
)
