"""Logits do not depend on the thread count where the forward pass really runs in parallel.

The reference-parity model (tinyA) is too small for the engine to wake a team: its matmuls and attention stay on
the calling thread. This model is wide enough that prefill and decode matmuls (>= 4M multiply-adds) and the
attention of later positions (>= 128K) are split across threads, with slices of rows handed out dynamically —
so any dependence of a row's result on which thread computed it, or on where its slice began, shows here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import bitnet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_engine  # noqa: E402  (benchmarks/ is not a package)

SHAPE = dict(n_embd=1024, n_layer=2, n_head=8, n_head_kv=2, n_ff=4096, n_vocab=1024, n_ctx=256)


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wide") / "wide.gguf"
    bench_engine.write_synthetic(path, seed=3, shape=SHAPE)
    return path


def _run(path: Path, n_threads: int, prompt: list[int], n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    model = bitnet.load(path, n_threads=n_threads, n_ctx=SHAPE["n_ctx"])
    batch = model.logits(prompt)
    session = model.new_session()
    logits, _ = session.prefill(prompt)
    assert session.threads_used == n_threads        # the prefill really ran on a team of that size
    steps = []
    for _ in range(n_steps):
        logits = session.step(int(np.argmax(logits)))
        steps.append(logits)
    assert session.threads_used == n_threads        # ...and so did the decode steps
    return batch, np.stack(steps)


def test_logits_are_bit_identical_for_1_2_and_3_threads(wide_model):
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, 256, size=70)]
    batch1, steps1 = _run(wide_model, 1, prompt, 6)
    assert np.isfinite(batch1).all() and np.std(batch1) > 0
    for n_threads in (2, 3):     # 3 threads on 2 cores still splits every op three ways
        batch, steps = _run(wide_model, n_threads, prompt, 6)
        assert np.array_equal(batch, batch1), f"prefill logits differ with {n_threads} threads"
        assert np.array_equal(steps, steps1), f"decode logits differ with {n_threads} threads"


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "sampled"])
def test_decoding_runs_on_every_thread_the_model_was_given(wide_model, temperature):
    """Greedy decoding (the backend's arg-max step) once ran on one thread whatever n_threads said: the count
    the forward pass records is what its parallel matmuls actually ran on."""
    model = bitnet.load(wide_model, n_threads=2, n_ctx=SHAPE["n_ctx"])
    session = model.new_session()
    out = model.generate([1, 2, 3, 4], max_tokens=4, temperature=temperature, seed=1, session=session)
    assert len(out.tokens) == 4            # the last forward was a decode step
    assert session.threads_used == 2
    session.step_greedy(out.tokens[-1])
    assert session.threads_used == 2
    one = bitnet.load(wide_model, n_threads=1, n_ctx=SHAPE["n_ctx"])
    assert one.generate([1, 2, 3, 4], max_tokens=4, temperature=0).tokens == \
        model.generate([1, 2, 3, 4], max_tokens=4, temperature=0).tokens


def test_the_thread_count_is_a_setting_of_the_model_that_every_step_follows(wide_model):
    """The backend is built with its thread count; changing it on the model (what `bitnet bench -t 1,2` does)
    changes what every later step runs on, the greedy step included."""
    model = bitnet.load(wide_model, n_threads=1, n_ctx=SHAPE["n_ctx"])
    session = model.new_session()
    session.prefill([1, 2, 3])
    assert session.step_greedy(4) >= 0 and session.threads_used == 1
    model.n_threads = 2
    assert session.step_greedy(5) >= 0 and session.threads_used == 2
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        model.n_threads = 0
