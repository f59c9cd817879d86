"""The opt-in int8 LM head (`lm_head="q8_0"`): the load-time Q8_0 re-encoding is ggml's quantizer bit for bit,
the Q8 x Q8 kernels of every variant give the same bits (for any number of tokens), and the model stays close
to the exact head: the same greedy tokens as the reference engine on tinyA, perplexity within a fraction of a
percent on the embedded model's held-out text."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import PROJECT_ROOT, testdata_path

import bitnet
import bitnet.backends.cpu.kernels.testing as bk
from bitnet.gguf import GGMLType, quants

VARIANTS = [v for v in bk.supported_variants()]


@pytest.mark.parametrize("gtype", [GGMLType.F16, GGMLType.BF16, GGMLType.F32, GGMLType.Q8_0])
def test_encode_q80_is_ggmls_quantizer(gtype):
    rng = np.random.default_rng(int(gtype))
    K, M = 320, 41
    w = (rng.standard_normal((M, K)) * 0.07).astype(np.float32)
    w[3, :32] = 0.0                    # an all-zero block: d = 0, codes 0
    w[5, 40] = 3.0                     # an outlier dominating its block
    raw = quants.quantize(w, gtype)
    floats = quants.dequantize(raw, gtype, (M, K))
    expected = quants.quantize(floats, GGMLType.Q8_0)
    np.testing.assert_array_equal(bk.encode_q80(raw, int(gtype), K, M, n_threads=2), expected)


@pytest.mark.parametrize("K", [32, 96, 256, 288, 2560])
def test_q8_matmul_same_bits_in_every_variant_and_batch(K):
    rng = np.random.default_rng(K)
    M = 37
    w = bk.encode_q80(quants.quantize((rng.standard_normal((M, K)) * 0.05).astype(np.float32), GGMLType.F32),
                      bk.GGML_F32, K, M)
    x = rng.standard_normal((9, K)).astype(np.float32)
    x[2] = 0.0                          # a token whose blocks all have d = 0
    ref = bk.q8_matmul(w, K, M, x, variant="scalar")
    for v in VARIANTS:
        got = bk.q8_matmul(w, K, M, x, variant=v, n_threads=2)
        np.testing.assert_array_equal(got, ref, err_msg=v)
        one = np.stack([bk.q8_matmul(w, K, M, x[t], variant=v) for t in range(len(x))])
        np.testing.assert_array_equal(one, ref, err_msg=f"{v}: one token at a time")
    exact = x @ quants.dequantize(w, GGMLType.Q8_0, (M, K)).T
    assert np.abs(ref - exact).max() <= 0.02 * np.abs(exact).max()


def test_q8_activations_match_the_q8_0_quantizer():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 128)) * 2).astype(np.float32)
    q, d = bk.quantize_q8(x)
    blocks = quants.quantize(x, GGMLType.Q8_0).reshape(-1, 34)
    np.testing.assert_array_equal(q.reshape(-1, 32), blocks[:, 2:].view(np.int8))
    np.testing.assert_array_equal(d.reshape(-1).astype(np.float16), blocks[:, :2].copy().view(np.float16)[:, 0])


def test_greedy_tokens_of_the_reference_with_the_int8_head():
    ref = json.loads(testdata_path("tinyA", "reference.json").read_text())
    model = bitnet.load(testdata_path("tinyA", "tinyA-i2s.gguf"), lm_head="q8_0")
    assert model.lm_head == "q8_0" and model._transformer.head_int8
    out = model.generate(ref["prompt_tokens"], max_tokens=24, temperature=0)
    assert out.tokens == ref["step_greedy_24"]      # 24 of 24, as benchmarks/README.md states


def test_embedded_model_perplexity_changes_little():
    text = (PROJECT_ROOT / "bitnet" / "data" / "heldout.txt").read_text()
    exact = bitnet.load().perplexity(text, n_ctx=128).value
    int8 = bitnet.load(lm_head="q8_0").perplexity(text, n_ctx=128).value
    assert abs(int8 - exact) / exact < 1e-4, (exact, int8)    # benchmarks/README.md: +0.005%


def test_batched_decode_is_bit_equal_with_the_int8_head():
    model = bitnet.load(lm_head="q8_0", n_ctx=96)
    prompts = ["Once upon a time", "The dog", "She said that"]
    alone = [model.generate(p, max_tokens=20, temperature=0) for p in prompts]
    batch = model.generate_batch(prompts, max_tokens=20, temperature=0)
    assert [b.tokens for b in batch] == [a.tokens for a in alone]
    ids = model.tokenize("The cat sat on the mat")
    full = model.logits(ids)
    session = model.new_session()
    rows = [session.prefill(ids[:1])[0]] + [session.step(t) for t in ids[1:]]
    np.testing.assert_array_equal(np.stack(rows), full)


def test_bad_lm_head_and_cli_flag(tmp_path):
    with pytest.raises(ValueError, match="lm_head must be one of"):
        bitnet.load(lm_head="int4")
    out = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "Once upon a time", "-n", "12",
                          "--temperature", "0", "--lm-head", "q8_0", "-q"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip()
    bad = subprocess.run([sys.executable, "-m", "bitnet", "run", "-p", "x", "--lm-head", "q4"],
                         capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert bad.returncode == 2 and "--lm-head" in bad.stderr
