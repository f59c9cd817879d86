"""Receipts: what `verify_receipt` accepts and each reason it rejects one; `bitnet verify-receipt` exit codes.

The receipts here are assembled with `make_receipt` around a real GGUF file (tinyA) with the kernel ids given
explicitly; end-to-end receipts written by `bitnet run/bench` are checked in test_cli_generate.py.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

import bitnet
from bitnet.receipts import (
    SCHEMA_VERSION,
    file_sha256,
    known_kernel_ids,
    load_receipt,
    make_receipt,
    verify_receipt,
    write_receipt,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_file() -> Path:
    from conftest import testdata_path

    return testdata_path("tinyA", "tinyA-i2s.gguf")


@pytest.fixture(scope="module")
def fake_model(model_file):
    """What make_receipt reads from a Model, taken from the real file's header (no forward pass needed)."""
    from bitnet.gguf import GGUFReader

    reader = GGUFReader(model_file)
    counts: dict[str, int] = {}
    for info in reader.tensors.values():
        counts[info.ggml_type.name] = counts.get(info.ggml_type.name, 0) + 1
    return SimpleNamespace(path=model_file, reader=reader, arch=reader.metadata["general.architecture"],
                           tensor_types=counts, device="cpu", device_name="cpu")


@pytest.fixture(scope="module")
def variant() -> str:
    return bitnet.cpu_info()["variant"]


@pytest.fixture
def receipt(fake_model, model_file, variant) -> dict:
    return make_receipt(command="run", model=fake_model, sha256=file_sha256(model_file),
                        kernels=[f"quantize_act.{variant}", f"i2s_gemm.{variant}", f"i2s_gemv.{variant}",
                                 f"f16_gemm.{variant}", f"attention.{variant}"],
                        threads=1, tokens_in=12, tokens_out=20, prefill_tokens=12, prefill_s=0.004,
                        decode_tokens=19, decode_s=0.05)


def test_a_cuda_receipt_names_the_gpu_and_its_kernels(fake_model, model_file):
    gpu_model = SimpleNamespace(**{**vars(fake_model), "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"})
    kwargs = dict(command="run", model=gpu_model, sha256=file_sha256(model_file), threads=1, tokens_in=12,
                  tokens_out=20, prefill_tokens=12, prefill_s=0.004, decode_tokens=19, decode_s=0.05)
    receipt = make_receipt(kernels=["norm_quant.cuda", "i2g_matmul.cuda", "f16_matmul.cuda", "argmax.cuda"],
                           **kwargs)
    assert receipt["backend"] == "cuda" and receipt["device"] == "NVIDIA H100 80GB HBM3"
    assert receipt["kernel_variant"] == "cuda"
    assert verify_receipt(receipt) == []
    without = make_receipt(kernels=["norm_quant.cuda", "f16_matmul.cuda"], **kwargs)
    assert verify_receipt(without) == ["the model has I2_S weights but no i2g_* kernel ran"]
    made_up = make_receipt(kernels=["i2g_matmul.cuda", "flash_attention.cuda"], **kwargs)
    assert verify_receipt(made_up) == ["unknown kernel id(s): flash_attention.cuda"]


def test_a_sound_receipt_passes(receipt, model_file):
    assert receipt["schema_version"] == SCHEMA_VERSION
    assert receipt["model"]["file"] == "tinyA-i2s.gguf"
    assert receipt["model"]["tensor_types"] == {"I2_S": 14, "F32": 9, "F16": 1}
    assert receipt["prefill_tokens_per_s"] == pytest.approx(3000.0)
    assert receipt["bitnet_version"] == bitnet.__version__
    assert verify_receipt(receipt) == []
    assert verify_receipt(receipt, model_path=model_file) == []


def test_known_kernel_ids_come_from_the_compiled_tables():
    ids = known_kernel_ids()
    assert "i2s_gemv.avx2" in ids and "i2s_gemv.scalar" in ids and "attention.neon" in ids
    assert not any(k.startswith("fast_") for k in ids)


def _broken(receipt: dict, path: str, value) -> dict:
    r = copy.deepcopy(receipt)
    *parents, last = path.split(".")
    target = r
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return r


_DELETE = object()


@pytest.mark.parametrize("path, value, reason", [
    ("kernels", [], "'kernels' is empty"),
    ("kernels", ["i2s_gemv.quantum"], "unknown kernel id"),
    ("kernels", ["f16_gemm.scalar"], "no i2s_* or i2l_* kernel ran"),
    ("schema_version", 99, "unsupported 'schema_version'"),
    ("schema", "something-else", "'schema'"),
    ("model.sha256", "abc", "64-digit"),
    ("threads", 0, "'threads'"),
    ("tokens_in", -1, "'tokens_in'"),
    ("decode_tokens_per_s", float("inf"), "'decode_tokens_per_s'"),
    ("timestamp", "yesterday", "not an ISO-8601"),
    ("timestamp", (datetime.now(timezone.utc) + timedelta(days=30)).isoformat(), "in the future"),
    ("timings", _DELETE, "'timings' is missing"),
    ("prefill_tokens_per_s", 12345.0, "disagrees with timings"),
    ("cpu.features", [], "without avx2"),
])
def test_each_flaw_is_reported(receipt, variant, path, value, reason):
    if reason == "without avx2":      # an avx2 receipt from a machine whose features lack AVX2
        receipt = {**receipt, "kernel_variant": "avx2",
                   "kernels": [k.rsplit(".", 1)[0] + ".avx2" for k in receipt["kernels"]]}
    problems = verify_receipt(_broken(receipt, path, value))
    assert any(reason in p for p in problems), problems


def test_implausible_throughput_is_rejected(receipt):
    # A billion tokens/s, consistent with its own timings: still not something a CPU did.
    r = _broken(receipt, "timings.decode_s", 19 / 1e9)
    r["decode_tokens_per_s"] = 1e9
    assert any("implausible" in p for p in verify_receipt(r))
    # ...and a 2-billion-parameter model decoding at 50k tokens/s on one thread neither.
    r = _broken(receipt, "model.n_params", 2_000_000_000)
    r["timings"]["decode_s"] = 19 / 50_000
    r["decode_tokens_per_s"] = 50_000.0
    assert any("implausible" in p for p in verify_receipt(r))


def test_tokens_without_time_are_rejected(receipt):
    r = _broken(receipt, "timings.prefill_s", 0.0)
    assert any("no time" in p for p in verify_receipt(r))


def test_model_hash_mismatch(receipt, model_file, tmp_path):
    altered = tmp_path / "altered.gguf"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    altered.write_bytes(bytes(data))
    problems = verify_receipt(receipt, model_path=altered)
    assert len(problems) == 1 and "model hash differs" in problems[0]
    truncated = tmp_path / "short.gguf"
    truncated.write_bytes(bytes(data[:-10]))
    assert any("model size differs" in p for p in verify_receipt(receipt, model_path=truncated))


def test_not_an_object():
    assert verify_receipt([1, 2]) == ["the receipt is not a JSON object"]


def test_write_is_atomic_and_round_trips(receipt, tmp_path):
    path = write_receipt(tmp_path / "sub" / "r.json", receipt)
    assert load_receipt(path) == json.loads(json.dumps(receipt))
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]   # no temporary file left behind


# -- the command -----------------------------------------------------------------------------------------------
def verify_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bitnet", "verify-receipt", *map(str, args)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          check=False)


def test_verify_receipt_command(receipt, model_file, tmp_path):
    good = write_receipt(tmp_path / "good.json", receipt)
    proc = verify_cli(good, "--model", model_file)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("receipt OK") and "model hash matches" in proc.stdout

    bad = write_receipt(tmp_path / "bad.json", _broken(receipt, "kernels", []))
    proc = verify_cli(bad, "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and any("'kernels' is empty" in p for p in report["problems"])
    assert len(proc.stderr.strip().splitlines()) == 1 and "failed verification" in proc.stderr

    (tmp_path / "junk.json").write_text("{not json")
    proc = verify_cli(tmp_path / "junk.json")
    assert proc.returncode == 1 and "is not JSON" in proc.stderr and "Traceback" not in proc.stderr
