"""Model files whose structure is valid but whose contents lie: non-finite values, a vocabulary smaller than the
head, an absurd context length. Each gets a clear error or a defined behaviour, never garbage text."""
from __future__ import annotations

import numpy as np
import pytest
from gguf_edit import rewrite_gguf

import bitnet
from bitnet.errors import ContextOverflowError, ModelError
from bitnet.gguf import GGMLType, GGUFReader, GGUFValueType, quants

EMBEDDED = bitnet.default_model_path()
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def source():
    with GGUFReader(EMBEDDED) as r:
        yield {"md": dict(r.metadata), "arch": r.metadata["general.architecture"],
               "tensors": {n: (i.shape, int(i.ggml_type), bytes(r.tensor_bytes(n))) for n, i in r.tensors.items()}}


def _with_tensor(source, tmp_path, name, edit):
    """A copy of the embedded model with tensor `name`'s raw bytes changed by edit(bytearray)."""
    shape, gtype, data = source["tensors"][name]
    raw = bytearray(data)
    edit(raw, gtype)
    return rewrite_gguf(EMBEDDED, tmp_path / "lying.gguf", retype={name: (shape, gtype, bytes(raw))})


def _set_f16(raw, index, value):
    raw[2 * index:2 * index + 2] = np.float16(value).tobytes()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_norm_weights_fail_at_load_naming_the_tensor(source, tmp_path, value):
    def edit(raw, gtype):
        raw[4 * 7:4 * 8] = np.float32(value).tobytes()
    path = _with_tensor(source, tmp_path, "blk.0.attn_norm.weight", edit)
    with pytest.raises(ModelError, match=r"'blk\.0\.attn_norm\.weight' holds 1 non-finite value.*index 7"):
        bitnet.load(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_embedding_row_of_a_prompt_token_fails_the_forward_pass(source, tmp_path, value):
    model = bitnet.load(EMBEDDED)
    token = model.tokenize(PROMPT, add_bos=False)[1]
    n_embd = source["tensors"]["token_embd.weight"][0][1]

    def edit(raw, gtype):
        assert gtype == GGMLType.F16
        _set_f16(raw, token * n_embd + 3, value)
    lying = bitnet.load(_with_tensor(source, tmp_path, "token_embd.weight", edit))
    with pytest.raises(ModelError, match="non-finite logit.*weights hold NaN/Inf"):
        lying.generate(PROMPT, max_tokens=4, temperature=0)
    with pytest.raises(ModelError, match="non-finite logit"):
        lying.logits(lying.tokenize(PROMPT))
    # an untouched prompt that never reads that row still fails: the tied head scores the row's token
    with pytest.raises(ModelError):
        lying.generate("xyzzy", max_tokens=2, temperature=0)


def test_the_cpu_backends_greedy_step_checks_its_logits(source, tmp_path):
    """Transformer.greedy (the engine's greedy decode path) returns the logits' first arg-max, and fails on a
    non-finite logit instead of choosing around it."""
    model = bitnet.load(EMBEDDED)
    tr = model._transformer
    for token in (3, 200, 1000):
        assert tr.greedy(tr.new_context(4), token, 0) == int(np.argmax(model.logits([token])[0]))
    n_embd = source["tensors"]["token_embd.weight"][0][1]

    def edit(raw, gtype):
        _set_f16(raw, 7 * n_embd, np.nan)     # the tied head: token 7's logit is NaN whatever the input
    lying = bitnet.load(_with_tensor(source, tmp_path, "token_embd.weight", edit))
    with pytest.raises(ModelError, match="non-finite logit at position 2: the model file's weights hold NaN/Inf"):
        lying._transformer.greedy(lying._transformer.new_context(4), 3, 2)


def test_non_finite_i2s_scale_fails_at_load(source, tmp_path):
    name = "blk.1.ffn_down.weight"

    def edit(raw, gtype):
        assert gtype == GGMLType.I2_S
        shape = source["tensors"][name][0]
        offset = shape[0] * shape[1] // 4
        raw[offset:offset + 4] = np.float32(np.nan).tobytes()
    with pytest.raises(ModelError, match=f"'{name}' has a non-finite I2_S scale"):
        bitnet.load(_with_tensor(source, tmp_path, name, edit))


def test_infinite_tq2_0_block_scale_fails_the_forward_pass(source, tmp_path):
    """TQ2_0 keeps an f16 scale per 256 weights, too many to check at load for a large model; an infinite one
    turns the matrix's output into inf/NaN, which the residual stream carries to the logits."""
    name = "blk.0.ffn_down.weight"
    shape, gtype, data = source["tensors"][name]
    w = quants.dequantize(data, gtype, shape)
    raw = bytearray(quants.quantize(w, GGMLType.TQ2_0).tobytes())
    raw[64:66] = np.float16(np.inf).tobytes()     # the first block's d (block = 64 bytes of codes + f16 d)
    path = rewrite_gguf(EMBEDDED, tmp_path / "tq2.gguf", retype={name: (shape, GGMLType.TQ2_0, bytes(raw))})
    with pytest.raises(ModelError, match="non-finite logit"):
        bitnet.load(path).generate(PROMPT, max_tokens=2, temperature=0)


def test_a_vocabulary_smaller_than_the_head_is_refused_at_load(source, tmp_path):
    md, arch = source["md"], source["arch"]
    n = 1000
    tokens = md["tokenizer.ggml.tokens"][:n]
    known = set(tokens)
    merges = [m for m in md["tokenizer.ggml.merges"]
              if all(p in known for p in m.split(" ")) and m.replace(" ", "") in known]
    base = {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.scores": md["tokenizer.ggml.scores"][:n],
            "tokenizer.ggml.token_type": md["tokenizer.ggml.token_type"][:n],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    path = rewrite_gguf(EMBEDDED, tmp_path / "short.gguf", set_keys=base)
    with pytest.raises(ModelError, match="tokenizer has 1000 tokens but the model's head scores 4096"):
        bitnet.load(path)
    # the vocab_size key disagreeing with the head is caught before the tokenizer is built
    path = rewrite_gguf(EMBEDDED, tmp_path / "key.gguf", set_keys={f"{arch}.vocab_size": n})
    with pytest.raises(ModelError, match="vocabulary size 1000 disagrees with 'token_embd.weight' rows"):
        bitnet.load(path)


def test_a_context_length_of_2_to_the_40_loads_with_the_default_context(source, tmp_path):
    key = f"{source['arch']}.context_length"
    path = rewrite_gguf(EMBEDDED, tmp_path / "ctx.gguf", set_keys={key: 2**40},
                        set_types={key: GGUFValueType.UINT64})
    with GGUFReader(path) as r:
        assert r.metadata[key] == 2**40
    model = bitnet.load(path)
    assert model.hparams.n_ctx_train == 2**40
    assert model.n_ctx == bitnet.engine.MAX_DEFAULT_CTX
    expected = bitnet.load(EMBEDDED).generate(PROMPT, max_tokens=12, temperature=0).text
    assert model.generate(PROMPT, max_tokens=12, temperature=0).text == expected
    # asking for all of it names the memory it would take instead of trying to allocate it
    with pytest.raises(ContextOverflowError, match=r"context of 1099511627776 tokens needs a .* GiB KV cache"):
        bitnet.load(path, n_ctx=2**40)
