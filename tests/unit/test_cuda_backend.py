"""The CUDA backend without a GPU: its forward pass (bitnet/backends/cuda/forward.py) runs on
tests/helpers/cuda_emulator.py, a device whose kernels are the CPU kernels, through the real engine, sessions,
sampler, batch scheduler and CLI.
What this pins: the launch sequence, every argument and pointer (the emulator checks types and bounds), the
decode step's CUDA graph (captured once per context, replayed with new inputs), device greedy, memory checks.
The kernels themselves on a GPU: tests/integration/test_cuda_gpu.py and tools/checks/gpu_check.py.

And what a machine without a GPU does with device="cuda": a clear error, never a crash.
"""
from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import PROJECT_ROOT, skip_for_hardware, testdata_path
from cuda_emulator import (
    ARGBEST,
    CAPTURE_INVALIDATED,
    CAPTURE_UNSUPPORTED,
    EmulatedDevice,
    FakeDriver,
    has_gpu,
    make_fatbin,
)

import bitnet
import bitnet.backends.cpu.kernels.testing as bk
import bitnet.backends.cuda.compile as compile_
import bitnet.backends.cuda.driver as driver
from bitnet.backends.cuda.forward import ARGMAX_PARTS, CudaMemoryError
from bitnet.errors import ModelError
from bitnet.gguf import GGMLType

sys.path.insert(0, str(PROJECT_ROOT / "tools" / "hardening" / "fuzz"))
import seeds  # noqa: E402  (tiny models in every supported tensor type)


@pytest.fixture
def emulated(monkeypatch):
    """bitnet.load(device="cuda") gets an emulated GPU; the test reads its counters through the model."""
    monkeypatch.setattr(driver, "CudaDevice", EmulatedDevice)


@functools.cache
def _real_gpu() -> bool:
    return has_gpu()


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def cuda(request, monkeypatch):
    """The device a contract test runs the CUDA backend on: the emulated one always, and the real GPU where one
    is lent (its name is returned; graph and launch counters exist on the emulated device only)."""
    if request.param == "emulated":
        monkeypatch.setattr(driver, "CudaDevice", EmulatedDevice)
    elif not _real_gpu():
        skip_for_hardware("no GPU: the CPU-versus-CUDA contract tests ran on the emulated device")
    return request.param


def _min_cosine(device: str) -> float:
    """How close the GPU's logits must be to the CPU's: the emulator runs the CPU's kernels, so nearly exact; a
    real GPU sums in another order (the issue's bar for it: min cosine >= 0.999)."""
    return 0.99999 if device == "emulated" else 0.999


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _models(tmp_path):
    """(name, path): the embedded model, one per architecture with another embedding type, and F16 layers."""
    yield "embedded", None
    for arch, embedding in (("bitnet-b1.58", GGMLType.BF16), ("bitnet", GGMLType.Q8_0), ("llama", GGMLType.F32)):
        yield arch, seeds.write_model(tmp_path / f"{arch}.gguf", arch, GGMLType.I2_S, embedding)
    for arch in ("bitnet-b1.58", "llama"):        # float layers: the float matmuls and the separate gating
        yield f"{arch}-f16", seeds.write_model(tmp_path / f"{arch}-f16.gguf", arch, GGMLType.F16, GGMLType.F16)


def test_tinya_logits_match_the_cpu_backend(cuda):
    path = testdata_path("tinyA", "tinyA-i2s.gguf")
    cpu, gpu = bitnet.load(path, n_ctx=128), bitnet.load(path, n_ctx=128, device="cuda")
    assert gpu.device == "cuda" and (gpu._transformer.device_name == EmulatedDevice.name) == (cuda == "emulated")
    ids = [int(t) for t in np.random.default_rng(0).integers(0, cpu.n_vocab, 70)]
    a, b = cpu.logits(ids), gpu.logits(ids)
    assert _cosines(a, b).min() > _min_cosine(cuda)
    if cuda == "emulated":
        np.testing.assert_allclose(b, a, atol=1e-3 * np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).all()


def test_every_architecture_and_embedding_type_matches_the_cpu(cuda, tmp_path):
    for name, path in _models(tmp_path):
        cpu, gpu = bitnet.load(path, n_ctx=64), bitnet.load(path, n_ctx=64, device="cuda")
        ids = [int(t) for t in np.random.default_rng(1).integers(0, cpu.n_vocab, 40)]
        a, b = cpu.logits(ids), gpu.logits(ids)
        assert _cosines(a, b).min() > _min_cosine(cuda), name


def test_greedy_generation_is_the_cpus_and_uses_one_graph_per_context(cuda):
    cpu, gpu = bitnet.load(n_ctx=256), bitnet.load(n_ctx=256, device="cuda")
    dev = gpu._transformer.dev
    want = cpu.generate("The meaning of life", max_tokens=24, temperature=0)
    got = gpu.generate("The meaning of life", max_tokens=24, temperature=0)
    assert got.tokens == want.tokens and got.text == want.text
    # the decode steps after the prompt: one capture (the greedy graph), a replay per token, argmax on device
    if cuda == "emulated":
        assert dev.captures == 1 and dev.replays == len(got.tokens) - 1
        assert dev.launches["argmax"] == dev.replays
    # A second prompt extending the first: the cache is reused, and whatever it adds or decodes replays the
    # context's two graphs (greedy, and the logits one a one-token prefill uses): never a third capture.
    for prompt in ("The meaning of life is", "The meaning of life is not"):
        again = gpu.generate(prompt, max_tokens=8, temperature=0)
        assert again.tokens == cpu.generate(prompt, max_tokens=8, temperature=0).tokens
    assert cuda != "emulated" or dev.captures <= 2


def test_long_prompts_replay_a_chunk_graph_and_match_the_cpu(cuda):
    from bitnet.backends.checks import UBATCH

    cpu, gpu = bitnet.load(n_ctx=3 * UBATCH), bitnet.load(n_ctx=3 * UBATCH, device="cuda")
    dev = gpu._transformer.dev
    ids = [int(t) for t in np.random.default_rng(4).integers(0, cpu.n_vocab, 2 * UBATCH + 37)]
    a, b = cpu.logits(ids), gpu.logits(ids)          # two full chunks (one capture, two replays) and a tail
    assert _cosines(a, b).min() > _min_cosine(cuda)
    assert cuda != "emulated" or (dev.captures == 1 and dev.replays == 2)
    want = cpu.generate(ids, max_tokens=5, temperature=0).tokens
    assert gpu.generate(ids, max_tokens=5, temperature=0).tokens == want


def test_sampled_generation_is_the_cpus_with_logits_from_the_graph(cuda):
    cpu, gpu = bitnet.load(n_ctx=256), bitnet.load(n_ctx=256, device="cuda")
    for kwargs in (dict(temperature=0.9, seed=5), dict(temperature=0, repeat_penalty=1.3),
                   dict(temperature=0.7, top_k=5, top_p=0.8, seed=11, stop=["\n\n"])):
        want = cpu.generate("Once upon a time", max_tokens=20, **kwargs)
        got = gpu.generate("Once upon a time", max_tokens=20, **kwargs)
        assert got.tokens == want.tokens, kwargs
    dev = gpu._transformer.dev
    if cuda == "emulated":
        assert dev.captures == 1 and "argmax" not in dev.launches   # the logits graph: the host sampler chose


def test_batched_generation_gives_each_prompt_its_own_result(cuda):
    gpu = bitnet.load(n_ctx=128, device="cuda")
    prompts = ["A fool", "The best way", "Never"]
    alone = [gpu.generate(p, max_tokens=10, temperature=0.8, seed=2).tokens for p in prompts]
    together = gpu.generate_batch(prompts, max_tokens=10, temperature=0.8, seed=2)
    assert [c.tokens for c in together] == alone


def test_forward_batch_rows_equal_the_cpu_backends(cuda):
    cpu, gpu = bitnet.load(n_ctx=64), bitnet.load(n_ctx=64, device="cuda")
    outs = []
    for m in (cpu, gpu):
        tr = m._transformer
        ctxs = [tr.new_context(64) for _ in range(3)]
        out = np.empty((3, m.n_vocab), dtype=np.float32)
        # context 0 takes a 4-token chunk, context 1 one token, context 2 two (logits of rows 3, 4 and 6)
        tr.forward_batch(ctxs, [5, 9, 12, 40, 7, 100, 101], [0, 1, 2, 3, 0, 0, 1],
                         [0, 0, 0, 0, 1, 2, 2], [3, 4, 6], out)
        outs.append(out)
    assert _cosines(*outs).min() > _min_cosine(cuda)


def test_sessions_on_other_threads_make_the_context_current(cuda):
    """A server decodes on worker threads: every entry point makes the GPU's context current there (the
    emulator, like the driver, refuses a call from a thread where it is not)."""
    gpu = bitnet.load(n_ctx=64, device="cuda")
    want = gpu.generate("Hello", max_tokens=6, temperature=0).tokens
    results, errors = [], []

    def worker():
        try:
            session = gpu.new_session()
            results.append(gpu.generate("Hello", max_tokens=6, temperature=0, session=session).tokens)
            gpu.generate("Hello", max_tokens=6, temperature=0.5, seed=1, session=session)
            del session
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [want, want]


def test_perplexity_matches_the_cpu(cuda):
    text = (PROJECT_ROOT / "bitnet" / "data" / "heldout.txt").read_text()[:4000]
    cpu, gpu = bitnet.load(n_ctx=128), bitnet.load(n_ctx=128, device="cuda")
    assert gpu.perplexity(text, n_ctx=64).value == pytest.approx(cpu.perplexity(text, n_ctx=64).value, rel=1e-4)


def test_int8_head_on_the_gpu_reads_q8_0_weights(cuda):
    exact = bitnet.load(n_ctx=64, device="cuda")
    q8 = bitnet.load(n_ctx=64, device="cuda", lm_head="q8_0")
    assert q8._transformer.head_type == GGMLType.Q8_0 and exact._transformer.head_type == GGMLType.F16
    ids = list(range(1, 30))
    assert _cosines(exact.logits(ids), q8.logits(ids)).min() > 0.999


def test_bad_requests_fail_like_the_cpu_backend(cuda):
    gpu = bitnet.load(n_ctx=32, device="cuda")
    tr = gpu._transformer
    ctx = tr.new_context(32)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tr.forward(ctx, [gpu.n_vocab], 0, None, False)
    with pytest.raises(ValueError, match="do not fit in the context of 32 tokens"):
        tr.forward(ctx, [1, 2, 3], 30, None, False)
    with pytest.raises(ValueError, match="different model"):
        tr.forward(bitnet.load(n_ctx=32).new_session().context, [1], 0, None, False)
    with pytest.raises(ValueError, match="exceeds the 32 this CUDA model was loaded for"):
        tr.new_context(64)
    with pytest.raises(bitnet.errors.ContextOverflowError):
        gpu.generate(list(range(1, 40)), max_tokens=4)


def test_a_model_larger_than_free_memory_fails_naming_sizes(monkeypatch):
    monkeypatch.setattr(driver, "CudaDevice", lambda: EmulatedDevice(free_bytes=1 << 20))
    with pytest.raises(CudaMemoryError, match=r"the model \([\d.]+ MiB of weights, [\d.]+ MiB of scratch and RoPE "
                                              r"table\) needs [\d.]+ MiB of GPU memory; emulated GPU .* has 1\.0 "
                                              r"MiB free of 1\.0 MiB"):
        bitnet.load(device="cuda")


def test_a_kv_cache_larger_than_free_memory_fails_naming_sizes(monkeypatch):
    # the embedded model with its scratch and RoPE table for 200k positions (~100 MiB) fits, their cache does not
    monkeypatch.setattr(driver, "CudaDevice", lambda: EmulatedDevice(free_bytes=256 << 20))
    with pytest.raises(CudaMemoryError, match=r"a KV cache of 200000 positions needs [\d.]+ MiB of GPU memory"):
        bitnet.load(n_ctx=200_000, device="cuda")


def test_ternary_types_without_a_gpu_layout_are_refused_by_name(emulated, tmp_path):
    path = seeds.write_model(tmp_path / "tq2.gguf", "bitnet-b1.58", GGMLType.TQ2_0, GGMLType.F16)
    with pytest.raises(ModelError, match=r"tensor 'blk\.0\.attn_q\.weight' is TQ2_0: the CUDA backend runs "
                                         r"ternary layers in I2_S"):
        bitnet.load(path, device="cuda")


def test_non_finite_logits_fail_on_the_device_greedy_path(cuda):
    gpu = bitnet.load(n_ctx=32, device="cuda")
    tr = gpu._transformer
    ctx = tr.new_context(32)
    tr.dev.upload(tr.output_norm, np.full(tr.d["n_embd"], np.nan, dtype=np.float32))
    with pytest.raises(ModelError, match="non-finite logit at position 0"):
        tr.greedy(ctx, 5, 0)


def test_the_device_is_chosen_by_argument_then_environment(emulated, monkeypatch):
    monkeypatch.setenv("BITNET_DEVICE", "cuda")
    assert bitnet.load(n_ctx=32).device == "cuda"
    assert bitnet.load(n_ctx=32, device="cpu").device == "cpu"
    monkeypatch.setenv("BITNET_DEVICE", "gpu")
    with pytest.raises(ValueError, match="BITNET_DEVICE must be one of cpu, cuda, got 'gpu'"):
        bitnet.load(n_ctx=32)
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, got 'metal'"):
        bitnet.load(n_ctx=32, device="metal")


def test_the_gpu_check_script_runs_as_it_is(emulated, capsys):
    """tools/checks/gpu_check.py, the script a GPU machine runs, end to end on the emulated device (small sizes)."""
    testdata_path("tinyA", "tinyA-i2s.gguf")
    sys.path.insert(0, str(PROJECT_ROOT / "tools" / "checks"))
    import gpu_check

    assert gpu_check.main(["--model", str(bitnet.default_model_path()), "--tokens", "4", "--prefill", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["parity"]["tinyA"]["greedy_equal"]
    assert report["parity"]["tinyA"]["min_cosine"] >= 0.999 and report["parity"]["synthetic_2b4t"]["greedy_equal"]
    assert set(report["kernels"]) == {"qkv 512x256", "o 256x256", "gate|up 1536x256", "down 256x768",
                                      "lm head 4096x256 (F16)"}
    assert report["decode_greedy_tokens_per_s"] > 0 and report["prefill_tokens"] == 16


def test_run_and_bench_on_the_device_write_receipts_that_verify(emulated, tmp_path, capsys):
    from bitnet.cli import main
    from bitnet.receipts import verify_receipt

    assert main(["run", "--device", "cuda", "-p", "Hello", "-n", "6", "--temperature", "0", "-q",
                 "--receipt", str(tmp_path / "run.json")]) == 0
    receipt = json.loads((tmp_path / "run.json").read_text())
    assert receipt["backend"] == "cuda" and receipt["device"] == EmulatedDevice.name
    assert {"i2g_matmul.cuda", "argmax_blocks.cuda", "argmax.cuda", "attention_split.cuda"} <= set(receipt["kernels"])
    assert not any(k.endswith(("avx2", "avx512", "scalar")) for k in receipt["kernels"])   # nothing ran on the CPU
    assert verify_receipt(receipt, model_path=bitnet.default_model_path()) == []
    capsys.readouterr()
    assert main(["bench", "-ngl", "99", "-p", "8", "-n", "4", "-r", "1", "--json", "-q",
                 "--receipt", str(tmp_path / "bench.json")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["backend"] == f"CUDA ({EmulatedDevice.name})" for r in rows)
    assert verify_receipt(json.loads((tmp_path / "bench.json").read_text())) == []


def test_the_http_server_serves_from_the_cuda_backend(tmp_path):
    """`bitnet serve --device cuda` in a real process over real HTTP, its device emulated (a sitecustomize on the
    child's path swaps the emulator in): completions equal the CPU model's, batched slots included."""
    import os
    import re
    import time

    import httpx

    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT / 'tests' / 'helpers')!r})\n"
        "import bitnet.backends.cuda.driver\nfrom cuda_emulator import EmulatedDevice\n"
        "bitnet.backends.cuda.driver.CudaDevice = EmulatedDevice\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{PROJECT_ROOT}")
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bitnet.server", "--port", "0", "--device", "cuda",
                                 "--ctx-size", "256", "--parallel", "2"], cwd=PROJECT_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"on http://127\.0\.0\.1:(\d+) ", log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        cpu = bitnet.load(n_ctx=256)
        with httpx.Client(base_url=f"http://127.0.0.1:{match.group(1)}", timeout=60) as http:
            for prompt in ("Once upon a time", "The dog"):
                body = {"prompt": prompt, "max_tokens": 12, "temperature": 0}
                got = http.post("/v1/completions", json=body).json()["choices"][0]["text"]
                assert got == cpu.generate(prompt, max_tokens=12, temperature=0).text
    finally:
        proc.terminate()
        proc.wait(30)


# ---- a machine without a GPU (this one, CI): a clear error

def test_without_a_gpu_device_cuda_says_why():
    if has_gpu():
        skip_for_hardware("this machine has a usable GPU")
    with pytest.raises(driver.CudaUnavailableError, match="device='cuda' needs"):
        bitnet.load(device="cuda")
    assert bitnet.load().generate("Hi", max_tokens=2).tokens   # and the CPU goes on working


def test_without_the_cuda_extra_device_cuda_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    with pytest.raises(driver.CudaUnavailableError, match=r"pip install 'bitnet-engine\[cuda\]'"):
        bitnet.load(device="cuda")


@pytest.mark.parametrize("flags", [["--device", "cuda"], ["-ngl", "99"], ["--n-gpu-layers", "1"]])
def test_the_cli_without_a_gpu_exits_with_the_reason(flags):
    if has_gpu():
        skip_for_hardware("this machine has a usable GPU")
    res = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "Hi", "-n", "2", *flags],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "bitnet run: error: device='cuda' needs" in res.stderr and "Traceback" not in res.stderr


def test_the_cli_device_flags_resolve_and_conflict():
    ok = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "Hi", "-n", "2", "-ngl", "0",
                         "--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "Hi", "--device", "cpu", "-ngl", "4"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--device cpu contradicts --n-gpu-layers 4" in bad.stderr


def test_both_backends_refuse_the_same_bad_layouts_in_the_same_words(cuda):
    """Token, position and batch-layout checks are written once (bitnet.backends.checks), above both backends."""
    messages = {}
    for device in ("cpu", "cuda"):
        model = bitnet.load(n_ctx=16, device=device)
        tr = model._transformer
        a, b = tr.new_context(8), tr.new_context(8)
        out = np.empty((1, model.n_vocab), dtype=np.float32)
        cases = [
            ([a, b], [1, 2, 3], [0, 0, 1], [0, 1, 0], [2]),      # context 0's rows split
            ([a], [1, 2], [0, 2], [0, 0], [1]),                  # positions not consecutive
            ([a], [1], [8], [0], [0]),                           # past the context
            ([a], [1], [0], [1], [0]),                           # no context 1
            ([a], [model.n_vocab], [0], [0], [0]),               # outside the vocabulary
            ([a], [1, 2], [0, 1], [0, 0], [1, 0]),               # logit rows not increasing
            ([a], [1], [0], [0, 0], [0]),                        # owners of the wrong length
        ]
        for contexts, tokens, positions, owners, wanted in cases:
            with pytest.raises(ValueError) as err:
                tr.forward_batch(contexts, tokens, positions, owners, wanted, out)
            messages.setdefault(device, []).append(str(err.value))
        calls = [(tr.forward, (a, [1, 2, 3], 7, None, False)),       # past the context's end
                 (tr.forward, (a, [1], -1, None, False)),            # a negative position
                 (tr.greedy, (a, 1, 8)),                              # the greedy step too
                 (tr.greedy, (a, model.n_vocab, 0)),
                 (tr.forward_batch, ([a], [1], [0], [0], [0],
                         np.empty((2, model.n_vocab), np.float32)))]   # logits_out shape
        for call, args in calls:
            with pytest.raises(ValueError) as err:
                call(*args)
            messages[device].append(str(err.value))
    assert messages["cpu"] == messages["cuda"]
    assert "not one contiguous run" in messages["cpu"][0] and "wrong shape" in messages["cpu"][-1]


# ---- which kernel image a GPU loads (the real CudaDevice over a fake driver that pretends a GPU and a driver)

PTX_90 = "//\n.version 9.0\n.target sm_80\n.address_size 64\n"
ALL_SASS = [80, 86, 89, 90, 100, 110, 120]


def _fake_gpu(monkeypatch, tmp_path, capability, driver_version, sass=ALL_SASS, ptx=PTX_90, nvrtc=True, **kw):
    """A CudaDevice on FakeDriver(capability, driver_version), the package's kernels.fatbin holding SASS of `sass`
    (None: no fatbin, as built without nvcc), kernels.ptx holding `ptx` (None: none), NVRTC installed or not
    (its compile stubbed: the fake driver only looks at the image's kind)."""
    fake = FakeDriver(capability, driver_version, **kw)
    monkeypatch.setattr(driver, "_driver", lambda: fake)
    fatbin, ptx_file = tmp_path / "kernels.fatbin", tmp_path / "kernels.ptx"
    if sass is not None:
        fatbin.write_bytes(make_fatbin(sass))
    if ptx is not None:
        ptx_file.write_text(ptx)
    monkeypatch.setattr(compile_, "BUILT_FATBIN", fatbin)
    monkeypatch.setattr(compile_, "BUILT_PTX", ptx_file)
    monkeypatch.setattr(compile_, "_nvrtc", lambda: "nvrtc" if nvrtc else None)
    monkeypatch.setattr(compile_, "compile_with_nvrtc",
                        lambda source, arch, nv, cubin=False: b"\x7fELF" + arch.encode())
    return fake


@pytest.mark.parametrize("capability,driver_version,sass,image,offered", [
    ((8, 0), 12040, ALL_SASS, "SASS sm_80 (kernels.fatbin)", ["fatbin"]),    # A100, a CUDA 12.4 driver
    ((8, 6), 12040, ALL_SASS, "SASS sm_86 (kernels.fatbin)", ["fatbin"]),
    ((8, 7), 12040, ALL_SASS, "SASS sm_86 (kernels.fatbin)", ["fatbin"]),    # Orin runs sm_86's
    ((8, 9), 12040, [80, 86], "SASS sm_86 (kernels.fatbin)", ["fatbin"]),    # the newest minor not above its own
    ((9, 0), 12080, ALL_SASS, "SASS sm_90 (kernels.fatbin)", ["fatbin"]),    # H100 under R570
    ((10, 3), 12090, ALL_SASS, "SASS sm_100 (kernels.fatbin)", ["fatbin"]),
    ((12, 1), 13000, ALL_SASS, "SASS sm_120 (kernels.fatbin)", ["fatbin"]),
    ((9, 0), 13000, [80, 86], "PTX ISA 9.0 (kernels.ptx)", ["ptx"]),          # no sm_9x SASS: JIT from the PTX
    ((9, 0), 12080, [80, 86], "NVRTC cubin for sm_90", ["cubin"]),            # nor a driver for PTX ISA 9.0
    ((9, 0), 12080, None, "NVRTC cubin for sm_90", ["cubin"]),                # built without nvcc, an old driver
])
def test_the_device_loads_sass_for_its_architecture_then_ptx_then_nvrtc(monkeypatch, tmp_path, capability,
                                                                       driver_version, sass, image, offered):
    fake = _fake_gpu(monkeypatch, tmp_path, capability, driver_version, sass=sass)
    dev = driver.CudaDevice()
    assert (dev.image, fake.offered, dev.driver_version) == (image, offered, driver_version)
    assert fake.loaded[0] == {"SASS": "sass", "PTX": "ptx", "NVRTC": "cubin"}[image.split()[0]]
    dev.close()


def test_without_nvcc_and_with_a_new_driver_the_ptx_is_not_needed(monkeypatch, tmp_path):
    """An install built without nvcc (no fatbin, no PTX) compiles a cubin for the GPU with NVRTC at run time."""
    fake = _fake_gpu(monkeypatch, tmp_path, (9, 0), 13000, sass=None, ptx=None)
    assert driver.CudaDevice().image == "NVRTC cubin for sm_90" and fake.loaded == ("cubin",)


def test_an_unsupported_ptx_and_driver_pair_is_one_error_naming_both(monkeypatch, tmp_path):
    fake = _fake_gpu(monkeypatch, tmp_path, (9, 0), 12080, sass=[80, 86], nvrtc=False, name="NVIDIA H100 80GB HBM3")
    with pytest.raises(driver.CudaUnavailableError) as err:
        driver.CudaDevice()
    assert str(err.value) == (
        "device='cuda': none of the kernels' images loads on NVIDIA H100 80GB HBM3 (sm_90) under this NVIDIA "
        "driver, which supports CUDA 12.8 (cuDriverGetVersion 12080): kernels.fatbin has no SASS for sm_90 (it has "
        "sm_80, sm_86); kernels.ptx is PTX ISA 9.0, which needs a driver for CUDA 13.0 or newer, R580+; no NVRTC "
        "(pip install 'bitnet-engine[cuda]'). The package needs SASS for sm_90 in kernels.fatbin (build it with an "
        "nvcc that targets sm_90) or a driver for CUDA 13.0 or newer (R580+)")
    assert fake.offered == [] and fake.released      # nothing offered in vain; the context reference given back


def test_images_the_driver_refuses_are_named_in_the_error(monkeypatch, tmp_path):
    """The host's judgement can be wrong (a PTX ISA it has no entry for, a cubin newer than the driver): each image
    the driver refuses is tried in turn, and the error says what each got."""
    fake = _fake_gpu(monkeypatch, tmp_path, (9, 0), 12040, sass=[80], ptx=PTX_90.replace("9.0", "9.9"),
                     accept_cubin=False)
    with pytest.raises(driver.CudaUnavailableError, match=r"supports CUDA 12\.4 \(cuDriverGetVersion 12040\): "
                       r"kernels\.fatbin has no SASS for sm_90 \(it has sm_80\); the driver refused PTX ISA 9\.9 "
                       r"\(kernels\.ptx\) \(CUDA_ERROR_UNSUPPORTED_PTX_VERSION\); the driver refused NVRTC cubin "
                       r"for sm_90 \(CUDA_ERROR_INVALID_IMAGE\)\. The package needs"):
        driver.CudaDevice()
    assert fake.offered == ["ptx", "cubin"]


# ---- faults named by the kernel that caused them; receipts claim only what completed

def _launch(dev, name: str) -> None:
    dev.launch(name, (1,), 32, *[0.0 if c == "f" else 0 for c in driver.PARAMS[name]])


def test_with_cuda_sync_a_fault_names_its_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("BITNET_CUDA_SYNC", "1")
    fake = _fake_gpu(monkeypatch, tmp_path, (9, 0), 13000, faults={"rmsnorm"})
    dev = driver.CudaDevice()
    _launch(dev, "norm_quant")
    assert dev.ran == {"norm_quant"} and fake.synchronizations == 1       # synchronized after its launch
    with pytest.raises(driver.CudaError) as err:
        _launch(dev, "rmsnorm")
    assert str(err.value) == ("kernel rmsnorm failed (BITNET_CUDA_SYNC=1 synchronized after its launch): "
                              "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)")
    assert dev.ran == {"norm_quant"}


def test_without_cuda_sync_kernels_count_as_run_only_after_a_good_synchronization(monkeypatch, tmp_path):
    fake = _fake_gpu(monkeypatch, tmp_path, (9, 0), 13000)
    dev = driver.CudaDevice()
    _launch(dev, "embed_rows")
    _launch(dev, "norm_quant")
    assert dev.ran == set() and fake.synchronizations == 0
    dev.synchronize()
    assert dev.ran == {"embed_rows", "norm_quant"}
    dev.reset_ran()
    fake.faults.add("rmsnorm")
    _launch(dev, "rmsnorm")
    _launch(dev, "argmax")
    with pytest.raises(driver.CudaError) as err:
        dev.synchronize()
    assert str(err.value) == ("cuStreamSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was "
                              "encountered); one of argmax, rmsnorm faulted: BITNET_CUDA_SYNC=1 names which")
    assert dev.ran == set()


def test_a_faulting_kernel_is_named_and_left_out_of_the_receipt(emulated, monkeypatch):
    """Through the forward pass: with BITNET_CUDA_SYNC=1 the step runs launch by launch, no graph, and the error
    names the kernel; without it the fault surfaces at the step's synchronization and the receipt keeps none of
    the step's kernels."""
    cpu = bitnet.load(n_ctx=32)
    monkeypatch.setenv("BITNET_CUDA_SYNC", "1")
    model = bitnet.load(n_ctx=32, device="cuda")
    tr = model._transformer
    assert model.generate("Hi", max_tokens=4, temperature=0).tokens == \
        cpu.generate("Hi", max_tokens=4, temperature=0).tokens
    assert tr.dev.captures == 0 and tr.dev.replays == 0         # nothing captured: each launch synchronized
    tr.dev.faults.add("attention_split")
    with pytest.raises(driver.CudaError, match=r"^kernel attention_split failed \(BITNET_CUDA_SYNC=1 synchronized "
                                               r"after its launch\): CUDA_ERROR_ILLEGAL_ADDRESS"):
        tr.greedy(tr.new_context(32), 5, 0)

    monkeypatch.delenv("BITNET_CUDA_SYNC")
    model = bitnet.load(n_ctx=32, device="cuda")
    tr = model._transformer
    ctx = tr.new_context(32)
    model.reset_ran()
    tr.greedy(ctx, 5, 0)
    assert {"argmax_blocks.cuda", "argmax.cuda", "attention_split.cuda"} <= set(model.ran_kernels())
    model.reset_ran()
    tr.dev.faults.add("attention_split")
    with pytest.raises(driver.CudaError, match=r"^cuStreamSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS .*; one "
                                               r"of argmax, argmax_blocks, attention_combine, attention_split, .* "
                                               r"faulted"):
        tr.greedy(ctx, 7, 1)
    assert model.ran_kernels() == []


# ---- no frees during a CUDA graph capture

def test_the_emulator_refuses_alloc_free_and_sync_on_the_capturing_thread():
    dev = EmulatedDevice()
    ptr = dev.alloc(64)
    for call, run in (("cuMemAlloc(16 bytes)", lambda: dev.alloc(16)), ("cuMemFree", lambda: dev.free(ptr)),
                      ("cuStreamSynchronize", dev.synchronize)):
        dev.begin_capture()
        with pytest.raises(driver.CudaError, match=rf"^{re.escape(call)} failed: {re.escape(CAPTURE_UNSUPPORTED)}$"):
            run()
        with pytest.raises(driver.CudaError, match=rf"^cuStreamEndCapture failed: {re.escape(CAPTURE_INVALIDATED)}$"):
            dev.end_capture()
    dev.begin_capture()         # thread-local capture mode: another thread may allocate and free meanwhile
    other = threading.Thread(target=lambda: (dev.activate(), dev.free(dev.alloc(16))))
    other.start()
    other.join()
    assert dev.end_capture() == []


def _live(dev, ptr: int) -> bool:
    return ptr in (dev._buffers if isinstance(dev, EmulatedDevice) else dev._allocations)


def test_a_context_collected_during_a_capture_is_freed_after_it(cuda, monkeypatch):
    """The garbage collector may drop a context on the capturing thread in the middle of a capture: its caches are
    freed once the capture has ended (a free inside it would invalidate the capture)."""
    cpu = bitnet.load(n_ctx=32)
    model = bitnet.load(n_ctx=32, device="cuda")
    tr, dev = model._transformer, model._transformer.dev
    doomed = [tr.new_context(16)]
    caches = (doomed[0].kcache, doomed[0].vcache)
    seen_during_capture = []
    launch = dev.launch

    def launch_then_drop(*args):
        launch(*args)
        if doomed:
            doomed.pop()       # the last reference: CudaContext.__del__ runs here, inside the capture
            seen_during_capture.append(all(_live(dev, p) for p in caches))

    monkeypatch.setattr(dev, "launch", launch_then_drop)
    ctx = tr.new_context(32)
    want = int(np.argmax(cpu.logits([5])[0]))
    assert tr.greedy(ctx, 5, 0) == want
    assert seen_during_capture == [True] and not any(_live(dev, p) for p in caches)


def test_a_context_closed_on_another_thread_during_a_capture_is_freed_after_it(cuda, monkeypatch):
    model = bitnet.load(n_ctx=32, device="cuda")
    tr, dev = model._transformer, model._transformer.dev
    other = tr.new_context(16)
    caches = (other.kcache, other.vcache)
    during = []
    launch = dev.launch

    def launch_then_close_elsewhere(*args):
        launch(*args)
        if not during:
            t = threading.Thread(target=other.close)      # does not wait for the capture: it defers
            t.start()
            t.join(10)
            during.append((t.is_alive(), all(_live(dev, p) for p in caches)))

    monkeypatch.setattr(dev, "launch", launch_then_close_elsewhere)
    tr.greedy(tr.new_context(32), 5, 0)
    assert during == [(False, True)] and not any(_live(dev, p) for p in caches)


# ---- the kernel fixes of issue 30, on the emulated device

def test_restrict_pointers_never_alias_and_the_gating_runs_in_place(emulated):
    dev = EmulatedDevice()
    n = 300
    g, u = np.random.default_rng(1).standard_normal((2, n)).astype(np.float32)
    a, b = dev.alloc(4 * n), dev.alloc(4 * n)
    dev.upload(a, g)
    dev.upload(b, u)
    with pytest.raises(AssertionError, match="the same address .* one of them __restrict__"):
        dev.launch("rmsnorm", (1,), 256, a, 0, n, 1e-5, a)
    with pytest.raises(AssertionError, match="__restrict__"):
        dev.launch("relu2_mul", (2,), 256, a, b, n, b)          # up is __restrict__: not the output
    dev.launch("silu_mul", (2,), 256, a, b, n, a)                # gate and out: in place, by design
    out = np.empty(n, np.float32)
    dev.download(out, a)
    np.testing.assert_array_equal(out, bk.silu_mul(g, u))


@pytest.mark.parametrize("gtype", [GGMLType.F16, GGMLType.BF16])
def test_half_matrices_with_odd_rows_are_refused_at_load(emulated, gtype):
    tr = bitnet.load(n_ctx=16, device="cuda")._transformer
    m = SimpleNamespace(name="blk.0.ffn_down.weight", ggml_type=int(gtype), K=15, M=4, data=bytes(2 * 15 * 4),
                        wscale=1.0)
    with pytest.raises(ModelError, match=rf"^tensor 'blk\.0\.ffn_down\.weight' is {gtype.name} with rows of 15 "
                                         r"values: the CUDA backend's F16/BF16 matmul needs an even row length$"):
        tr._upload_matrix(m)
    m.K, m.data = 16, bytes(2 * 16 * 4)
    assert tr._upload_matrix(m).K == 16


def _argmax_two_stage(dev, v: np.ndarray, parts: int) -> tuple[int, int]:
    logits, part, out = dev.alloc(v.nbytes), dev.alloc(ARGBEST.itemsize * parts), dev.alloc(8)
    dev.upload(logits, v)
    dev.launch("argmax_blocks", (parts,), 256, logits, v.size, part)
    dev.launch("argmax", (1,), 128, part, parts, out)
    res = np.empty(2, np.int32)
    dev.download(res, out)
    return int(res[0]), int(res[1])


@pytest.mark.parametrize("case", ["plain", "ties across blocks", "nan", "+inf", "all non-finite", "fewer than parts"])
def test_the_two_stage_argmax_is_numpys_first_index_and_flags_non_finite(case):
    rng = np.random.default_rng(3)
    v = rng.standard_normal(5 if case == "fewer than parts" else 128256).astype(np.float32)
    if case == "ties across blocks":
        v[[120000, 1003, 77, 1002]] = 40.0       # 77 and 1002/1003 in other blocks than 120000: 77 wins
    if case == "nan":
        v[9] = np.nan
    if case == "+inf":
        v[500] = np.inf                          # not a candidate: flagged, as on the CPU path
    if case == "all non-finite":
        v[:] = np.nan
    finite = np.isfinite(v)
    want = (int(np.argmax(np.where(finite, v, -np.inf))), int(not finite.all()))
    for parts in (1, 7, ARGMAX_PARTS):          # the answer does not depend on the split
        assert _argmax_two_stage(EmulatedDevice(), v, parts) == want
