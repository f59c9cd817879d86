"""The model shipped inside the package: present, small, loads with no argument, computes what its training
script measured, and writes English in its corpus' style."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import bitnet

DATA = bitnet.default_model_path().parent


@pytest.fixture(scope="module")
def model():
    return bitnet.load(n_ctx=256)


def test_embedded_model_is_shipped_and_small():
    path = bitnet.default_model_path()
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= 8 * 2**20


def test_load_without_a_path_uses_the_embedded_model(model):
    assert model.path == bitnet.default_model_path()
    assert model.arch == "bitnet-b1.58"
    assert model.chat_template is None                 # a base model: `bitnet run` uses the raw prompt
    assert set(model.tensor_types) == {"I2_S", "F16", "F32"}
    assert model.metadata["tokenizer.ggml.pre"] == "llama-bpe"


def test_heldout_perplexity_equals_the_training_scripts_evaluation(model):
    recorded = json.loads((DATA / "bitnet-tiny.eval.json").read_text())["heldout_perplexity"]
    text = (DATA / "heldout.txt").read_text(encoding="utf-8")
    ours = model.perplexity(text, n_ctx=recorded["n_ctx"])
    assert ours.n_chunks == recorded["chunks"] and ours.n_scored == recorded["scored_tokens"]
    # the training script's float forward and the engine's int8 activations: 140.516 vs 140.505 (README)
    assert ours.value == pytest.approx(recorded["ppl"], rel=2e-4)


def test_generated_text_is_english_in_the_corpus_style(model):
    """Most generated words are real words of the corpus (held-out vocabulary), far above what a model with
    scrambled weights would give."""
    vocabulary = set(re.findall(r"[a-z]+", (DATA / "heldout.txt").read_text(encoding="utf-8").lower()))
    words = []
    for seed in range(6):
        words += re.findall(r"[a-z]+", model.generate("The", max_tokens=60, temperature=0.7, seed=seed).text.lower())
    known = sum(w in vocabulary for w in words) / len(words)
    assert len(words) > 100
    assert known >= 0.5, f"only {known:.0%} of generated words are corpus words"


def test_bitnet_run_works_offline_with_no_model_argument(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "BITNET_CACHE_DIR": os.environ["BITNET_CACHE_DIR"]}
    out = subprocess.run([sys.executable, "-m", "bitnet", "run", "--prompt", "The meaning of life is", "-n", "24",
                          "--seed", "1", "-q"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(re.findall(r"[A-Za-z]+", out.stdout)) >= 5
