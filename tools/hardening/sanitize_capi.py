"""The C ABI under AddressSanitizer and UndefinedBehaviorSanitizer.

    python tools/hardening/sanitize_capi.py [--workdir DIR] [--model FILE] [--generations N] [--json OUT]

Builds libbitnet with `-fsanitize=address,undefined` into a copy of the installed `bitnet` package (the library
finds its package by its own location), compiles the C test programs and examples with the same flags, and runs
them: capi/tests/api_probe.c (NULL arguments, a missing file, a non-GGUF file, invalid UTF-8, out-of-range
parameters, re-entry and free from inside a callback: every misuse the header says is detected),
capi/tests/threads.c with 4 threads on separate models and on one shared model, capi/tests/valgrind_smoke.c,
and capi/examples/generate.c (also with a JSON schema, when llguidance is installed), stream.c and hello.c (the
product description's snippet, on a model.gguf link in the build folder). Each must exit 0 with its expected
output and with no sanitizer report. The Python interpreter libbitnet embeds is not instrumented; it runs on
plain malloc (PYTHONMALLOC=malloc) so that ASan sees, and checks, every allocation. Leak checking is off: an
embedded CPython keeps its heap until the process ends by design.

Prints a JSON report; exits 1 when any program fails or any sanitizer reports.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bitnet

ROOT = Path(__file__).resolve().parents[2]
CAPI = ROOT / "capi"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1:strict_string_checks=1:"
                    "detect_stack_use_after_return=1:check_initialization_order=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "PYTHONMALLOC": "malloc",
}
REPORT_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehavior")
SCRUBBED = ("LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "BITNET_PYTHON", "BITNET_SEED", "LD_PRELOAD", "BITNET_GGUF")


class Unsupported(Exception):
    """libbitnet is not built on this platform (e.g. a Python without a shared libpython)."""


def _library_builder():
    spec = importlib.util.spec_from_file_location("bitnet_capi_build_library", CAPI / "build_library.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(workdir: Path) -> tuple[Path, list[str]]:
    """A copy of the bitnet package with a sanitized libbitnet inside; returns (library, program flags)."""
    package = Path(bitnet.__file__).resolve().parent
    root = workdir / "root"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(package, root / "bitnet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.pyx", "libbitnet.*"))
    (root / "bitnet" / "capi" / "include").mkdir(exist_ok=True)
    shutil.copyfile(bitnet_header(), root / "bitnet" / "capi" / "include" / "bitnet.h")
    builder = _library_builder()
    try:
        lib = builder.build_library(root / "bitnet" / "capi", workdir / "build", force=True, extra_flags=SANITIZE)
    except builder.CAPIUnsupported as exc:
        raise Unsupported(str(exc)) from None
    from bitnet.capi import libpython_flags

    flags = [f"-I{root / 'bitnet' / 'capi' / 'include'}", f"-L{lib.parent}", f"-Wl,-rpath,{lib.parent}",
             "-lbitnet", *libpython_flags()]
    return lib, flags


def bitnet_header() -> Path:
    import bitnet.capi

    return bitnet.capi.include_dir() / "bitnet.h"


def compile_program(source: Path, workdir: Path, flags: list[str], *extra: str, strict: bool = True) -> Path:
    exe = workdir / source.stem
    warnings = ["-Wall", "-Wextra", "-Werror"] if strict else []
    cmd = [os.environ.get("CC", "cc"), *warnings, *SANITIZE, str(source), "-o", str(exe), *flags, *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"compiling {source.name} failed:\n{result.stderr}")
    return exe


def run_program(name: str, exe: Path, args: list, expect, timeout: float = 600, **extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(SANITIZER_ENV, **extra_env)
    start = time.monotonic()
    result = subprocess.run([str(exe), *map(str, args)], capture_output=True, env=env, timeout=timeout,
                            check=False, cwd=exe.parent)
    stdout, stderr = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    reports = [line for line in stderr.splitlines() if any(m in line for m in REPORT_MARKERS)]
    output_ok = expect(stdout)
    return {"program": name, "returncode": result.returncode, "seconds": round(time.monotonic() - start, 1),
            "sanitizer_reports": reports, "output_ok": output_ok,
            "ok": result.returncode == 0 and not reports and output_ok,
            "stderr_tail": stderr[-4000:] if (result.returncode or reports or not output_ok) else ""}


CANARY = r"""
#include <stdlib.h>
int main(int argc, char **argv) {
    (void)argv;
    volatile char *p = malloc(8);
    p[0] = (char)argc;
    free((void *)p);
    return p[0];   /* use after free: only ASan sees this one */
}
"""


def canary(workdir: Path, flags: list[str]) -> dict:
    """A use-after-free built and run the same way: proof that the sanitizer is live in these builds."""
    source = workdir / "canary.c"
    source.write_text(CANARY)
    result = run_program("canary", compile_program(source, workdir, flags, strict=False), [],
                         lambda out: True)
    caught = result["returncode"] != 0 and any("AddressSanitizer" in r for r in result["sanitizer_reports"])
    return {"program": "canary (must be caught)", "caught": caught, "ok": caught}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="build folder (default: a temporary one)")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--generations", type=int, default=50, help="generations per thread in threads.c")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bitnet-sanitize-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model_path = args.model or bitnet.default_model_path()

    start = time.monotonic()
    lib, flags = build(workdir)
    build_s = time.monotonic() - start
    model = bitnet.load(model_path, n_threads=1)
    greedy = model.generate("Hello", max_tokens=6, temperature=0).text
    sampled = model.generate("Hello", max_tokens=6, seed=99).text
    example_text = model.generate("Hello", max_tokens=5, temperature=0).text
    hello_text = model.generate("Hello, world!", seed=11).text   # hello.c: the defaults, BITNET_SEED=11
    hello_model = workdir / "model.gguf"   # the path hello.c loads, relative to its folder
    hello_model.unlink(missing_ok=True)
    hello_model.symlink_to(Path(model_path).resolve())
    not_gguf = workdir / "not-a-model.gguf"
    not_gguf.write_text("this is plain text, not a GGUF file\n")
    n = args.generations

    def lines_ok(text: str) -> bool:   # api_probe: one tab-separated row per check
        return len(text.splitlines()) > 30 and all(line.count("\t") >= 3 for line in text.splitlines())

    runs = [
        run_program("api_probe", compile_program(CAPI / "tests" / "api_probe.c", workdir, flags, "-lm"),
                    [model_path, not_gguf], lines_ok),
        *[run_program(f"threads_{mode}", compile_program(CAPI / "tests" / "threads.c", workdir, flags, "-pthread"),
                      [model_path, mode, 4, n, 6, 99, "Hello", greedy, sampled],
                      lambda out: out.strip() == f"{4 * n} generations, 0 failures")
          for mode in ("own", "shared")],
        run_program("smoke", compile_program(CAPI / "tests" / "valgrind_smoke.c", workdir, flags),
                    [model_path], lambda out: out.startswith("text=")),
        run_program("example_generate", compile_program(CAPI / "examples" / "generate.c", workdir, flags),
                    ["-m", model_path, "-n", 5, "-t", 0, "Hello"], lambda out: out == example_text + "\n"),
        run_program("example_stream", compile_program(CAPI / "examples" / "stream.c", workdir, flags),
                    ["-m", model_path, "-n", 5, "-t", 0, "Hello"], lambda out: example_text in out),
        run_program("example_hello", compile_program(CAPI / "examples" / "hello.c", workdir, flags), [],
                    lambda out: out == hello_text + "\n", BITNET_SEED="11"),
    ]
    # Structured output needs the optional llguidance; without it the report says the run was left out.
    structured = importlib.util.find_spec("llguidance") is not None
    if structured:
        schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120}},
                  "required": ["age"], "additionalProperties": False}
        json_text = model.generate("A person:", max_tokens=32, temperature=0, json_schema=schema).text
        runs.append(run_program("example_generate_json_schema",
                                compile_program(CAPI / "examples" / "generate.c", workdir, flags),
                                ["-m", model_path, "-n", 32, "-t", 0, "-j", json.dumps(schema), "A person:"],
                                lambda out: out == json_text + "\n"))
    runs.append(canary(workdir, flags))
    report = {"library": str(lib), "flags": SANITIZE, "build_s": round(build_s, 1), "model": str(model_path),
              "structured_output": "run" if structured else "left out: llguidance is not installed",
              "programs": runs, "ok": all(r["ok"] for r in runs)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Unsupported as exc:
        sys.exit(f"libbitnet cannot be built here: {exc}")
