"""The three architectures against transformers, ternary formats against each other, and metadata validation.

Random checkpoints are made by tests/helpers/hf_fixtures.py and converted by the project's converter; transformers runs
them in float32 with its BitNet quantizer (online absmean ternary weights, per-token int8 activations), an
implementation independent of ours.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import testdata_path
from gguf_edit import rewrite_gguf as _rewrite
from hf_fixtures import make_random_bitnet_checkpoint

import bitnet
from bitnet.convert import convert
from bitnet.gguf import GGMLType, GGUFReader

N_POSITIONS = 29


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _tokens(vocab: int, seed: int = 1) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, N_POSITIONS)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ("bitnet-b1.58", "bitnet", "llama"):
        hf = make_random_bitnet_checkpoint(root / f"hf-{arch}", arch=arch, dtype="f32", seed=3)
        gguf = convert(hf, root / f"{arch}-i2s.gguf", weight_type="i2_s", embedding_type="f32", progress=False)
        out[arch] = (hf, gguf)
    return out


def _transformers_dir(arch: str, hf_dir, tmp_path):
    """A directory transformers can load for `arch`. 1bitLLM's `bitnet` graph is BitNetForCausalLM with a SiLU FFN
    and an untied head, so its tensors are renamed into that model's names."""
    if arch != "bitnet":
        return hf_dir
    from safetensors.numpy import load_file, save_file

    tensors = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        for name, value in load_file(f).items():
            name = name.replace("self_attn.inner_attn_ln", "self_attn.attn_sub_norm")
            tensors[name.replace("mlp.ffn_layernorm", "mlp.ffn_sub_norm")] = value
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(architectures=["BitNetForCausalLM"], model_type="bitnet", hidden_act="silu",
                  quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                       "quantization_mode": "online"})
    out = tmp_path / "hf-as-bitnet"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(out / "model.safetensors"))
    return out


@pytest.mark.parametrize("arch", ["bitnet-b1.58", "bitnet", "llama"])
def test_architecture_matches_transformers(arch, checkpoints, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_dir, gguf = checkpoints[arch]
    model = bitnet.load(gguf, n_ctx=64)
    assert model.arch == arch
    tokens = _tokens(model.n_vocab)
    ours = model.logits(tokens)
    hf = transformers.AutoModelForCausalLM.from_pretrained(_transformers_dir(arch, hf_dir, tmp_path),
                                                           torch_dtype=torch.float32)
    hf.eval()
    with torch.no_grad():
        theirs = hf(torch.tensor([tokens])).logits[0].numpy()
    cos = _cos(ours, theirs)
    agree = int((ours.argmax(1) == theirs.argmax(1)).sum())
    assert cos.min() >= 0.998, f"{arch}: min cosine {cos.min():.5f}"
    assert agree >= 25, f"{arch}: arg-max agrees at {agree} of {N_POSITIONS}"


def test_tq2_and_tq1_give_the_logits_of_i2s(checkpoints, tmp_path):
    hf_dir, i2s = checkpoints["bitnet-b1.58"]
    tokens = _tokens(bitnet.load(i2s, n_ctx=64).n_vocab)
    reference = bitnet.load(i2s, n_ctx=64).logits(tokens)
    for kind in ("tq2_0", "tq1_0"):
        path = convert(hf_dir, tmp_path / f"{kind}.gguf", weight_type=kind, embedding_type="f32", progress=False)
        model = bitnet.load(path, n_ctx=64)
        assert kind.upper() in model.tensor_types
        cos = _cos(model.logits(tokens), reference)
        assert cos.min() >= 0.999, f"{kind}: min cosine {cos.min():.5f}"


@pytest.mark.parametrize("embedding_type", ["f16", "bf16", "q8_0"])
def test_embedding_types_agree_with_f32(embedding_type, checkpoints, tmp_path):
    hf_dir, f32 = checkpoints["bitnet-b1.58"]
    reference = bitnet.load(f32, n_ctx=64)
    tokens = _tokens(reference.n_vocab)
    path = convert(hf_dir, tmp_path / "e.gguf", embedding_type=embedding_type, progress=False)
    cos = _cos(bitnet.load(path, n_ctx=64).logits(tokens), reference.logits(tokens))
    assert cos.min() >= 0.995, f"{embedding_type}: min cosine {cos.min():.5f}"


# ------------------------------------------------------------------------------------- metadata validation

@pytest.fixture
def tinya():
    return testdata_path("tinyA", "tinyA-i2s.gguf")


@pytest.mark.parametrize("change, message", [
    (dict(set_keys={"bitnet-25.rope.dimension_count": 32}), "rope.dimension_count"),
    (dict(drop_keys=("bitnet-25.embedding_length",)), "bitnet-25.embedding_length"),
    (dict(drop_keys=("bitnet-25.attention.layer_norm_rms_epsilon",)), "layer_norm_rms_epsilon"),
    (dict(set_keys={"bitnet-25.attention.head_count": 3}), "head_count"),
    (dict(set_keys={"bitnet-25.attention.head_count_kv": 0}), "head_count_kv"),
    (dict(set_keys={"bitnet-25.block_count": 3}), "blk.2"),
    (dict(set_keys={"bitnet-25.vocab_size": 1000}), "vocabulary size"),
    (dict(set_keys={"general.architecture": "gpt-neox"}), "unsupported architecture 'gpt-neox'"),
    (dict(drop_tensors=("blk.1.ffn_sub_norm.weight",)), "blk.1.ffn_sub_norm.weight"),
    (dict(drop_tensors=("output_norm.weight",)), "output_norm.weight"),
    (dict(set_keys={"bitnet-25.feed_forward_length": 256}), "ffn_gate.weight"),
])
def test_inconsistent_metadata_is_a_model_error_naming_it(tinya, tmp_path, change, message):
    bad = _rewrite(tinya, tmp_path / "bad.gguf", **change)
    with pytest.raises(bitnet.ModelError, match=re.escape(message)):
        bitnet.load(bad, n_ctx=32)


def test_tensor_type_not_allowed_in_position_is_a_model_error(tinya, tmp_path):
    with GGUFReader(tinya) as r:
        info = r.tensors["output_norm.weight"]
        half = np.frombuffer(bytes(r.tensor_bytes("output_norm.weight")), dtype=np.float32).astype(np.float16)
    bad = _rewrite(tinya, tmp_path / "bad.gguf",
                   retype={"output_norm.weight": (info.shape, GGMLType.F16, half.view(np.uint8))})
    with pytest.raises(bitnet.ModelError, match="output_norm.weight.*must be F32"):
        bitnet.load(bad, n_ctx=32)
