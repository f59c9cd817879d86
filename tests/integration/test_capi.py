"""The C ABI (include/bitnet.h, libbitnet): real C programs built with the system compiler, run as processes.

The library is built in place first (capi/build_library.py, as `pip install -e .` does). Programs are compiled in
a temporary folder with the flags of `python -m bitnet.capi --cflags --libs` and run with no LD_LIBRARY_PATH or
PYTHONPATH, so they also show that the library finds its own Python installation.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import jinja2
import numpy as np
import pytest
import tokenizers
from conftest import TESTDATA, skip_for_hardware

import bitnet
import bitnet.capi

ROOT = Path(__file__).resolve().parents[2]
CAPI = ROOT / "capi"
# The package under test: this checkout's (built in place), or an installed wheel's when the suite runs against
# one (cibuildwheel's test step), whose library and header are the ones to check.
PACKAGE = Path(bitnet.__file__).resolve().parent
INSTALLED = PACKAGE != ROOT / "bitnet"
HEADER = bitnet.capi.include_dir() / "bitnet.h"
PROMPT = "Once upon a time, a café"
C_WARNINGS = ["-Wall", "-Wextra", "-Werror"]
# Variables that could make a program work for the wrong reason (or break it) are removed.
SCRUBBED_ENV = ("LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "BITNET_PYTHON", "BITNET_SEED", "PYTHONMALLOC",
                "BITNET_GGUF")


def _library_builder():
    """capi/build_library.py, loaded by path (it is part of the build, not of the installed package)."""
    spec = importlib.util.spec_from_file_location("bitnet_capi_build_library", CAPI / "build_library.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def libbitnet() -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc)")
    if INSTALLED:
        return bitnet.capi.require_library()
    hook = _library_builder()
    try:
        return hook.build_library(ROOT / "bitnet" / "capi", ROOT / "build" / "capi")
    except hook.CAPIUnsupported as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("capi")


@pytest.fixture(scope="session")
def capi_flags(libbitnet, workdir) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "bitnet.capi", "--cflags", "--libs"], cwd=workdir,
                         capture_output=True, text=True, check=True, env=clean_env()).stdout
    return shlex.split(out)


class Programs:
    """Compiles C programs once per session into `workdir`, from there (another directory than the sources)."""

    def __init__(self, workdir: Path, flags: list[str]):
        self.workdir = workdir
        self.flags = flags
        self.built: dict[str, Path] = {}

    def build(self, source: Path, *extra: str, compiler: str = "cc", flags: list[str] | None = None) -> Path:
        exe = self.workdir / source.stem
        if source.stem not in self.built:
            cmd = [compiler, *C_WARNINGS, str(source), "-o", str(exe), *(flags or self.flags), *extra]
            result = subprocess.run(cmd, cwd=self.workdir, capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{shlex.join(cmd)}\n{result.stderr}"
            self.built[source.stem] = exe
        return self.built[source.stem]

    def run(self, exe: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *map(str, args)], cwd=self.workdir, capture_output=True, check=False,
                              env=env or clean_env(), timeout=timeout)


@pytest.fixture(scope="session")
def programs(workdir, capi_flags) -> Programs:
    return Programs(workdir, capi_flags)


@pytest.fixture(scope="session")
def model(small_model_path):
    return bitnet.load(small_model_path, n_threads=1)


# --------------------------------------------------------------------------------------------- the library
def header_functions() -> set[str]:
    return set(re.findall(r"BITNET_API\s[^;]*?\b(bitnet_\w+)\s*\(", HEADER.read_text()))


def test_library_exports_exactly_the_header_functions(libbitnet):
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    out = subprocess.run(["nm", "-D", "--defined-only", str(libbitnet)], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] in (["T"], ["W"])}
    functions = header_functions()
    assert {"bitnet_model_load", "bitnet_model_load_ex", "bitnet_generate", "bitnet_generate_ex",
            "bitnet_generate_stream", "bitnet_tokenize"} <= functions
    assert exported == functions


def test_error_codes_agree_with_the_python_shim():
    from bitnet.capi import _shim

    codes = dict(re.findall(r"#define BITNET_(OK|ERR_\w+)\s+\(?(-?\d+)\)?", HEADER.read_text()))
    assert len(codes) == 8
    for name, value in codes.items():
        assert getattr(_shim, name) == int(value), name


def test_cli_prints_flags_and_the_default_model(capi_flags, libbitnet, workdir):
    assert f"-I{HEADER.parent}" in capi_flags
    assert "-lbitnet" in capi_flags and f"-Wl,-rpath,{libbitnet.parent}" in capi_flags
    out = subprocess.run([sys.executable, "-m", "bitnet.capi", "--default-model"], cwd=workdir,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(bitnet.default_model_path())


def test_cli_explains_a_missing_library(tmp_path, monkeypatch, capsys):
    import bitnet.capi
    from bitnet.capi.__main__ import main

    monkeypatch.setattr(bitnet.capi, "PACKAGE_DIR", tmp_path)
    assert main(["--cflags", "--libs"]) == 1
    assert "is not built" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- examples
# The C example of the product description, line for line.
DESCRIBED_C_LINES = ['BitNetModel* model = bitnet_model_load("model.gguf");',
                     'char* response = bitnet_generate(model, "Hello, world!");']


def test_the_described_c_snippet_prints_what_model_generate_returns(programs, model, small_model_path, tmp_path,
                                                                     monkeypatch):
    """capi/examples/hello.c holds the description's two lines as written; run in a folder with a model.gguf it
    prints Model.generate's completion with the default settings (sampled: BITNET_SEED fixes the seed of both),
    and without one it fails with a message instead of crashing."""
    source = CAPI / "examples" / "hello.c"
    lines = [line.strip() for line in source.read_text().splitlines()]
    assert any(lines[i:i + 2] == DESCRIBED_C_LINES for i in range(len(lines))), "the description's lines changed"
    exe = programs.build(source)
    (tmp_path / "model.gguf").symlink_to(small_model_path)
    result = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, env=clean_env(BITNET_SEED="11"),
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    monkeypatch.setenv("BITNET_SEED", "11")
    expected = model.generate("Hello, world!").text
    assert expected.strip() and result.stdout.decode("utf-8") == expected + "\n"

    missing = programs.run(exe)   # the build folder has no model.gguf
    assert missing.returncode == 1
    assert missing.stderr.decode() == "error: bitnet_generate: model is NULL\n"


GREEDY = {"args": ["-t", "0"], "kwargs": {"temperature": 0.0}}
SAMPLED = {"args": ["-s", "1234"], "kwargs": {"seed": 1234}}
SAMPLED_TUNED = {"args": ["-s", "7", "-t", "1.1", "-k", "20", "-p", "0.9"],
                 "kwargs": {"seed": 7, "temperature": 1.1, "top_k": 20, "top_p": 0.9}}


@pytest.mark.parametrize("case", [GREEDY, SAMPLED, SAMPLED_TUNED], ids=["greedy", "sampled", "sampled-tuned"])
def test_generate_example_prints_what_model_generate_returns(programs, model, small_model_path, case):
    exe = programs.build(CAPI / "examples" / "generate.c")
    result = programs.run(exe, "-m", small_model_path, "-n", "12", *case["args"], PROMPT)
    assert result.returncode == 0, result.stderr.decode()
    expected = model.generate(PROMPT, max_tokens=12, **case["kwargs"]).text
    assert result.stdout.decode("utf-8") == expected + "\n"


# Structured output: the C examples take the schema as JSON text (-j) or a Lark grammar (-g); Python gets the
# schema as a dict, so the equality also shows that the text and the dict mean the same constraint.
AGE_SCHEMA = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["age"], "additionalProperties": False}
YES_NO = 'start: "yes" | "no"'


def _an_age(text: str) -> None:
    value = json.loads(text)
    assert list(value) == ["age"] and isinstance(value["age"], int) and 0 <= value["age"] <= 120, value


def _yes_or_no(text: str) -> None:
    assert text in ("yes", "no"), text


STRUCTURED = {
    "schema-sampled": {"args": ["-j", json.dumps(AGE_SCHEMA), "-s", "5", "-t", "1.0"],
                       "kwargs": {"json_schema": AGE_SCHEMA, "seed": 5, "temperature": 1.0}, "check": _an_age},
    "schema-greedy": {"args": ["-j", json.dumps(AGE_SCHEMA), "-t", "0"],
                      "kwargs": {"json_schema": AGE_SCHEMA, "temperature": 0.0}, "check": _an_age},
    "grammar-sampled": {"args": ["-g", YES_NO, "-s", "3", "-t", "1.2"],
                        "kwargs": {"grammar": YES_NO, "seed": 3, "temperature": 1.2}, "check": _yes_or_no},
}


@pytest.mark.parametrize("example", ["generate.c", "stream.c"])
@pytest.mark.parametrize("case", STRUCTURED.values(), ids=STRUCTURED.keys())
def test_structured_output_equals_model_generate(programs, model, small_model_path, example, case):
    """bitnet_gen_params.json_schema / .grammar, through bitnet_generate_ex (generate.c) and
    bitnet_generate_stream (stream.c): the text parses (a complete answer, not one cut at max_tokens) and is the
    Python API's with the same settings."""
    pytest.importorskip("llguidance")
    exe = programs.build(CAPI / "examples" / example)
    prompt = "A person, as JSON:"
    result = programs.run(exe, "-m", small_model_path, "-n", "32", *case["args"], prompt)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode("utf-8")
    assert out.endswith("\n")
    text = out[:-1]
    case["check"](text)
    expected = model.generate(prompt, max_tokens=32, **case["kwargs"])
    assert expected.finish_reason == "stop"
    assert text == expected.text
    if "json_schema" in case["kwargs"]:
        assert json.loads(text) == json.loads(expected.text)


def test_structured_output_errors_name_the_reason(probe, model):
    """A schema or grammar that does not compile, or both set, is BITNET_ERR_INVALID_ARGUMENT (-1) with NULL (or
    -1 from bitnet_generate_stream) and a message that names the function and says why."""
    pytest.importorskip("llguidance")
    expected = {
        "structured_bad_schema": ("0", "bitnet_generate_ex: GrammarError: invalid JSON schema: Invalid type: nope"),
        "structured_schema_not_json": ("0", "bitnet_generate_ex: GrammarError: the JSON schema is not valid JSON"),
        "structured_schema_not_object": ("0", "a JSON schema must be an object, got list"),
        "structured_schema_invalid_utf8": ("0", "json_schema is not valid UTF-8: invalid start byte (byte 0xff"),
        "structured_bad_grammar": ("0", 'bitnet_generate_ex: GrammarError: invalid grammar: at 1(8): unknown name: '
                                        '"foo"'),
        "structured_empty_grammar": ("0", "the grammar must be a non-empty Lark text"),
        "structured_both_set": ("0", "bitnet_generate_ex: ValueError: json_schema and grammar are both set; give at "
                                     "most one"),
        "stream_structured_both_set": ("-1", "bitnet_generate_stream: ValueError: json_schema and grammar are both "
                                             "set"),
        "stream_structured_bad_grammar": ("-1", "bitnet_generate_stream: GrammarError: invalid grammar"),
    }
    for name, (value, words) in expected.items():
        got_value, code, message = probe[name]
        assert (got_value, code) == (value, -1), (name, message)
        assert words in message, (name, message)
    # After the failures the same model still generates under a valid grammar (greedy, 4 tokens as in the probe).
    answer = model.generate("Is water wet?", grammar=YES_NO, max_tokens=4, temperature=0.0).text
    assert answer in ("yes", "no")
    assert probe["structured_grammar_ok"] == (answer, 0, "")


@pytest.mark.parametrize("case", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_stream_example_pieces_join_to_model_generate(programs, model, small_model_path, case):
    exe = programs.build(CAPI / "examples" / "stream.c")
    result = programs.run(exe, "-m", small_model_path, "-n", "12", *case["args"], PROMPT)
    assert result.returncode == 0, result.stderr.decode()
    expected = model.generate(PROMPT, max_tokens=12, **case["kwargs"])
    assert result.stdout.decode("utf-8") == expected.text + "\n"


def test_stream_stops_when_the_callback_returns_nonzero(programs, model, small_model_path):
    exe = programs.build(CAPI / "examples" / "stream.c")
    result = programs.run(exe, "-m", small_model_path, "-n", "12", "-s", "5", "-c", "3", PROMPT)
    assert result.returncode == 0, result.stderr.decode()
    pieces = list(model.stream(PROMPT, max_tokens=12, seed=5))
    assert len(pieces) > 3
    assert result.stdout.decode("utf-8") == "".join(pieces[:3]) + "\n"
    assert b"[3 pieces]" in result.stderr


def test_example_without_a_model_path_uses_the_embedded_model(programs):
    exe = programs.build(CAPI / "examples" / "generate.c")
    result = programs.run(exe, "-n", "4", "-t", "0", "Hello")
    if bitnet.default_model_path().exists():
        assert result.returncode == 0, result.stderr.decode()
    else:
        assert result.returncode == 1
        assert b"embedded default model is missing" in result.stderr


def test_header_compiles_as_cpp(programs, small_model_path):
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    source = programs.workdir / "cpp_user.cpp"
    source.write_text('#include <bitnet.h>\n#include <cstdio>\n'
                      'int main() {\n'
                      '    bitnet_gen_params p = bitnet_gen_params_default();\n'
                      '    bitnet_model *m = nullptr;\n'   # the ABI 1 name: the same type as BitNetModel
                      '    char *text = bitnet_generate_ex(m, "x", &p);\n'
                      '    std::printf("%s %d %d\\n", bitnet_version(), text == nullptr, bitnet_last_error_code());\n'
                      '    return 0;\n}\n')
    exe = programs.build(source, "-pedantic", compiler="c++")
    result = programs.run(exe)
    assert result.returncode == 0
    assert result.stdout.decode().split() == [bitnet.__version__, "1", "-1"]


def test_pkg_config_file_builds_a_working_program(programs, model, small_model_path, tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config")
    subprocess.run([sys.executable, "-m", "bitnet.capi", "--write-pc", str(tmp_path)], check=True)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "bitnet"], capture_output=True, text=True,
                           check=True, env=clean_env(PKG_CONFIG_PATH=str(tmp_path))).stdout
    exe = tmp_path / "generate_pc"
    subprocess.run(["cc", *C_WARNINGS, str(CAPI / "examples" / "generate.c"), "-o", str(exe),
                    *shlex.split(flags)], check=True, cwd=tmp_path)
    result = programs.run(exe, "-m", small_model_path, "-n", "6", "-t", "0", "Hello")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == model.generate("Hello", max_tokens=6, temperature=0).text + "\n"


def test_a_bad_python_override_is_reported_not_fatal(programs, small_model_path):
    exe = programs.build(CAPI / "examples" / "generate.c")
    result = programs.run(exe, "-m", small_model_path, "Hello", env=clean_env(BITNET_PYTHON="/nonexistent/python"))
    assert result.returncode == 1
    assert b"BITNET_PYTHON=/nonexistent/python is not an absolute path to an executable" in result.stderr


def test_works_inside_a_host_that_already_runs_python(libbitnet, model, small_model_path, workdir):
    """Loaded into a running Python (ctypes), the library uses that interpreter instead of starting one."""
    script = (
        "import ctypes, sys\n"
        "lib = ctypes.CDLL(sys.argv[1])\n"
        "lib.bitnet_model_load.restype = ctypes.c_void_p\n"
        "lib.bitnet_generate.restype = ctypes.c_void_p\n"
        "lib.bitnet_model_load.argtypes = [ctypes.c_char_p]\n"
        "lib.bitnet_generate.argtypes = [ctypes.c_void_p, ctypes.c_char_p]\n"
        "lib.bitnet_string_free.argtypes = [ctypes.c_void_p]\n"
        "lib.bitnet_model_free.argtypes = [ctypes.c_void_p]\n"
        "m = lib.bitnet_model_load(sys.argv[2].encode())\n"
        "text = lib.bitnet_generate(m, 'Hello'.encode()) if m else None\n"
        "print(ctypes.string_at(text).decode() if text else 'error', end='')\n"
        "lib.bitnet_string_free(text)\n"
        "lib.bitnet_model_free(m)\n")
    # The default settings: a random seed; BITNET_SEED (read by the Python API) makes it reproducible.
    result = subprocess.run([sys.executable, "-c", script, str(libbitnet), str(small_model_path)], cwd=workdir,
                            capture_output=True, env=clean_env(BITNET_SEED="3"), timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == model.generate("Hello", seed=3).text


# --------------------------------------------------------------------------------------------- API probe
@pytest.fixture(scope="session")
def probe(programs, small_model_path) -> dict[str, tuple[str, int, str]]:
    """name -> (value, bitnet_last_error_code, bitnet_last_error) for every check of capi/tests/api_probe.c."""
    not_gguf = programs.workdir / "not-a-model.gguf"
    not_gguf.write_text("this is plain text, not a GGUF file\n")
    exe = programs.build(CAPI / "tests" / "api_probe.c", "-lm")
    result = programs.run(exe, small_model_path, not_gguf)
    assert result.returncode == 0, result.stderr.decode()
    rows = {}
    for line in result.stdout.decode("utf-8").splitlines():
        name, value, code, message = line.split("\t", 3)
        rows[name] = (value, int(code), message)
    return rows


def test_version_and_defaults_match_the_python_api(probe):
    assert probe["version"][0] == bitnet.__version__
    assert probe["abi_version"][0] == "2"
    max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed = probe["defaults"][0].split()
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(bitnet.Model.generate).parameters.items()}
    assert int(max_tokens) == defaults["max_tokens"] and int(top_k) == defaults["top_k"]
    for text, name in [(temperature, "temperature"), (top_p, "top_p"), (min_p, "min_p"),
                       (repeat_penalty, "repeat_penalty")]:
        assert np.float32(text) == np.float32(defaults[name]), name
    assert defaults["seed"] is None and int(seed) == 2**64 - 1   # BITNET_SEED_RANDOM
    assert probe["defaults_structured"][0] == "NULL NULL"         # json_schema, grammar: no constraint
    assert probe["params_defaults"][0] == "0 0"


def test_load_failures_return_null_with_a_useful_error(probe):
    for name, func in [("load_missing", "bitnet_model_load"), ("load_ex_missing", "bitnet_model_load_ex")]:
        assert probe[name][:2] == ("0", -4)
        assert probe[name][2].startswith(f"{func}: ")   # the message names the function called
        assert "/nonexistent/model.gguf" in probe[name][2] and "model file not found" in probe[name][2]
    assert probe["load_not_gguf"][:2] == ("0", -4)
    assert "not a GGUF file" in probe["load_not_gguf"][2]
    assert probe["load_negative_threads"][:2] == ("0", -1)
    assert "n_threads" in probe["load_negative_threads"][2]
    assert probe["load_ok"] == ("1", 0, "")
    assert probe["load_embedded"] == ("1", 0, "")   # NULL path: the model embedded in the package


def test_generate_rejects_bad_arguments_cleanly(probe):
    expected = {
        "generate_null_model": (-1, "bitnet_generate: model is NULL"),
        "generate_null_prompt": (-1, "bitnet_generate: prompt is NULL"),
        "generate_invalid_utf8": (-1, "prompt is not valid UTF-8"),
        "generate_ex_null_model": (-1, "bitnet_generate_ex: model is NULL"),
        "generate_ex_null_prompt": (-1, "bitnet_generate_ex: prompt is NULL"),
        "generate_ex_invalid_utf8": (-1, "bitnet_generate_ex: ValueError: prompt is not valid UTF-8"),
        "generate_negative_max_tokens": (-1, "max_tokens"),
        "generate_nan_temperature": (-1, "temperature"),
        "generate_context_overflow": (-3, "does not fit in the context of 4 tokens"),
    }
    for name, (code, words) in expected.items():
        value, got_code, message = probe[name]
        assert (value, got_code) == ("0", code), (name, message)
        assert words in message, (name, message)
    assert probe["generate_ok"] == ("1", 0, "")
    assert probe["generate_default_params"] == ("1", 0, "")
    assert probe["generate_defaults"] == ("1", 0, "")


def test_stream_errors_and_callback_rules(probe):
    assert probe["stream_null_callback"][:2] == ("-1", -1)
    assert probe["stream_null_model"][:2] == ("-1", -1)
    assert probe["stream_invalid_utf8"][:2] == ("-1", -1)
    assert probe["stream_ok"] == ("0", 0, "")
    assert int(probe["stream_pieces"][0]) >= 1
    # Inside its own callback a model refuses generation and freeing (it would deadlock / vanish), while
    # another model generates and the same model still tokenizes.
    assert probe["callback_generate_same_model"][:2] == ("0", -5)
    assert "inside its own on_token callback" in probe["callback_generate_same_model"][2]
    assert probe["callback_free_same_model"][1] == -5
    assert probe["callback_generate_other_model"] == ("1", 0, "")
    assert int(probe["callback_tokenize_same_model"][0]) > 0
    assert probe["stream_stopped_by_callback"] == ("0", 0, "")   # stopping early is not an error
    assert probe["stream_callback_calls"][0] == "1"
    assert probe["generate_after_stop"] == ("1", 0, "")          # the stopped stream released the model


def test_tokenize_matches_model_tokenize(probe, model):
    ids = model.tokenize("Hello world, this is a test.")
    assert probe["tokenize_ids"][0] == ",".join(map(str, ids))
    assert probe["tokenize_count"] == (str(len(ids)), 0, "")
    value, code, message = probe["tokenize_too_small"]
    assert (value, code) == ("-2", -2) and f"has {len(ids)} tokens" in message
    for name in ("tokenize_null_model", "tokenize_null_text", "tokenize_negative_max", "tokenize_null_out",
                 "tokenize_invalid_utf8"):
        assert probe[name][:2] == ("-1", -1), name


def test_a_success_clears_the_last_error(probe):
    assert probe["error_set"][1] == -1
    assert probe["tokenize_clears_error"] == ("1", 0, "")
    assert probe["free_null"] == ("0", 0, "")
    assert probe["free_ok"] == ("0", 0, "")


# --------------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("mode", ["own", "shared"])
def test_four_threads_fifty_generations_each(programs, model, small_model_path, mode):
    """4 pthreads x 50 generations (greedy, sampled, streamed), each with its own model or all on one shared
    model (serialised by the model's lock); every result must equal Python's."""
    exe = programs.build(CAPI / "tests" / "threads.c", "-pthread")
    greedy = model.generate("Hello", max_tokens=6, temperature=0).text
    sampled = model.generate("Hello", max_tokens=6, seed=99).text
    result = programs.run(exe, small_model_path, mode, 4, 50, 6, 99, "Hello", greedy, sampled, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "200 generations, 0 failures"


# --------------------------------------------------------------------------------------------- installs
def test_installed_layout_in_a_venv_needs_no_environment(programs, libbitnet, small_model_path, tmp_path, model,
                                                         monkeypatch):
    """The package copied into a venv's site-packages, as pip installs it (library and header inside), with a
    library built by a Python that no longer exists (a wheel built elsewhere): a program built from the venv's
    flags still finds the venv's interpreter and packages by itself. Its embedded model is planted there only,
    so loading it proves that the venv's copy of the package is the one in use."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = env_dir / "lib" / version / "site-packages"
    # The dependencies (numpy, tokenizers, jinja2) come from the environment running the tests, by a plain path
    # line: it appends that folder without running its .pth files, so an editable install there stays out.
    (site / "test-dependencies.pth").write_text(
        "\n".join(str(Path(module.__file__).parent.parent) for module in (np, tokenizers, jinja2)) + "\n")
    shutil.copytree(PACKAGE, site / "bitnet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.pyx", "*.gguf", libbitnet.name))
    vendored = PACKAGE.parent / "bitnet_engine.libs"    # what auditwheel vendored into a repaired wheel
    if vendored.is_dir():
        shutil.copytree(vendored, site / vendored.name)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", str(tmp_path / "gone" / "bin" / "python3"))
        _library_builder().build_library(site / "bitnet" / "capi", tmp_path / "build", force=True)
    (site / "bitnet" / "capi" / "include").mkdir(exist_ok=True)
    shutil.copyfile(HEADER, site / "bitnet" / "capi" / "include" / "bitnet.h")
    (site / "bitnet" / "data").mkdir(exist_ok=True)
    shutil.copyfile(small_model_path, site / "bitnet" / "data" / bitnet.default_model_path().name)

    flags = subprocess.run([str(env_dir / "bin" / "python"), "-m", "bitnet.capi", "--cflags", "--libs"],
                           cwd=tmp_path, capture_output=True, text=True, check=True, env=clean_env()).stdout
    assert str(site / "bitnet" / "capi") in flags and f"-I{site / 'bitnet' / 'capi' / 'include'}" in flags
    exe = tmp_path / "generate_venv"
    subprocess.run(["cc", *C_WARNINGS, str(CAPI / "examples" / "generate.c"), "-o", str(exe),
                    *shlex.split(flags)], check=True, cwd=tmp_path)
    result = programs.run(exe, "-n", "5", "-t", "0", "Hello")   # no -m: the embedded model of the venv's copy
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == model.generate("Hello", max_tokens=5, temperature=0).text + "\n"


# --------------------------------------------------------------------------------------------- valgrind
OUR_CODE = re.compile(r"\((?:api|runtime|error|valgrind_smoke)\.c:\d+\)|libbitnet\.so")
MEMORY_MISUSE = re.compile(r"Invalid (read|write|free)|Mismatched free|Source and destination overlap|free'd")


def valgrind_errors(log: str) -> list[list[str]]:
    """The error reports of a memcheck log, each as its lines (kind first, then the stack)."""
    reports, current = [], []
    for line in log.splitlines():
        body = re.sub(r"^==\d+==\s?", "", line)
        if not body.strip():
            if current:
                reports.append(current)
            current = []
        elif current or re.match(r"(Invalid|Use of|Conditional jump|Mismatched|Syscall param|Source and)", body):
            current.append(body.strip())
    return reports + ([current] if current else [])


@pytest.mark.slow
def test_valgrind_sees_no_memory_errors(programs, small_model_path, tmp_path):
    """A short program through every entry point under memcheck (CPython on plain malloc): no invalid read or
    write and no use of freed memory anywhere, and no error at all raised inside libbitnet's own code."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (Debian: apt-get install -y valgrind)")
    exe = programs.build(CAPI / "tests" / "valgrind_smoke.c", "-g")
    tiny = TESTDATA / "tinyA" / "tinyA-i2s.gguf"   # the smallest model there is: memcheck runs ~50x slower
    model_path = tiny if tiny.exists() else small_model_path
    log = tmp_path / "memcheck.log"
    result = subprocess.run(
        ["valgrind", "--tool=memcheck", f"--suppressions={CAPI / 'valgrind.supp'}", "--num-callers=40",
         f"--log-file={log}", str(exe), str(model_path)],
        cwd=programs.workdir, capture_output=True, env=clean_env(PYTHONMALLOC="malloc"), timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"text=")
    assert re.search(rb" answer=(yes|no) bad_schema=0/-1\n$", result.stdout), result.stdout   # structured output
    reports = valgrind_errors(log.read_text())
    misuse = [r for r in reports if MEMORY_MISUSE.search(" ".join(r))]
    ours = [r for r in reports if len(r) > 1 and OUR_CODE.search(r[1])]
    assert not misuse, "\n\n".join("\n".join(r) for r in misuse)
    assert not ours, "\n\n".join("\n".join(r) for r in ours)


def test_bitnet_device_cuda_without_a_gpu_is_a_load_error(programs, small_model_path):
    """The C ABI does not change per backend: BITNET_DEVICE picks it; without a GPU the load fails with the
    reason (and the program goes on to report it), no crash."""
    from cuda_emulator import has_gpu

    if has_gpu():
        skip_for_hardware("this machine has a usable GPU")
    exe = programs.build(CAPI / "examples" / "generate.c")
    result = programs.run(exe, "-m", small_model_path, "Hello", env=clean_env(BITNET_DEVICE="cuda"))
    assert result.returncode == 1
    assert b"CudaUnavailableError: device='cuda' needs" in result.stderr
