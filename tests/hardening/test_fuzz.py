"""Bounded coverage-guided fuzzing (tools/hardening/fuzz, atheris) of the GGUF reader and model binder, the tokenizer
metadata path and chat templates: every input ends in an answer or one of the engine's own errors. Each target
runs in its own libFuzzer process, so a crash in compiled code is caught and reported with its input saved.
The long runs (a million inputs and more) are `python tools/hardening/fuzz/run_fuzz.py --runs N`; see
benchmarks/README.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip("atheris", reason="pip install atheris (the fuzz extra; Linux x86-64 wheels)")

RUN_FUZZ = Path(__file__).resolve().parents[2] / "tools" / "hardening" / "fuzz" / "run_fuzz.py"
CI_INPUTS = 20_000


def run_fuzz(workdir: Path, *args: str) -> tuple[int, dict]:
    report = workdir / "report.json"
    result = subprocess.run([sys.executable, str(RUN_FUZZ), "--workdir", str(workdir), "--json", str(report), *args],
                            capture_output=True, text=True, timeout=600, check=False)
    assert report.is_file(), result.stdout + result.stderr
    return result.returncode, json.loads(report.read_text())


@pytest.mark.parametrize("target", ["model", "tokenizer", "template"])
def test_fuzzing_finds_no_crash_or_hang(tmp_path, target):
    code, report = run_fuzz(tmp_path, "--targets", target, "--runs", str(CI_INPUTS))
    result = report[target]
    failures = "\n".join(f"worker {f['worker']} exited {f['returncode']}:\n{f['output_tail']}"
                         for f in result["failed_workers"])
    assert code == 0 and result["ok"], f"{result['artifacts']}\n{failures}"
    assert result["inputs"] >= CI_INPUTS
    assert result["crashes"] == result["hangs"] == result["out_of_memory"] == 0
    assert sum(result["answers"].values()) >= CI_INPUTS
    # the corpus is varied enough that the engine both accepts and refuses inputs
    accepted = {"model": "generated", "tokenizer": "tokenized", "template": "rendered"}[target]
    assert result["answers"].get(accepted, 0) > 0 and len(result["answers"]) > 1, result["answers"]


def test_a_crash_is_reported_with_its_input_saved(tmp_path):
    code, report = run_fuzz(tmp_path, "--targets", "selftest", "--runs", "1000")
    result = report["selftest"]
    assert code == 1 and not result["ok"]
    assert result["crashes"] == 1 and len(result["artifacts"]) == 1
    assert b"crash" in Path(result["artifacts"][0]).read_bytes()
    assert "planted crash" in result["failed_workers"][0]["output_tail"]
