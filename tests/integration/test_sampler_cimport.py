"""Other Cython code can cimport the sampler and draw tokens without the GIL through its .pxd."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bitnet.sampling
from bitnet.sampling import Sampler

pytest.importorskip("Cython")

# Raw addresses instead of typed memoryviews keep the generated C small, so the build takes seconds.
CALLER = '''
from libc.stdint cimport int64_t, uintptr_t
from bitnet.sampling._sampler cimport Sampler, SAMPLE_ERR_NAN


def draw(Sampler sampler, uintptr_t logits, Py_ssize_t n_vocab, uintptr_t history, Py_ssize_t n_history,
         int n):
    cdef Py_ssize_t token
    tokens = []
    for _ in range(n):
        with nogil:
            token = sampler.sample_ptr(<const float*>logits, n_vocab, <const int64_t*>history, n_history)
        tokens.append(token)
    return tokens


def nan_code():
    return SAMPLE_ERR_NAN
'''

SETUP = '''
from Cython.Build import cythonize
from setuptools import Extension, setup

# -O0: only the cimport and the call matter here, and an unoptimized build is several times faster.
setup(ext_modules=cythonize([Extension("sampler_caller", ["sampler_caller.pyx"], extra_compile_args=["-O0"])],
                            include_path=[{root!r}], language_level=3, quiet=True))
'''


@pytest.fixture(scope="module")
def caller(tmp_path_factory):
    compiler = (sysconfig.get_config_var("CC") or "").split()
    if sys.platform != "win32" and (not compiler or shutil.which(compiler[0]) is None):
        pytest.skip("no C compiler to build a module that cimports the sampler")
    build = tmp_path_factory.mktemp("cimport")
    package_root = str(Path(bitnet.sampling.__file__).resolve().parents[2])
    (build / "sampler_caller.pyx").write_text(CALLER)
    (build / "setup.py").write_text(textwrap.dedent(SETUP.format(root=package_root)))
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=build,
                            check=False, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"building a module that cimports the sampler failed:\n{result.stdout}\n{result.stderr}")
    sys.path.insert(0, str(build))
    try:
        import sampler_caller
    finally:
        sys.path.remove(str(build))
    return sampler_caller


def test_sample_ptr_without_the_gil_matches_sample(caller):
    x = np.random.default_rng(0).normal(0, 2, 5000).astype(np.float32)
    history = np.array([3, 17, 17, 4000], dtype=np.int64)
    settings = {"temperature": 0.9, "top_k": 50, "repeat_penalty": 1.3, "seed": 77}
    sampler = Sampler(**settings)
    via_cimport = caller.draw(sampler, x.ctypes.data, x.size, history.ctypes.data, history.size, 200)
    python = Sampler(**settings)
    assert via_cimport == [python.sample(x, history) for _ in range(200)]


def test_sample_ptr_reports_bad_input_with_negative_codes(caller):
    x = np.zeros(10, dtype=np.float32)
    x[2] = np.nan
    assert caller.draw(Sampler(seed=1), x.ctypes.data, x.size, 0, 0, 1) == [caller.nan_code()]
    assert caller.nan_code() < 0
