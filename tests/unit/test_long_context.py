"""Long contexts: the attention of a row is cut into fixed spans of positions whose results are folded in order,
decode rows hand their spans to the whole thread team, prompt rows go over the spans once per block of tokens.
Whatever the thread count or the way a prompt is cut into steps, the logits are the same bits. The opt-in 8-bit
KV cache (cache_type="q8_0") stays close to the exact f16 one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bitnet.backends.cpu._forward import Context
from conftest import PROJECT_ROOT

import bitnet
from bitnet.backends import build
from bitnet.gguf import GGUFReader

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import bench_engine  # noqa: E402  (benchmarks/ is not a package)

# wide enough that decode and prefill wake the team (see test_parallel_determinism.py), head_dim 128, GQA groups
# of 4, and a context of several 256-position spans
SHAPE = dict(n_embd=1024, n_layer=2, n_head=8, n_head_kv=2, n_ff=4096, n_vocab=1024, n_ctx=1536)
DEPTH = 1100


@pytest.fixture(scope="module")
def long_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.gguf"
    bench_engine.write_synthetic(path, seed=5, shape=SHAPE)
    return path


def _prompt(n: int = DEPTH) -> list[int]:
    return [int(t) for t in np.random.default_rng(1).integers(0, 256, size=n)]


def _prefill_and_decode(path: Path, n_threads: int, n_steps: int = 3, **kw) -> np.ndarray:
    model = bitnet.load(path, n_threads=n_threads, n_ctx=SHAPE["n_ctx"], **kw)
    session = model.new_session()
    logits, _ = session.prefill(_prompt())
    rows = [logits]
    for _ in range(n_steps):
        logits = session.step(int(np.argmax(logits)))
        rows.append(logits)
    return np.stack(rows)


def test_long_context_logits_are_bit_identical_for_1_2_and_3_threads(long_model):
    one = _prefill_and_decode(long_model, 1)
    assert np.isfinite(one).all() and np.std(one) > 0
    for n_threads in (2, 3):     # 3 threads on 2 cores still cuts the spans three ways
        assert np.array_equal(_prefill_and_decode(long_model, n_threads), one), f"{n_threads} threads differ"


@pytest.mark.parametrize("cache_type", ["f16", "q8_0"])
def test_a_long_prompt_at_once_equals_it_token_by_token_at_the_end(long_model, cache_type):
    """The last token as part of the prompt (its spans in one job, a block of tokens) and as a decode step
    (its spans split over the team, folded after) gives the same bits."""
    model = bitnet.load(long_model, n_threads=2, n_ctx=SHAPE["n_ctx"], cache_type=cache_type)
    prompt = _prompt()
    whole, _ = model.new_session().prefill(prompt)
    session = model.new_session()
    session.prefill(prompt[:-1])
    assert np.array_equal(session.step(prompt[-1]), whole)


def test_two_long_sequences_in_one_step_equal_each_alone(long_model):
    """A step whose rows continue two sequences past several spans: the tokens of a block that see a whole span of
    their own cache share one kernel call (a block here holds rows of both sequences, so a call must not take in
    the other one's), and every row's logits are the bits of its sequence computed alone."""
    model = bitnet.load(long_model, n_threads=2, n_ctx=SHAPE["n_ctx"])
    tr = model._transformer
    prompts = [_prompt(600), [int(t) for t in np.random.default_rng(2).integers(0, 256, size=700)]]
    alone = [model.logits(p) for p in prompts]
    contexts = [Context(tr, SHAPE["n_ctx"]) for _ in prompts]
    starts, counts = [580, 660], [13, 27]          # blocks of 10 rows: the second holds rows of both
    for ctx, prompt, start in zip(contexts, prompts, starts):
        out = np.empty((1, model.n_vocab), dtype=np.float32)
        tr.forward_batch([ctx], prompt[:start], list(range(start)), [0] * start, [start - 1], out)
    tokens, positions, owners = [], [], []
    for i, (prompt, start, count) in enumerate(zip(prompts, starts, counts)):
        tokens += prompt[start:start + count]
        positions += list(range(start, start + count))
        owners += [i] * count
    out = np.empty((len(tokens), model.n_vocab), dtype=np.float32)
    tr.forward_batch(contexts, tokens, positions, owners, list(range(len(tokens))), out)
    for row, owner, pos in zip(out, owners, positions):
        np.testing.assert_array_equal(row, alone[owner][pos], err_msg=f"sequence {owner} position {pos}")
    model.close()


def test_a_decode_step_of_rows_at_different_depths_equals_each_alone(long_model):
    """Three sequences decoded in one step (split rows: each row's spans are jobs of the whole team, handed out
    one ahead so a thread fetches its next span while finishing one): rows of 1, 3 and 5 spans make jobs past a
    short row's end, which are skipped and never fetched ahead; every row's logits are those of its sequence alone."""
    model = bitnet.load(long_model, n_threads=2, n_ctx=SHAPE["n_ctx"])
    tr = model._transformer
    rng = np.random.default_rng(3)
    prompts = [[int(t) for t in rng.integers(0, 256, size=n)] for n in (200, 700, 1100)]
    alone = [model.logits(p)[-1] for p in prompts]
    contexts = [Context(tr, SHAPE["n_ctx"]) for _ in prompts]
    for ctx, prompt in zip(contexts, prompts):
        out = np.empty((1, model.n_vocab), dtype=np.float32)
        tr.forward_batch([ctx], prompt[:-1], list(range(len(prompt) - 1)), [0] * (len(prompt) - 1),
                         [len(prompt) - 2], out)
    out = np.empty((len(prompts), model.n_vocab), dtype=np.float32)
    tr.forward_batch(contexts, [p[-1] for p in prompts], [len(p) - 1 for p in prompts], [0, 1, 2], [0, 1, 2], out)
    for i, row in enumerate(out):
        np.testing.assert_array_equal(row, alone[i], err_msg=f"sequence {i}")
    model.close()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_q8_0_cache_logits_are_close_to_the_f16_caches_over_many_spans(long_model):
    """Random ternary weights with unit norms pass the cache's rounding on through two layers nearly unchanged
    (0.9988 measured here); the trained embedded model is held to 0.999 below."""
    f16 = _prefill_and_decode(long_model, 2)
    q8 = _prefill_and_decode(long_model, 2, cache_type="q8_0")
    assert not np.array_equal(q8, f16)              # the 8-bit cache really ran
    assert min(_cosine(a, b) for a, b in zip(q8, f16)) > 0.995


def test_q8_0_cache_on_the_embedded_model():
    exact, q8 = bitnet.load(), bitnet.load(cache_type="q8_0")
    assert q8.cache_type == "q8_0" and exact.cache_type == "f16"
    text = (PROJECT_ROOT / "bitnet" / "data" / "heldout.txt").read_text()[:2000]
    ids = exact.tokenize(text)[:exact.n_ctx]
    a, b = exact.logits(ids), q8.logits(ids)
    assert not np.array_equal(a, b)
    assert min(_cosine(x, y) for x, y in zip(a, b)) > 0.999
    # Q8_0 rows: head_dim / 32 blocks of 34 bytes instead of head_dim f16s
    hd = exact.hparams.head_dim
    assert q8.new_session().context.nbytes * 2 * hd == exact.new_session().context.nbytes * hd // 32 * 34


def test_cache_type_is_checked():
    with pytest.raises(ValueError, match="cache_type must be one of f16, q8_0, got 'q4_0'"):
        bitnet.load(cache_type="q4_0")
    with GGUFReader(bitnet.default_model_path()) as reader, \
            pytest.raises(ValueError, match="cache_type 'q8_0' is CPU-only"):
        build(reader, "cuda", cache_type="q8_0")


def test_cache_type_cli_flag():
    out = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "Once upon a time", "-n", "8",
                          "--temperature", "0", "--cache-type", "q8_0", "-q"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip()
    bad = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "x", "--cache-type", "q4_0"],
                         capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--cache-type" in bad.stderr and "q4_0" in bad.stderr
