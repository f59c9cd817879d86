"""kernels.cu built with nvcc at package build time (setup.py's build_ext calls `build_kernels`), into two package
data files beside it:

- kernels.fatbin: SASS (machine code) for each architecture of SASS_ARCHS that this nvcc can target. A GPU whose
  compute capability has an image here loads it as is: no JIT, and no dependence on the driver reading the PTX
  ISA of this nvcc (PTX ISA 9.0 from CUDA 13 needs a CUDA 13 driver, R580+; the SASS loads on older ones).
- kernels.ptx: PTX for compute_80, which the driver JIT-compiles for any other GPU of sm_80 or newer.

Standard library only: setup.py runs this file by path, before the package can be imported. Without nvcc nothing
is built and the backend compiles kernels.cu with NVRTC at run time (bitnet/backends/cuda/compile.py).

After editing kernels.cu in a checkout: `python bitnet/backends/cuda/build.py` rebuilds both in the source tree.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

PTX_ARCH = "compute_80"
# Ampere (sm_80 A100, sm_86), Ada (sm_89), Hopper (sm_90), Blackwell (sm_100 B200, sm_110 Thor, sm_120 RTX 50).
# SASS of sm_XY runs on sm_XZ for Z >= Y, so sm_87 takes sm_86's, sm_103 sm_100's, sm_121 sm_120's.
SASS_ARCHS = (80, 86, 89, 90, 100, 110, 120)
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.cu")


def nvcc_sass_archs(nvcc: str) -> list[int]:
    """The SASS_ARCHS this nvcc can emit (`nvcc --list-gpu-code`; older toolkits lack the newest)."""
    out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, check=True, timeout=60).stdout
    listed = {int(m) for m in re.findall(r"^sm_(\d+)$", out, re.MULTILINE)}
    return [a for a in SASS_ARCHS if a in listed]


def build_kernels(out_dir: str, source: str = SOURCE, nvcc: str | None = None) -> list[str]:
    """Write kernels.ptx and kernels.fatbin into out_dir with nvcc (found on PATH when not given); returns the paths
    written. Raises RuntimeError with nvcc's message when it fails."""
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc is not on PATH")
    os.makedirs(out_dir, exist_ok=True)
    ptx, fatbin = os.path.join(out_dir, "kernels.ptx"), os.path.join(out_dir, "kernels.fatbin")
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in nvcc_sass_archs(nvcc)]
    # the fatbin holds SASS only: a GPU with no image in it must fall through to kernels.ptx or NVRTC, where the
    # loader can say which PTX ISA the driver lacks, not JIT a PTX copy silently
    for cmd in ([nvcc, "-ptx", f"-arch={PTX_ARCH}", "-o", ptx, source],
                [nvcc, "-fatbin", "--threads", "0", *gencode, "-o", fatbin, source]):
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return [ptx, fatbin]


if __name__ == "__main__":
    for path in build_kernels(os.path.dirname(SOURCE)):
        print(path)
    sys.exit(0)
