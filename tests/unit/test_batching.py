"""Batched decode: a forward step over several sequences gives each row exactly (bit for bit) the logits of
its sequence evaluated alone, whatever else is in the batch; the scheduler and `Model.generate_batch` give the
text of `Model.generate`, prompt by prompt."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from bitnet.backends.cpu._forward import Context
from conftest import PROJECT_ROOT, testdata_path

import bitnet
from bitnet.batching import BatchWorker, Scheduler, make_sequence
from bitnet.generation import SamplingParams
from bitnet.gguf import GGMLType

sys.path.insert(0, str(PROJECT_ROOT / "tools" / "hardening" / "fuzz"))
import seeds  # noqa: E402  (tiny models in every supported tensor type)

N_CTX = 96


@pytest.fixture(scope="module")
def embedded():
    return bitnet.load(n_ctx=N_CTX, n_threads=2)


def _models(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch-models")
    yield "embedded", None
    for ternary, embedding, arch in ((GGMLType.TQ2_0, GGMLType.BF16, "bitnet-b1.58"),
                                     (GGMLType.TQ1_0, GGMLType.Q8_0, "bitnet"),
                                     (GGMLType.I2_S, GGMLType.F32, "llama")):
        name = f"{arch}-{ternary.name}-{embedding.name}"
        yield name, seeds.write_model(root / f"{name}.gguf", arch, ternary, embedding)


def _schedule(lengths, seed):
    """A random step plan: in each step some sequences take a chunk of 1..4 of their next tokens, some sit
    out; every sequence joins at its own step and leaves when its tokens are used up."""
    rng = np.random.default_rng(seed)
    done = [0] * len(lengths)
    join = rng.integers(0, 3, size=len(lengths))
    step = 0
    while any(d < n for d, n in zip(done, lengths)):
        plan = []
        for i, n in enumerate(lengths):
            if done[i] >= n or step < join[i] or rng.random() < 0.3:
                continue
            k = int(min(n - done[i], rng.integers(1, 5)))
            plan.append((i, done[i], k))
            done[i] += k
        if plan:
            yield plan
        step += 1


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
def test_forward_batch_rows_equal_sequences_alone(tmp_path_factory, batch):
    for name, path in _models(tmp_path_factory):
        model = bitnet.load(path, n_ctx=N_CTX, n_threads=2)
        tr = model._transformer
        rng = np.random.default_rng(batch)
        lengths = [int(n) for n in rng.integers(1, 24, size=batch)]
        prompts = [[int(t) for t in rng.integers(0, model.n_vocab, size=n)] for n in lengths]
        alone = [model.logits(p) for p in prompts]
        contexts = [Context(tr, N_CTX) for _ in prompts]
        checked = 0
        for plan in _schedule(lengths, seed=batch):
            tokens, positions, owners, wanted, where = [], [], [], [], []
            batch_contexts = []
            for i, start, k in plan:
                for j in range(k):
                    if j == k - 1 or rng.random() < 0.5:     # logits of some rows, always of a chunk's last
                        wanted.append(len(tokens))
                        where.append((i, start + j))
                    tokens.append(prompts[i][start + j])
                    positions.append(start + j)
                    owners.append(len(batch_contexts))
                batch_contexts.append(contexts[i])
            out = np.empty((len(wanted), model.n_vocab), dtype=np.float32)
            tr.forward_batch(batch_contexts, tokens, positions, owners, wanted, out)
            for row, (i, pos) in zip(out, where):
                np.testing.assert_array_equal(row, alone[i][pos], err_msg=f"{name}: sequence {i} position {pos}")
                checked += 1
        assert checked >= sum(lengths) // 2
        model.close()


def test_forward_batch_refuses_inconsistent_rows(embedded):
    tr = embedded._transformer
    a, b = Context(tr, 8), Context(tr, 8)
    out = np.empty((1, embedded.n_vocab), dtype=np.float32)
    cases = [
        (([a, b], [1, 2, 3], [0, 0, 1], [0, 1, 0], [2]), "not one contiguous run"),
        (([a], [1, 2], [0, 2], [0, 0], [1]), "not consecutive"),
        (([a], [1], [8], [0], [0]), "does not fit in the context of 8"),
        (([a], [1], [0], [1], [0]), "belongs to context 1"),
        (([a], [embedded.n_vocab], [0], [0], [0]), "outside the vocabulary"),
        (([a], [1, 2], [0, 1], [0, 0], [1, 0]), "increasing"),
        (([a], [1], [0], [0, 0], [0]), "owners"),
    ]
    for (contexts, tokens, positions, owners, wanted), message in cases:
        with pytest.raises(ValueError, match=message):
            tr.forward_batch(contexts, tokens, positions, owners, wanted, out)
    with pytest.raises(ValueError, match="wrong shape"):
        tr.forward_batch([a], [1], [0], [0], [0], np.empty((2, embedded.n_vocab), np.float32))
    tiny = bitnet.load(testdata_path("tinyA", "tinyA-i2s.gguf"))
    with pytest.raises(ValueError, match="different model"):
        tr.forward_batch([Context(tiny._transformer, 8)], [1], [0], [0], [0], out)


PROMPTS = ["Once upon a time", "The little dog ran", "Tom and Lily went to the park. They", "She was happy",
           "One day, a bird", "Mom said", "The sun", "A big red ball was"]


@pytest.mark.parametrize("settings", [
    {"temperature": 0.0},
    {"temperature": 0.9, "seed": 11, "top_k": 20, "top_p": 0.9, "repeat_penalty": 1.1},
    {"temperature": 0.7, "seed": 3, "stop": [".", " the"]},
])
def test_generate_batch_equals_generate(embedded, settings):
    alone = [embedded.generate(p, max_tokens=40, **settings) for p in PROMPTS]
    for max_batch in (None, 3):
        batch = embedded.generate_batch(PROMPTS, max_tokens=40, max_batch=max_batch, **settings)
        for a, b in zip(alone, batch):
            assert (b.text, b.tokens, b.finish_reason, b.prompt_tokens) == \
                   (a.text, a.tokens, a.finish_reason, a.prompt_tokens)
            assert b.timings.decode_tokens == a.timings.decode_tokens


def test_generate_batch_checks_every_prompt_first(embedded):
    with pytest.raises(ValueError, match="empty"):
        embedded.generate_batch(["fine", []], max_tokens=4)
    with pytest.raises(bitnet.ContextOverflowError):
        embedded.generate_batch(["fine", list(range(N_CTX))], max_tokens=4)


def test_long_prompt_joins_in_chunks_without_changing_anyone(embedded):
    """A long prompt enters the batch a few tokens per step while two sequences decode; all three texts equal
    their single-sequence generations, and the decoding ones kept getting tokens during the long prefill."""
    long_prompt = " ".join(["The cat sat on the mat and looked at the bird."] * 5)
    params = SamplingParams.make(max_tokens=30, temperature=0)
    sched = Scheduler(embedded, max_batch=3, prefill_chunk=4)
    sessions = [embedded.new_session() for _ in range(3)]
    first = [sched.start(s, embedded.tokenize(p), params) for s, p in zip(sessions, PROMPTS[:2])]
    for _ in range(3):
        sched.step()
    late = sched.start(sessions[2], embedded.tokenize(long_prompt), params)
    before = [len(s.tokens) for s in first]
    while late.prefilling:
        sched.step()
    gained = [len(s.tokens) - n for s, n in zip(first, before)]
    assert all(g >= len(late.prompt_ids) // 4 - 1 for g in gained), gained
    sched.run()
    for seq, prompt in zip(first + [late], PROMPTS[:2] + [long_prompt]):
        assert seq.text == embedded.generate(prompt, max_tokens=30, temperature=0).text


def test_session_cache_prefix_is_reused(embedded):
    params = SamplingParams.make(max_tokens=8, temperature=0)
    sched = Scheduler(embedded, max_batch=1)
    session = embedded.new_session()
    ids = embedded.tokenize("Once upon a time there was")
    sched.start(session, ids, params)
    sched.run()
    again = sched.start(session, ids + embedded.tokenize(" a", add_bos=False), params)
    sched.run()
    assert again.timings.prefill_tokens == 1
    assert again.text == embedded.generate(again.prompt_ids, max_tokens=8, temperature=0).text


def test_worker_cancel_and_callbacks(embedded):
    worker = BatchWorker(embedded, max_batch=4)
    try:
        ended = threading.Event()
        pieces: list[str] = []
        params = SamplingParams.make(max_tokens=N_CTX, temperature=0)
        seq = make_sequence(embedded.new_session(), embedded.tokenize("Once upon a time"), params,
                            on_text=pieces.append, on_end=lambda s: ended.set())
        worker.submit(seq)
        other = make_sequence(embedded.new_session(), embedded.tokenize("The dog"),
                              SamplingParams.make(max_tokens=5, temperature=0), on_end=lambda s: None)
        worker.submit(other)
        while len(seq.tokens) < 3:
            threading.Event().wait(0.001)
        seq.cancel()
        assert ended.wait(10)
        assert seq.done and len(seq.tokens) < N_CTX - 10
        assert "".join(pieces) == seq.text
        # a sequence cancelled before it joined ends without running
        never = make_sequence(embedded.new_session(), [1, 2, 3], params, on_end=lambda s: None)
        never.cancel()
        worker.submit(never)
        while not (never.done and other.done):
            threading.Event().wait(0.001)
        assert never.tokens == [] and other.text == embedded.generate("The dog", max_tokens=5, temperature=0).text
    finally:
        worker.stop()
