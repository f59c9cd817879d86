"""The tiny-model training script (tools/training/train_tiny.py, tools/training/corpus.py) on a toy corpus and a
toy config.

Trains for a handful of steps in a temp dir, then checks that the checkpoint is a transformers-style BitNet
checkpoint, that an independent numpy W1.58A8 forward pass over the saved master weights reproduces the
QAT model's ternary forward, and that the perplexity follows llama.cpp's rules. Skips cleanly without torch.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to train the tiny model")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "training"
sys.path.insert(0, str(TOOLS))
import corpus  # noqa: E402  (tools/ is not a package)
import train_tiny  # noqa: E402

WORDS = ("the cat dog man woman computer program bug law judge sat ran wrote read a an old new "
         "quickly never always because and but if then").split()


def _write_toy_fortunes(root: Path, n_docs: int = 200) -> None:
    """Deterministic fortune files: sentences of toy words, one quote with an overstrike, % separators."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in ("alpha", "beta"):
        docs = []
        for _ in range(n_docs // 2):
            words = rng.choice(WORDS, size=int(rng.integers(6, 20)))
            docs.append(" ".join(words).capitalize() + ".\n\t\t-- " + str(rng.choice(WORDS)).title())
        docs[3] = "It is ___\b\b\bnot my fault."
        (root / name).write_text("\n%\n".join(docs) + "\n%\n", encoding="utf-8")
        (root / f"{name}.dat").write_bytes(b"\x00\x01binary index")


TOY_MODEL = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=32)


def _toy_train(root: Path, out: Path) -> dict:
    mc = train_tiny.ModelConfig(**TOY_MODEL)
    tc = train_tiny.TrainConfig(steps=6, batch_size=4, seq_len=32, lr=3e-3, warmup_steps=2, eval_ctx=16,
                                threads=1, log_every=3)
    docs = corpus.read_documents(root)
    return train_tiny.train(mc, tc, out, documents=docs, n_samples=2, sample_tokens=8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("train_tiny")
    _write_toy_fortunes(base / "fortunes")
    result = _toy_train(base / "fortunes", base / "ckpt")
    return {"base": base, "out": base / "ckpt", "result": result}


# --- corpus ----------------------------------------------------------------------------------------------------

def test_clean_document_resolves_overstrikes_and_trims():
    raw = "\n\nIt is ___\b\b\bnot mine.   \n\t\t-- Me\x07\n\n"
    assert corpus.clean_document(raw) == "It is not mine.\n\t\t-- Me"


def test_fortune_files_skip_indexes_and_split_is_deterministic(tmp_path):
    _write_toy_fortunes(tmp_path / "f")
    assert [p.name for p in corpus.list_fortune_files(tmp_path / "f")] == ["alpha", "beta"]
    docs = corpus.read_documents(tmp_path / "f")
    assert len(docs) == 200 and docs[3].text == "It is not my fault."
    train, heldout = corpus.split_train_heldout(docs)
    assert heldout == [docs[49], docs[99], docs[149], docs[199]]
    assert len(train) == 196 and docs[49] not in train
    assert corpus.join_documents(heldout[:1]) == docs[49].text + "\n%\n"


def test_tokenizer_puts_specials_last_and_adds_bos(tmp_path):
    _write_toy_fortunes(tmp_path / "f")
    tok = corpus.train_tokenizer(corpus.read_documents(tmp_path / "f"), vocab_size=300)
    assert tok.get_vocab_size() == 300
    assert tok.token_to_id(corpus.BOS_TOKEN) == 298 and tok.token_to_id(corpus.EOS_TOKEN) == 299
    ids = tok.encode("The cat sat.\n%\n").ids
    assert ids[0] == 298 and 298 not in ids[1:]
    assert tok.decode(ids, skip_special_tokens=True) == "The cat sat.\n%\n"
    # a byte never seen in training still encodes (byte-level alphabet) and round-trips
    assert tok.decode(tok.encode("ß€").ids, skip_special_tokens=True) == "ß€"


# --- quantizers ------------------------------------------------------------------------------------------------

def test_ternarize_is_absmean_ternary():
    w = torch.tensor([[0.5, -0.2, 0.04], [-1.0, 0.0, 0.3]])
    scale = w.abs().mean().item()  # 0.34
    expected = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 0.0, 1.0]]) * scale
    torch.testing.assert_close(train_tiny.ternarize(w), expected)


def test_activation_quantization_is_per_token_int8():
    x = torch.tensor([[0.1, -2.54, 1.0], [1e-9, 0.0, -1e-9]])
    q = train_tiny.quantize_activations(x)
    s0 = 127 / 2.54
    torch.testing.assert_close(q[0], torch.round(x[0] * s0) / s0)
    assert torch.all(q[1] == 0)  # max|x| below 1e-5 uses the 1e-5 floor, so tiny values round to zero


def test_bitlinear_gradient_is_straight_through():
    lin = train_tiny.BitLinear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    lin(x).sum().backward()
    # STE: d/dx of sum(x_q W_q^T) with identity backward through both quantizers
    torch.testing.assert_close(x.grad, train_tiny.ternarize(lin.weight.detach()).sum(0).expand(2, 4))
    torch.testing.assert_close(lin.weight.grad, train_tiny.quantize_activations(x.detach()).sum(0).expand(3, 4))


# --- perplexity ------------------------------------------------------------------------------------------------

class _UniformModel(torch.nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.calls: list[torch.Tensor] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(ids.clone())
        return torch.zeros(*ids.shape, self.vocab)


class _FakeTok:
    def token_to_id(self, text: str) -> int:
        return 7 if text == corpus.BOS_TOKEN else -1

    def encode(self, text: str, add_special_tokens: bool = True):
        class _Enc:
            ids = [ord(c) % 5 for c in text]
        return _Enc()


def test_perplexity_follows_llama_cpp_chunking():
    model = _UniformModel(vocab=11)
    res = train_tiny.llama_cpp_perplexity(model, _FakeTok(), "abcdefghij" * 5, n_ctx=16, batch_chunks=2)
    # 51 tokens (BOS + 50) -> 3 chunks of 16; each scores positions 8..14 -> 7 tokens
    assert res["chunks"] == 3 and res["scored_tokens"] == 21 and res["text_tokens_with_bos"] == 51
    assert math.isclose(res["ppl"], 11.0, rel_tol=1e-12)
    seen = torch.cat(model.calls)
    assert seen.shape == (3, 16) and torch.all(seen[:, 0] == 7)  # every chunk starts with BOS


def test_perplexity_needs_two_contexts_of_text():
    with pytest.raises(ValueError, match="at least 32 tokens"):
        train_tiny.llama_cpp_perplexity(_UniformModel(11), _FakeTok(), "abc", n_ctx=16)


# --- the trained checkpoint ------------------------------------------------------------------------------------

def _expected_tensor_names(cfg: dict) -> set[str]:
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names |= {p + n + ".weight" for n in (
            "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.o_proj", "self_attn.attn_sub_norm", "mlp.gate_proj", "mlp.up_proj",
            "mlp.down_proj", "mlp.ffn_sub_norm")}
    return names


def test_checkpoint_is_a_transformers_bitnet_checkpoint(toy):
    from safetensors.numpy import load_file

    out = toy["out"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BitNetForCausalLM"] and cfg["model_type"] == "bitnet"
    assert cfg["quantization_config"] == {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                          "quantization_mode": "online"}
    assert cfg["hidden_act"] == "relu2" and cfg["tie_word_embeddings"] is True
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (318, 319)
    tensors = load_file(str(out / "model.safetensors"))
    assert set(tensors) == _expected_tensor_names(cfg)
    assert all(t.dtype == np.float32 for t in tensors.values())
    assert tensors["model.layers.0.self_attn.k_proj.weight"].shape == (32, 64)
    assert tensors["model.layers.1.mlp.down_proj.weight"].shape == (64, 128)
    tcfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tcfg["add_bos_token"] is True and "chat_template" not in tcfg
    assert tcfg["bos_token"] == corpus.BOS_TOKEN and tcfg["eos_token"] == corpus.EOS_TOKEN
    ev = json.loads((out / "eval.json").read_text())
    assert ev["steps"] == 6 and ev["heldout_perplexity"]["n_ctx"] == 16
    assert math.isfinite(ev["heldout_perplexity"]["ppl"]) and len(ev["samples"]) == 2


def _np_rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _np_bitlinear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """W1.58A8 as docs/formats.md §3/§6 state it: ternary codes × per-tensor scale, int8 activations per token."""
    scale = np.float32(max(np.abs(w).mean(), 1e-5))
    codes = np.clip(np.round(w / scale), -1, 1)
    s = np.float32(127) / np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5))
    q = np.clip(np.round(x * s), -128, 127)
    return (q @ codes.T) / s * scale


def _np_forward(t: dict, cfg: dict, ids: list[int]) -> np.ndarray:
    eps, hd = cfg["rms_norm_eps"], cfg["head_dim"]
    nh, nkv, n = cfg["num_attention_heads"], cfg["num_key_value_heads"], len(ids)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)
    ang = np.outer(np.arange(n), inv)
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(v: np.ndarray) -> np.ndarray:  # [n, heads, hd], element i pairs with i + hd/2
        a, b = v[..., : hd // 2], v[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    x = t["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = _np_rmsnorm(x, t[p + "input_layernorm.weight"], eps)
        q = rope(_np_bitlinear(a, t[p + "self_attn.q_proj.weight"]).reshape(n, nh, hd))
        k = rope(_np_bitlinear(a, t[p + "self_attn.k_proj.weight"]).reshape(n, nkv, hd))
        v = _np_bitlinear(a, t[p + "self_attn.v_proj.weight"]).reshape(n, nkv, hd)
        o = np.empty((n, nh, hd))
        for h in range(nh):
            kv = h // (nh // nkv)
            sc = q[:, h] @ k[:, kv].T / math.sqrt(hd) + np.triu(np.full((n, n), -np.inf), 1)
            pr = np.exp(sc - sc.max(-1, keepdims=True))
            o[:, h] = (pr / pr.sum(-1, keepdims=True)) @ v[:, kv]
        o = _np_rmsnorm(o.reshape(n, nh * hd), t[p + "self_attn.attn_sub_norm.weight"], eps)
        x = x + _np_bitlinear(o, t[p + "self_attn.o_proj.weight"])
        f = _np_rmsnorm(x, t[p + "post_attention_layernorm.weight"], eps)
        m = np.maximum(_np_bitlinear(f, t[p + "mlp.gate_proj.weight"]), 0) ** 2
        m = _np_rmsnorm(m * _np_bitlinear(f, t[p + "mlp.up_proj.weight"]), t[p + "mlp.ffn_sub_norm.weight"], eps)
        x = x + _np_bitlinear(m, t[p + "mlp.down_proj.weight"])
    return _np_rmsnorm(x, t["model.norm.weight"], eps) @ t["model.embed_tokens.weight"].T


def test_saved_weights_reproduce_the_qat_forward(toy):
    from safetensors.numpy import load_file

    out = toy["out"]
    model, tok = train_tiny.load_checkpoint(out)
    cfg = json.loads((out / "config.json").read_text())
    ids = tok.encode("The old judge never read the new law.\n%\n").ids
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].numpy()
    saved = load_file(str(out / "model.safetensors"))
    ref = _np_forward(saved, cfg, ids)
    assert _cos(ours, ref).min() > 0.9999
    assert np.array_equal(ours.argmax(-1), ref.argmax(-1))

    # After a few steps the tied embedding dominates the logits and hides the blocks; scaling every ternary
    # weight up (codes unchanged, per-tensor scale × 50) makes the blocks dominate, so a wrong RoPE pairing or
    # a missing activation quantizer would show here.
    loud = {k: v * 50 if k.endswith("proj.weight") else v for k, v in saved.items()}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in loud.items()})
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].numpy()
    ref = _np_forward(loud, cfg, ids)
    assert _cos(ours, ref).min() > 0.9999
    assert np.array_equal(ours.argmax(-1), ref.argmax(-1))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_reloaded_checkpoint_reproduces_the_logged_perplexity(toy):
    model, tok = train_tiny.load_checkpoint(toy["out"])
    _, heldout = corpus.split_train_heldout(corpus.read_documents(toy["base"] / "fortunes"))
    res = train_tiny.llama_cpp_perplexity(model, tok, corpus.join_documents(heldout), n_ctx=16)
    assert math.isclose(res["ppl"], toy["result"]["heldout_perplexity"]["ppl"], rel_tol=1e-9)


def test_training_is_reproducible(toy, tmp_path):
    from safetensors.numpy import load_file

    again = _toy_train(toy["base"] / "fortunes", tmp_path / "again")
    assert again["final_train_loss"] == toy["result"]["final_train_loss"]
    a = load_file(str(toy["out"] / "model.safetensors"))
    b = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (toy["out"] / "tokenizer.json").read_bytes() == (tmp_path / "again" / "tokenizer.json").read_bytes()


def test_transformers_bitnet_loads_the_checkpoint_and_agrees(toy):
    transformers = pytest.importorskip("transformers", reason="transformers gives the independent reference")
    out = toy["out"]
    model, tok = train_tiny.load_checkpoint(out)
    hf = transformers.BitNetForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = "A man wrote a program because the bug ran."
    ids = hf_tok(text).input_ids
    assert ids == tok.encode(text).ids and ids[0] == 318
    with torch.no_grad():
        theirs = hf(torch.tensor([ids])).logits[0]
        ours = model(torch.tensor([ids]))[0]
    assert torch.nn.functional.cosine_similarity(theirs, ours, dim=-1).min() > 0.9999
    assert torch.equal(theirs.argmax(-1), ours.argmax(-1))


def test_reevaluate_reproduces_eval_json(toy, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(toy["out"], ckpt)
    heldout = tmp_path / "heldout.txt"
    _, docs = corpus.split_train_heldout(corpus.read_documents(toy["base"] / "fortunes"))
    heldout.write_text(corpus.join_documents(docs), encoding="utf-8")
    again = train_tiny.reevaluate(ckpt, heldout)
    assert math.isclose(again["heldout_perplexity"]["ppl"], toy["result"]["heldout_perplexity"]["ppl"],
                        rel_tol=1e-9)
    assert again["samples"] == toy["result"]["samples"]
    assert json.loads((ckpt / "eval.json").read_text()) == again


def test_shipped_heldout_slice_is_the_regenerated_one():
    """bitnet/data/heldout.txt is exactly what tools/training/corpus.py extracts from the installed fortunes package."""
    if not corpus.FORTUNE_DIR.is_dir():
        pytest.skip(f"{corpus.FORTUNE_DIR} is absent (apt-get install fortunes)")
    shipped = TOOLS.parents[1] / "bitnet" / "data" / "heldout.txt"
    text = shipped.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 100_000
    _, heldout = corpus.split_train_heldout(corpus.read_documents())
    assert text == corpus.join_documents(heldout)
