"""Independent float reference: Hugging Face transformers' BitNetForCausalLM (online ternary quantization, float32)
against the engine. Skips where torch/transformers are absent; .ci/run installs them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import testdata_path

import bitnet

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _compare(ours: np.ndarray, theirs: np.ndarray, min_cos: float = 0.998, min_agree: int = 25) -> None:
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    agree = int((ours.argmax(1) == theirs.argmax(1)).sum())
    assert cos.min() >= min_cos, f"min cosine {cos.min():.5f} at position {cos.argmin()}"
    assert agree >= min_agree * len(ours) / 29, f"arg-max agrees at {agree} of {len(ours)} positions"


def hf_logits(hf_dir, token_ids) -> np.ndarray:
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([token_ids])).logits[0].numpy().astype(np.float64)


def test_tinya_matches_transformers_bitnet():
    ref = json.loads(testdata_path("tinyA", "reference.json").read_text())
    theirs = hf_logits(testdata_path("tinyA", "hf"), ref["prompt_tokens"])
    model = bitnet.load(testdata_path("tinyA", "tinyA-i2s.gguf"), n_ctx=64)
    _compare(model.logits(ref["prompt_tokens"]).astype(np.float64), theirs)
