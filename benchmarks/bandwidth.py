"""The machine's read bandwidth from a compiled probe (benchmarks/probe/bandwidth_probe.c): the decode ceiling.

numpy's threaded reductions (and the engine's own 64-bit `stream_read`) under-state it on CPUs with 512-bit
loads; the probe reads with the widest vectors the CPU has, on the same number of threads as the decode it is
compared with. It is compiled once per machine into benchmarks/out/ with the system C compiler (cc, or $CC).

    python benchmarks/bandwidth.py [--threads 1,2] [--mb 1024] [--runs 5]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "probe" / "bandwidth_probe.c"
OUT = HERE / "out"


class Probe:
    """The compiled probe and a buffer well past the last-level cache, allocated once and reused."""

    def __init__(self, mb: int = 256):
        self.lib = _build()
        self.lib.bn_probe_read.restype = ctypes.c_double
        self.lib.bn_probe_read.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        self.width = self.lib.bn_probe_width()
        raw = np.ones(mb * 2**20 + 64, dtype=np.uint8)
        offset = (-raw.ctypes.data) % 64
        self._raw = raw
        self.buf = raw[offset:offset + mb * 2**20]

    def read_gbs(self, n_threads: int) -> float:
        """GB/s of one pass over the buffer by n_threads threads."""
        n = self.buf.nbytes // (256 * n_threads) * (256 * n_threads)
        return self.lib.bn_probe_read(self.buf.ctypes.data, n, n_threads)


def _build() -> ctypes.CDLL:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"the bandwidth probe is x86-64 only (this is {platform.machine()})")
    OUT.mkdir(exist_ok=True)
    lib = OUT / "bandwidth_probe.so"
    if not lib.exists() or lib.stat().st_mtime < SOURCE.stat().st_mtime:
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("no C compiler (cc/gcc) to build the bandwidth probe")
        subprocess.run([cc, "-O2", "-fopenmp", "-shared", "-fPIC", str(SOURCE), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    probe = Probe(args.mb)
    for t in (int(x) for x in args.threads.split(",")):
        runs = [probe.read_gbs(t) for _ in range(args.runs + 1)][1:]
        print(f"threads={t} loads={probe.width}-bit: median {statistics.median(runs):.1f} GB/s, "
              f"best {max(runs):.1f} GB/s")


if __name__ == "__main__":
    main()
