"""The `bitnet` command at the argument level: versions, help, usage errors, error reporting, `inspect`.

Every test runs the real command in a subprocess (`python -m bitnet ...`), as a user would.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bitnet.cli import INTERFACE_VERSION

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bitnet", *map(str, args)], capture_output=True, text=True,
                          env=full_env, input=input, timeout=timeout, cwd=ROOT, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    from conftest import testdata_path

    return testdata_path("tinyA", "tinyA-i2s.gguf")


# -- versions and entry points ---------------------------------------------------------------------------------
def test_version_and_interface_version():
    from bitnet import __version__

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"bitnet {__version__}"
    proc = cli("--interface-version")
    assert proc.returncode == 0 and proc.stdout.strip() == INTERFACE_VERSION
    major, minor, patch = INTERFACE_VERSION.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_console_script_points_at_the_same_main():
    """`bitnet` (the console script) and `python -m bitnet` both call bitnet.cli:main."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^bitnet = "bitnet\.cli:main"$', scripts, re.MULTILINE), scripts
    main_src = (ROOT / "bitnet" / "__main__.py").read_text()
    assert "from bitnet.cli import main" in main_src
    code = "import sys; from bitnet.cli import main; sys.exit(main(['--interface-version']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == INTERFACE_VERSION


# -- help ------------------------------------------------------------------------------------------------------
# Every flag the CLI issue asks for, per subcommand: `--help` must document each.
REQUIRED_FLAGS = {
    "run": ["--model", "--prompt", "--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed",
            "--greedy", "--max-tokens", "--max-new-tokens", "-n", "--n-predict", "--stop", "--stop-sequence",
            "--stop_sequences", "--threads", "-t", "--ctx-size", "-c", "--tokenizer", "--prompt-template",
            "--system-prompt", "-q", "--receipt", "llama3-chat", "instruct", "raw", "BITNET_DETERMINISTIC"],
    "chat": ["--model", "--prompt-template", "--system-prompt", "--temperature", "--seed", "/reset", "/exit",
             "Ctrl-C"],
    "bench": ["--model", "-p", "-n", "-t", "-r", "--json", "--receipt"],
    "inspect": ["--tensors", "--json"],
    "perplexity": ["--text", "--ctx", "--threads"],
    "serve": ["--model", "--host", "--port", "--api-key", "--ctx-size", "--parallel", "--queue-size", "--threads"],
    "convert": ["HF_DIR", "--outfile", "--type", "--embedding-type", "--force"],
    "download": ["REPO_ID", "--file", "--dir", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"],
    "verify-receipt": ["PATH", "--model"],
}


def _declared_options(command: str) -> list[str]:
    from bitnet.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [opt for action in sub._actions for opt in action.option_strings]


@pytest.mark.parametrize("command", sorted(REQUIRED_FLAGS))
def test_help_of_every_subcommand_is_complete(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(f"usage: bitnet {command}")
    for flag in REQUIRED_FLAGS[command] + _declared_options(command):
        assert flag in text, f"'bitnet {command} --help' does not mention {flag}"


def test_top_level_help_lists_every_subcommand():
    proc = cli("--help")
    assert proc.returncode == 0
    for command in REQUIRED_FLAGS:
        assert command in proc.stdout
    assert "--version" in proc.stdout and "--interface-version" in proc.stdout


# -- usage errors: exit 2, one line ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["run", "--top-p", "1.5"], "--top-p"),
    (["run", "--temperature", "-1"], "--temperature"),
    (["run", "--threads", "0"], "--threads"),
    (["run", "-n", "many"], "expected an integer"),
    (["run", "--prompt-template", "chatml"], "--prompt-template"),
    (["run", "--no-such-flag"], "unrecognized arguments"),
    (["bench", "-t", "1,,2"], "comma-separated"),
    (["bench", "-r", "0"], "--repetitions"),
    (["perplexity", "--ctx", "2", "--text", "x.txt"], "--ctx"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_usage_is_one_line_and_exit_2(args, fragment):
    assert_one_line_error(cli(*args), 2, fragment)


# -- operational errors: exit 1, one line, traceback only with --debug ----------------------------------------
def test_missing_model_file(tmp_path):
    missing = tmp_path / "nope.gguf"
    assert_one_line_error(cli("run", "-m", missing, "-p", "hi"), 1, "not found", str(missing))
    assert_one_line_error(cli("inspect", missing), 1, "not found")


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_text("this is text, not a model\n")
    assert_one_line_error(cli("inspect", fake), 1, "not a GGUF")
    assert_one_line_error(cli("run", "-m", fake, "-p", "hi"), 1, "not a GGUF")


def test_directory_given_as_model(tmp_path):
    assert_one_line_error(cli("run", "-m", tmp_path, "-p", "hi"), 1, "directory")


def test_debug_shows_the_traceback(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF")
    proc = cli("--debug", "inspect", fake)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = cli("inspect", fake, "--debug")   # accepted after the subcommand too
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_seed_in_environment(tiny_model):
    assert_one_line_error(cli("run", "-m", tiny_model, "-p", "hi", env={"BITNET_SEED": "abc"}), 1,
                          "BITNET_SEED")


def test_system_prompt_with_raw_template_is_refused(tiny_model):
    # Caught before any generation: raw passes the prompt through, so there is nowhere to put a system message.
    assert_one_line_error(cli("run", "-m", tiny_model, "-p", "hi", "--prompt-template", "raw",
                                 "--system-prompt", "be brief"), 1, "--system-prompt")


# -- inspect ---------------------------------------------------------------------------------------------------
def test_inspect_text(tiny_model):
    proc = cli("inspect", tiny_model)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "architecture:  bitnet-25" in out
    assert "embedding_length" in out and "128" in out
    for ggml_type, count in (("I2_S", 14), ("F32", 9), ("F16", 1)):
        assert re.search(rf"^  {ggml_type} +{count} tensors", out, re.MULTILINE), (ggml_type, out)
    assert "1027 tokens" in out and "BOS 1024 '<|begin_of_text|>'" in out
    assert "auto → bitnet format" in out


def test_inspect_json_and_tensors(tiny_model):
    from bitnet.gguf import GGUFReader

    proc = cli("inspect", tiny_model, "--json", "--tensors")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    with GGUFReader(tiny_model) as r:
        assert d["n_tensors"] == len(r.tensors) == len(d["tensors"])
        assert {t["name"] for t in d["tensors"]} == set(r.tensors)
        assert d["n_params"] == sum(t.n_elements for t in r.tensors.values())
        assert d["size_bytes"] == r.file_size
    assert d["architecture"] == "bitnet-25" and d["supported"] is True
    assert d["tensor_types"]["I2_S"]["count"] == 14
    assert d["hyperparameters"]["block_count"] == 2
    assert d["engine_hparams"]["n_head_kv"] == 1
    assert d["tokenizer"]["bos"] == {"id": 1024, "text": "<|begin_of_text|>"}
    assert d["chat_template"]["auto_format"] == "bitnet" and "BITNET" in d["chat_template"]["text"]


def test_inspect_reports_an_unsupported_architecture(tmp_path):
    import numpy as np

    from bitnet.gguf import GGMLType, GGUFWriter

    path = tmp_path / "neox.gguf"
    w = GGUFWriter(path)
    w.add("general.architecture", "gpt-neox")
    w.add("gpt-neox.block_count", 1)
    w.add_tensor("token_embd.weight", (4, 8), GGMLType.F32, np.zeros((4, 8), np.float32))
    w.write()
    proc = cli("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["supported"] is False and "unsupported architecture 'gpt-neox'" in d["unsupported_reason"]
    assert d["hyperparameters"] == {"block_count": 1}
    assert d["chat_template"] == {"present": False, "auto_format": "raw", "length": 0, "text": None}
