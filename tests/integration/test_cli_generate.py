"""`bitnet run`, `bench` and `perplexity` end to end on a small real model, against the Python API's answers.

The command runs as a subprocess; the expected text comes from `bitnet.load()` in this process with the same
settings, so the tests check that the command streams exactly what the engine generates, applies the template
rules, stops where asked, is repeatable in deterministic mode and writes receipts that verify.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The quick brown fox"
TIMINGS = re.compile(r"^prompt: \d+ tokens, [\d.]+ tok/s \| generation: (\d+) tokens, [\d.]+ tok/s \| "
                     r"finish: (stop|length)")


def cli(*args, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    full_env = child_env(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "bitnet", *map(str, args)], capture_output=True, text=True,
                          env=full_env, input=input, timeout=120, cwd=ROOT, check=False)


def printed(text: str) -> str:
    """What `run` prints for a completion: the text, then a newline unless it already ends with one."""
    return text if not text or text.endswith("\n") else text + "\n"


@pytest.fixture(scope="module")
def model(small_model_path):
    import bitnet

    m = bitnet.load(small_model_path, n_threads=1)
    yield m
    m.close()


def test_run_streams_exactly_what_the_engine_generates(model, small_model_path):
    expected = model.generate(PROMPT, max_tokens=16, temperature=0)
    proc = cli("run", "-m", small_model_path, "-p", PROMPT, "-n", "16", "--greedy", "-t", "1",
               "--prompt-template", "raw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed(expected.text)
    timings = TIMINGS.match(proc.stderr.strip())
    assert timings, proc.stderr
    assert int(timings.group(1)) == len(expected.tokens)


def test_auto_template_follows_the_model(model, small_model_path):
    proc = cli("run", "-m", small_model_path, "-p", PROMPT, "--max-new-tokens", "12", "--temperature", "0",
               "-t", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    if model.chat_template:   # tinyA: a BITNET template -> the built-in BitNet chat format
        expected = model.chat([{"role": "user", "content": PROMPT}], max_tokens=12, temperature=0)
        bitnet_fmt = cli("run", "-m", small_model_path, "-p", PROMPT, "--n-predict", "12", "--greedy", "-t", "1",
                         "-q", "--prompt-template", "bitnet")
        assert bitnet_fmt.stdout == proc.stdout
    else:                     # the embedded model has no template: the raw prompt
        expected = model.generate(PROMPT, max_tokens=12, temperature=0)
    assert proc.stdout == printed(expected.text)
    assert proc.stderr == ""   # -q


def test_prompt_from_file_and_stdin(model, small_model_path, tmp_path):
    expected = printed(model.generate(PROMPT, max_tokens=6, temperature=0).text)
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PROMPT, encoding="utf-8")
    common = ["-m", small_model_path, "-n", "6", "--greedy", "-t", "1", "-q", "--prompt-template", "raw"]
    assert cli("run", "-f", prompt_file, *common).stdout == expected
    assert cli("run", *common, input=PROMPT).stdout == expected
    assert cli("run", "-p", "-", *common, input=PROMPT).stdout == expected


def test_stop_sequence_cuts_the_output(model, small_model_path):
    full = model.generate(PROMPT, max_tokens=24, temperature=0).text
    assert len(full) > 6, full
    stop = full[len(full) // 2:len(full) // 2 + 3]
    cut = full[:full.index(stop)]
    for flag in ("--stop", "--stop-sequence", "--stop_sequences"):
        proc = cli("run", "-m", small_model_path, "-p", PROMPT, "-n", "24", "--greedy", "-t", "1",
                   "--prompt-template", "raw", flag, stop)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == printed(cut), (flag, stop)
        assert "finish: stop" in proc.stderr


def test_deterministic_mode_repeats_exactly(small_model_path):
    args = ["run", "-m", small_model_path, "-p", PROMPT, "-n", "20", "--temperature", "1.0", "-q",
            "--prompt-template", "raw"]
    det = {"BITNET_DETERMINISTIC": "1"}
    first, second = cli(*args, env=det), cli(*args, "-t", "2", env=det)   # one thread even when asked for two
    assert first.returncode == 0 and first.stdout and first.stdout == second.stdout
    seeded = [cli(*args, "-t", "1", "--seed", str(s)) for s in (1, 1, 2, 3)]
    assert seeded[0].stdout == seeded[1].stdout
    assert len({p.stdout for p in seeded}) > 1   # the seed matters
    assert cli(*args, "-t", "1", env={"BITNET_SEED": "1"}).stdout == seeded[0].stdout


def test_prompt_longer_than_the_context(small_model_path):
    proc = cli("run", "-m", small_model_path, "-p", "word " * 200, "-c", "16")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "does not fit in the context of 16 tokens" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unsupported_architecture(tmp_path):
    from bitnet.gguf import GGMLType, GGUFWriter

    path = tmp_path / "neox.gguf"
    w = GGUFWriter(path)
    w.add("general.architecture", "gpt-neox")
    w.add_tensor("token_embd.weight", (4, 8), GGMLType.F32, np.zeros((4, 8), np.float32))
    w.write()
    proc = cli("run", "-m", path, "-p", "hi")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "unsupported architecture 'gpt-neox'" in proc.stderr


def test_tokenizer_override():
    """`--tokenizer tokenizer.json` replaces the GGUF's own tokenizer (tinyA's tokenizer.json splits digits the
    GPT-2 way, unlike its GGUF's default pre-tokenizer, so the override is visible in the ids)."""
    from conftest import testdata_path

    import bitnet

    gguf = testdata_path("tinyA", "tinyA-i2s.gguf")
    tokenizer = testdata_path("tinyA", "hf", "tokenizer.json")
    prompt = "The 1234 notices"
    expected = bitnet.load(gguf, n_threads=1, tokenizer_path=tokenizer)
    assert expected.tokenize(prompt) != bitnet.load(gguf).tokenize(prompt)
    proc = cli("run", "-m", gguf, "--tokenizer", tokenizer, "-p", prompt, "-n", "8", "--greedy",
               "-t", "1", "-q", "--prompt-template", "raw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed(expected.generate(prompt, max_tokens=8, temperature=0).text)
    missing = cli("run", "-m", gguf, "--tokenizer", tokenizer.parent / "nope.json", "-p", "x")
    assert missing.returncode == 1 and "tokenizer file not found" in missing.stderr


@pytest.mark.parametrize("path", ["mac", "lut"])
def test_run_receipt_verifies(small_model_path, tmp_path, path):
    from bitnet.receipts import file_sha256

    receipt_path = tmp_path / "run.json"
    proc = cli("run", "-m", small_model_path, "-p", PROMPT, "-n", "10", "--greedy", "-t", "1", "-q",
               "--prompt-template", "raw", "--receipt", receipt_path, env={"BITNET_KERNEL": path})
    assert proc.returncode == 0, proc.stderr
    r = json.loads(receipt_path.read_text())
    assert r["command"] == "run" and r["threads"] == 1
    assert r["model"]["sha256"] == file_sha256(small_model_path)
    assert r["tokens_out"] == r["timings"]["decode_tokens"] + 1 or r["finish_reason"] == "stop"
    prefixes = {"I2_S": "i2s_" if path == "mac" else "i2l_", "TQ2_0": "tq2_", "TQ1_0": "tq1_"}
    ternary = [prefixes[t] for t in r["model"]["tensor_types"] if t in prefixes]
    assert ternary and all(any(k.startswith(p) for k in r["kernels"]) for p in ternary), r["kernels"]
    assert any(k.startswith("quantize_act.") for k in r["kernels"])
    check = cli("verify-receipt", receipt_path, "--model", small_model_path)
    assert check.returncode == 0 and "receipt OK" in check.stdout, check.stdout + check.stderr


def test_bench_json_table_and_receipt(small_model_path, tmp_path):
    proc = cli("bench", "-m", small_model_path, "-p", "16", "-n", "8", "-t", "1", "-r", "2", "--json",
               "--receipt", tmp_path / "bench.json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["test"], r["n_threads"]) for r in rows] == [("pp16", 1), ("tg8", 1), ("tg8-greedy", 1),
                                                           ("tg8-sampled", 1)]
    for r in rows:
        assert len(r["samples_ts"]) == 2 and r["avg_ts"] > 0 and r["stddev_ts"] >= 0
        assert r["samples_ts"] == pytest.approx([n / s for n, s in zip(r["samples_n"], r["samples_s"])])
        assert all(0 < n <= (r["n_prompt"] or r["n_gen"]) for n in r["samples_n"])
    assert [r["samples_n"] for r in rows[:2]] == [[16, 16], [8, 8]]
    check = cli("verify-receipt", tmp_path / "bench.json", "--model", small_model_path)
    assert check.returncode == 0, check.stdout + check.stderr
    table = cli("bench", "-m", small_model_path, "-p", "8", "-n", "0", "-t", "1", "-r", "1", "--no-warmup")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].startswith("| model") and "t/s" in lines[0] and len(lines) == 3
    assert re.search(r"\| pp8 +\| +[\d.]+ ± [\d.]+ \|$", lines[2]), lines[2]


def test_perplexity_matches_the_api(model, small_model_path, tmp_path):
    text = ("The engine reads a model file, splits the text into tokens and scores each chunk of the text "
            "against what the model predicted at that position. ") * 6
    path = tmp_path / "held_out.txt"
    path.write_text(text, encoding="utf-8")
    expected = model.perplexity(text, n_ctx=32)
    proc = cli("perplexity", small_model_path, "--text", path, "--ctx", "32", "--json", "-t", "1")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["perplexity"] == pytest.approx(expected.value, rel=1e-6)
    assert got["error"] == pytest.approx(expected.error, rel=1e-6)
    assert (got["n_chunks"], got["n_ctx"], got["n_scored"]) == (expected.n_chunks, 32, expected.n_scored)
    plain = cli("perplexity", "-m", small_model_path, "--text", path, "--ctx", "32", "-q", "-t", "1")
    assert plain.stdout.startswith(f"perplexity: {expected.value:.4f} ± ") and plain.stderr == ""
    short = cli("perplexity", small_model_path, "--text", path, "--ctx", "4096", "-t", "1")
    assert short.returncode == 1 and "at least 4096 are needed" in short.stderr


def test_serve_is_mounted(small_model_path):
    """`bitnet serve` is the server's own command: it starts, answers /health, and stops cleanly on SIGINT."""
    import signal
    import time
    import urllib.error
    import urllib.request

    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    env = child_env()
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "bitnet", "serve", "-m", str(small_model_path), "--port", "0",
                             "-t", "1"], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in proc.stderr:
            found = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if found:
                break
        else:
            pytest.fail("the server never said where it listens")
        url = f"http://127.0.0.1:{found.group(1)}/health"
        for _ in range(100):   # the address is announced just before uvicorn starts listening on it
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        else:
            pytest.fail(f"{url} never answered")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_convert_is_mounted(tmp_path):
    """`bitnet convert` is the converter's own command; its output loads in `inspect` and `run`."""
    from conftest import testdata_path

    hf_dir = testdata_path("tinyA", "hf")
    out = tmp_path / "tiny.gguf"
    proc = cli("convert", hf_dir, "-o", out, "--type", "i2_s")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and f"wrote {out}" in proc.stdout
    again = cli("convert", hf_dir, "-o", out)
    assert again.returncode == 1 and "already exists" in again.stderr and again.stderr.count("\n") == 1
    described = json.loads(cli("inspect", out, "--json").stdout)
    assert described["supported"] and described["tensor_types"]["I2_S"]["count"] == 14
    run = cli("run", "-m", out, "-p", PROMPT, "-n", "4", "--greedy", "-t", "1", "-q")
    assert run.returncode == 0 and run.stdout, run.stderr
