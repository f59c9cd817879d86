"""The Python API of the engine: generation, streaming, stops, sessions and KV cache reuse, logits, errors."""
from __future__ import annotations

import numpy as np
import pytest

import bitnet


@pytest.fixture(scope="module")
def model(small_model_path):
    return bitnet.load(small_model_path, n_threads=2, n_ctx=128)


def test_generate_returns_a_completion_with_timings(model):
    out = model.generate("The quick brown fox", max_tokens=12, seed=7)
    assert isinstance(out, bitnet.Completion)
    assert out.finish_reason in ("stop", "length")
    assert out.prompt_tokens == len(model.tokenize("The quick brown fox"))
    assert 0 < len(out.tokens) <= 12
    assert out.text == model.detokenize(out.tokens) or out.finish_reason == "stop"
    assert out.timings.prefill_tokens_per_s > 0 and out.timings.load_s is not None


def test_same_seed_gives_same_tokens_and_different_seeds_differ(model):
    a = model.generate("Once upon a time", max_tokens=16, seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0)
    b = model.generate("Once upon a time", max_tokens=16, seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0)
    c = model.generate("Once upon a time", max_tokens=16, seed=2, temperature=1.0, top_k=0, top_p=1.0, min_p=0)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_greedy_is_deterministic_and_equals_argmax_of_logits(model):
    prompt = model.tokenize("In the beginning")
    out = model.generate(prompt, max_tokens=4, temperature=0)
    seq = list(prompt)
    for token in out.tokens:
        assert token == int(np.argmax(model.logits(seq)[-1]))
        seq.append(token)


def test_stream_yields_the_same_text_as_generate(model):
    pieces = list(model.stream("Hello there", max_tokens=20, seed=3))
    whole = model.generate("Hello there", max_tokens=20, seed=3)
    assert "".join(pieces) == whole.text
    stream = model.stream("Hello there", max_tokens=20, seed=3)
    text = "".join(stream)
    assert stream.tokens == whole.tokens and stream.finish_reason == whole.finish_reason and text == whole.text


def test_stop_sequence_cuts_the_text_and_reports_stop(model):
    free = model.generate("The", max_tokens=24, temperature=0)
    assert len(free.text) > 4
    stop = free.text[2:4]
    cut = model.generate("The", max_tokens=24, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[:free.text.find(stop)]
    assert stop not in "".join(model.stream("The", max_tokens=24, temperature=0, stop=stop))


def test_max_tokens_zero_generates_nothing(model):
    out = model.generate("The", max_tokens=0)
    assert out.tokens == [] and out.text == "" and out.finish_reason == "length"


def test_prompt_longer_than_context_is_a_clear_error(model):
    with pytest.raises(bitnet.ContextOverflowError, match="does not fit in the context of 128"):
        model.generate(list(range(1, 200)), max_tokens=1)


def test_generation_is_capped_by_the_context(model):
    out = model.generate(list(range(1, 121)), max_tokens=50, temperature=0)
    assert len(out.tokens) <= 128 - 120


def test_token_ids_outside_the_vocabulary_are_rejected(model):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate([model.n_vocab + 5], max_tokens=1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.logits([-1])


def test_invalid_sampling_settings_are_rejected(model):
    with pytest.raises(ValueError):
        model.generate("x", max_tokens=-1)
    with pytest.raises(ValueError):
        model.generate("x", max_tokens=2, top_p=1.5)


def test_logits_do_not_disturb_generation_state(model):
    session = model.new_session()
    first = model.generate("A B C", max_tokens=8, temperature=0, session=session)
    model.logits(model.tokenize("completely different text"))
    again = model.generate("A B C", max_tokens=8, temperature=0, session=session)
    assert first.tokens == again.tokens


def test_session_reuses_the_cached_prefix(model):
    session = model.new_session()
    ids = model.tokenize("The licensee may copy and distribute verbatim copies")
    _, evaluated = session.prefill(ids)
    assert evaluated == len(ids)
    logits_cached, evaluated = session.prefill(ids + [ids[1]])
    assert evaluated == 1
    fresh = model.logits(ids + [ids[1]])[-1]
    assert np.array_equal(logits_cached, fresh)


def test_sessions_are_independent(model):
    a, b = model.new_session(), model.new_session()
    out_a = model.generate("one two", max_tokens=6, temperature=0, session=a)
    model.generate("something else entirely", max_tokens=6, temperature=0, session=b)
    assert model.generate("one two", max_tokens=6, temperature=0, session=a).tokens == out_a.tokens


def test_closing_a_stream_releases_the_session(model):
    session = model.new_session()
    stream = model.stream("The", max_tokens=50, temperature=0, session=session)
    next(stream)
    stream.close()
    assert not session.lock.locked()
    assert model.generate("The", max_tokens=2, session=session).tokens


def test_chat_uses_a_template_and_generates(model):
    out = model.chat([{"role": "user", "content": "Hi"}], max_tokens=8, seed=1)
    assert out.prompt_tokens > len(model.tokenize("Hi"))
    assert isinstance(out.text, str)


def test_perplexity_matches_a_direct_computation(model):
    text = "The licensee may copy and distribute verbatim copies of this program. " * 8
    result = model.perplexity(text, n_ctx=32)
    ids = model.tokenize(text)
    nll, count = 0.0, 0
    for c in range(len(ids) // 32):
        chunk = ids[c * 32:(c + 1) * 32]
        chunk[0] = model.tokenizer.bos_id
        logits = model.logits(chunk).astype(np.float64)
        for j in range(16, 31):
            row = logits[j]
            nll += np.log(np.exp(row - row.max()).sum()) + row.max() - row[ids[c * 32 + j + 1]]
            count += 1
    assert result.n_scored == count
    assert result.value == pytest.approx(np.exp(nll / count), rel=1e-9)
    assert result.error > 0


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        bitnet.load(tmp_path / "nope.gguf")
    (tmp_path / "text.gguf").write_text("this is not a gguf file at all, just some words")
    with pytest.raises(bitnet.GGUFError):
        bitnet.load(tmp_path / "text.gguf")


def test_the_described_python_snippet_prints_generated_text(capsys):
    """`model = bitnet.BitNetModel("model.gguf"); response = model.generate("Hello, world!"); print(response)`."""
    model = bitnet.BitNetModel(str(bitnet.default_model_path()))
    response = model.generate("Hello, world!", max_tokens=16, seed=1)
    print(response)
    assert bitnet.BitNetModel is bitnet.Model and isinstance(model, bitnet.Model)
    assert capsys.readouterr().out == response.text + "\n" and response.text.strip()
