"""bitnet.convert: Hugging Face checkpoints -> GGUF, against the reference file and self-made checkpoints."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hf_fixtures import (
    BF16,
    CORPUS,
    SAMPLE_TEXTS,
    USER_TOKEN,
    make_random_bitnet_checkpoint,
    pack_ternary,
    save_safetensors,
)
from tokenizers import Tokenizer as HFTokenizer

from bitnet.convert import ConversionError, add_arguments, convert, run
from bitnet.convert.checkpoint import Checkpoint
from bitnet.gguf import GGMLType, GGUFReader, quants
from bitnet.tokenizer import Tokenizer

HF_LINEARS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def _hf_name(gguf_name: str) -> str:
    _, layer, kind, _ = gguf_name.split(".")
    return f"model.layers.{layer}.{HF_LINEARS[kind]}.weight"


def _i2s_tensors(reader: GGUFReader) -> list[str]:
    return [n for n, t in reader.tensors.items() if t.ggml_type == GGMLType.I2_S]


def _i2s_code_bytes(reader: GGUFReader, name: str) -> np.ndarray:
    return reader.tensor_bytes(name)[: reader.tensors[name].n_elements // 4]


def _i2s_scale(reader: GGUFReader, name: str) -> float:
    return quants.unpack_i2s(reader.tensor_bytes(name), reader.tensors[name].shape)[1]


def _metadata_under(reader: GGUFReader, arch: str) -> dict[str, object]:
    """Metadata with the architecture prefix replaced by '<arch>', so differently named files compare."""
    return {k.replace(f"{arch}.", "<arch>.", 1): v for k, v in reader.metadata.items()}


@pytest.fixture
def tinya_hf(tinya_dir: Path) -> Path:
    return tinya_dir / "hf"


@pytest.fixture
def tinya_ref(tinya_dir: Path) -> GGUFReader:
    return GGUFReader(tinya_dir / "tinyA-i2s.gguf")


# ------------------------------------------------------------------------------ the reference file (tinyA)

def test_tinya_i2s_reproduces_reference_file(tinya_hf: Path, tinya_ref: GGUFReader, tmp_path: Path) -> None:
    out = convert(tinya_hf, tmp_path / "tinyA.gguf", weight_type="i2_s", embedding_type="f16")
    ours = GGUFReader(out)
    assert ours.metadata["general.architecture"] == "bitnet-b1.58"
    assert sorted(ours.tensors) == sorted(tinya_ref.tensors)
    for name, ref in tinya_ref.tensors.items():
        assert (ours.tensors[name].shape, ours.tensors[name].ggml_type) == (ref.shape, ref.ggml_type), name

    differing = total = 0
    for name in _i2s_tensors(tinya_ref):
        ref_scale, our_scale = _i2s_scale(tinya_ref, name), _i2s_scale(ours, name)
        assert abs(our_scale - ref_scale) <= 1e-6 * abs(ref_scale), name
        ref_codes, our_codes = _i2s_code_bytes(tinya_ref, name), _i2s_code_bytes(ours, name)
        differing += int((ref_codes != our_codes).sum())
        total += ref_codes.size
    assert differing <= 0.001 * total
    for name, ref in tinya_ref.tensors.items():
        if ref.ggml_type != GGMLType.I2_S:   # F16 embedding and F32 norms: bit for bit
            assert np.array_equal(ours.tensor_bytes(name), tinya_ref.tensor_bytes(name)), name

    ref_md, our_md = _metadata_under(tinya_ref, "bitnet-25"), _metadata_under(ours, "bitnet-b1.58")
    for key in ("<arch>.vocab_size", "<arch>.context_length", "<arch>.embedding_length", "<arch>.block_count",
                "<arch>.feed_forward_length", "<arch>.rope.dimension_count", "<arch>.attention.head_count",
                "<arch>.attention.head_count_kv", "<arch>.attention.layer_norm_rms_epsilon",
                "<arch>.rope.freq_base", "general.file_type", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type", "tokenizer.ggml.scores", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
        assert our_md[key] == ref_md[key], key
    # tokenizer.json applies GPT-2's byte-level regex, so the file says so (the reference writes no name).
    assert our_md["tokenizer.ggml.pre"] == "gpt-2"


def test_arch_name_option_writes_the_reference_spelling(tinya_hf: Path, tinya_ref: GGUFReader,
                                                        tmp_path: Path) -> None:
    ours = GGUFReader(convert(tinya_hf, tmp_path / "a.gguf", arch_name="bitnet-25"))
    arch_keys = {k for k in tinya_ref.metadata if k.startswith("bitnet-25.")}
    assert ours.metadata["general.architecture"] == "bitnet-25"
    assert arch_keys == {k for k in ours.metadata if k.startswith("bitnet-25.")}
    assert all(ours.metadata[k] == tinya_ref.metadata[k] for k in arch_keys)
    with pytest.raises(ConversionError, match="does not fit"):
        convert(tinya_hf, tmp_path / "b.gguf", arch_name="llama")


def _packed_copy_of_tinya(tinya_hf: Path, tinya_ref: GGUFReader, dst: Path, linear_class: str) -> Path:
    """tinyA as a packed checkpoint: the reference file's codes in HF's uint8 layout + weight_scale."""
    dst.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tinya_hf / name, dst / name)
    config = json.loads((tinya_hf / "config.json").read_text())
    config["quantization_config"].update(linear_class=linear_class, quantization_mode="offline")
    (dst / "config.json").write_text(json.dumps(config))
    ckpt = Checkpoint(tinya_hf)
    tensors: dict[str, np.ndarray | BF16] = {}
    for hf_name in ckpt.tensors:
        tensors[hf_name] = BF16(ckpt.read(hf_name))      # exact: the values came from bf16
    for name in _i2s_tensors(tinya_ref):
        codes, scale = quants.unpack_i2s(tinya_ref.tensor_bytes(name), tinya_ref.tensors[name].shape)
        hf_name = _hf_name(name)
        tensors[hf_name] = pack_ternary(codes)
        stored = scale if linear_class == "autobitlinear" else 1.0 / np.float32(scale)
        tensors[hf_name.replace(".weight", ".weight_scale")] = np.array([stored], dtype=np.float32)
    save_safetensors(dst / "model.safetensors", tensors)
    return dst


def test_packed_checkpoint_converts_to_the_same_codes(tinya_hf: Path, tinya_ref: GGUFReader,
                                                      tmp_path: Path) -> None:
    packed_dir = _packed_copy_of_tinya(tinya_hf, tinya_ref, tmp_path / "packed", "autobitlinear")
    from_packed = GGUFReader(convert(packed_dir, tmp_path / "packed.gguf"))
    from_master = GGUFReader(convert(tinya_hf, tmp_path / "master.gguf"))
    for name in _i2s_tensors(tinya_ref):
        assert np.array_equal(_i2s_code_bytes(from_packed, name), _i2s_code_bytes(tinya_ref, name)), name
        assert np.array_equal(_i2s_code_bytes(from_packed, name), _i2s_code_bytes(from_master, name)), name
        assert _i2s_scale(from_packed, name) == _i2s_scale(tinya_ref, name), name


def test_bitlinear_packed_checkpoint_divides_by_its_scale(tinya_hf: Path, tinya_ref: GGUFReader,
                                                         tmp_path: Path) -> None:
    packed_dir = _packed_copy_of_tinya(tinya_hf, tinya_ref, tmp_path / "packed", "bitlinear")
    ours = GGUFReader(convert(packed_dir, tmp_path / "packed.gguf"))
    for name in _i2s_tensors(tinya_ref):
        assert np.array_equal(_i2s_code_bytes(ours, name), _i2s_code_bytes(tinya_ref, name)), name
        ref_scale = _i2s_scale(tinya_ref, name)
        assert abs(_i2s_scale(ours, name) - ref_scale) <= 1e-6 * ref_scale, name


def test_tinya_tokenizer_metadata_tokenizes_like_tokenizer_json(tinya_dir: Path, tinya_hf: Path,
                                                                 tmp_path: Path) -> None:
    ours = GGUFReader(convert(tinya_hf, tmp_path / "t.gguf"))
    tok = Tokenizer.from_gguf_metadata(ours.metadata)
    hf = HFTokenizer.from_file(str(tinya_hf / "tokenizer.json"))
    cases = json.loads((tinya_dir / "tokenizer_cases.json").read_text())
    for text in [c["text"] for c in cases] + SAMPLE_TEXTS:
        assert tok.encode(text, add_bos=False) == hf.encode(text, add_special_tokens=False).ids, repr(text)


# ------------------------------------------------------------------------------ self-made checkpoints

@pytest.fixture(scope="module")
def random_b158(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_bitnet_checkpoint(tmp_path_factory.mktemp("b158"), hidden=256, ffn=512)


def test_tq_formats_hold_the_same_ternary_weights_as_i2s(random_b158: Path, tmp_path: Path) -> None:
    files = {t: GGUFReader(convert(random_b158, tmp_path / f"{t}.gguf", weight_type=t))
             for t in ("i2_s", "tq2_0", "tq1_0")}
    i2s = files["i2_s"]
    assert {r.metadata["general.file_type"] for r in files.values()} == {40, 37, 36}
    ternary = _i2s_tensors(i2s)
    assert len(ternary) == 14
    for wtype, ggml_type in (("tq2_0", GGMLType.TQ2_0), ("tq1_0", GGMLType.TQ1_0)):
        other = files[wtype]
        assert sorted(other.tensors) == sorted(i2s.tensors)
        for name in ternary:
            assert other.tensors[name].ggml_type == ggml_type
            codes, scale = quants.unpack_i2s(i2s.tensor_bytes(name), i2s.tensors[name].shape)
            deq = other.dequantize(name)
            # every 256-block stores the tensor scale as f16: same codes, scale equal within f16 rounding
            assert np.array_equal(deq, codes * np.float32(np.float16(scale))), (wtype, name)
            assert abs(float(np.float16(scale)) - scale) <= scale * 2.0 ** -11
        for name, info in i2s.tensors.items():
            if info.ggml_type != GGMLType.I2_S:
                assert np.array_equal(other.tensor_bytes(name), i2s.tensor_bytes(name)), name


def test_master_weights_ternarize_by_absmean(random_b158: Path, tmp_path: Path) -> None:
    reader = GGUFReader(convert(random_b158, tmp_path / "m.gguf"))
    ckpt = Checkpoint(random_b158)
    for name in _i2s_tensors(reader):
        w = ckpt.read(_hf_name(name)).astype(np.float64)
        codes, scale = quants.unpack_i2s(reader.tensor_bytes(name), reader.tensors[name].shape)
        assert scale == pytest.approx(np.abs(w).mean(), rel=1e-6)
        assert np.array_equal(codes, np.clip(np.round(w / scale), -1, 1)), name


def test_packed_random_checkpoint_equals_its_master_conversion(tmp_path: Path) -> None:
    master = make_random_bitnet_checkpoint(tmp_path / "master", dtype="f32", seed=3)
    packed = make_random_bitnet_checkpoint(tmp_path / "packed", dtype="f32", packed=True, seed=3)
    a = GGUFReader(convert(master, tmp_path / "a.gguf"))
    b = GGUFReader(convert(packed, tmp_path / "b.gguf"))
    for name in _i2s_tensors(a):
        assert np.array_equal(a.tensor_bytes(name), b.tensor_bytes(name)), name


def test_sharded_checkpoint_gives_the_same_file(tmp_path: Path) -> None:
    single = make_random_bitnet_checkpoint(tmp_path / "one", seed=5)
    sharded = make_random_bitnet_checkpoint(tmp_path / "three", seed=5, shards=3)
    assert len(list(sharded.glob("model-*-of-00003.safetensors"))) == 3
    a = convert(single, tmp_path / "a.gguf", model_name="m")
    b = convert(sharded, tmp_path / "b.gguf", model_name="m")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("etype,ggml_type,tol", [("f32", GGMLType.F32, 0.0), ("bf16", GGMLType.BF16, 0.0),
                                                  ("f16", GGMLType.F16, 1e-3), ("q8_0", GGMLType.Q8_0, 1e-2)])
def test_embedding_types(random_b158: Path, tmp_path: Path, etype: str, ggml_type: GGMLType,
                         tol: float) -> None:
    reader = GGUFReader(convert(random_b158, tmp_path / "e.gguf", embedding_type=etype))
    assert reader.tensors["token_embd.weight"].ggml_type == ggml_type
    assert reader.tensors["output_norm.weight"].ggml_type == GGMLType.F32
    source = Checkpoint(random_b158).read("model.embed_tokens.weight")
    got = reader.dequantize("token_embd.weight")
    assert np.abs(got - source).max() <= tol * np.abs(source).max()


def _reverse_normal_token_ids(tokenizer_json: Path) -> None:
    """Give the learned (merged) tokens of a tokenizer.json ids in reverse merge order. Tokenizing by merges
    is unchanged, but ids no longer follow merge ranks: only correct scores in the GGUF reproduce it."""
    spec = json.loads(tokenizer_json.read_text())
    vocab = spec["model"]["vocab"]
    merged = {a + b for a, b in (m.split(" ") if isinstance(m, str) else m for m in spec["model"]["merges"])}
    names = sorted((t for t in vocab if t in merged), key=vocab.get)
    ids = sorted(vocab[t] for t in names)
    vocab.update(zip(names, reversed(ids)))
    tokenizer_json.write_text(json.dumps(spec))


def test_1bitllm_bitnet_variant(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", arch="bitnet", vocab_size=540)
    _reverse_normal_token_ids(src / "tokenizer.json")
    reader = GGUFReader(convert(src, tmp_path / "b.gguf"))
    md = reader.metadata
    assert md["general.architecture"] == "bitnet"
    assert md["bitnet.rope.freq_base"] == 10000.0
    assert reader.tensors["output.weight"].ggml_type == GGMLType.F16        # untied LM head
    assert reader.tensors["output.weight"].shape == (540, 256)
    ckpt = Checkpoint(src)   # 1bitLLM's sub-norm names map to the GGUF ones
    for gguf_name, hf_name in (
            ("blk.1.attn_sub_norm.weight", "model.layers.1.self_attn.inner_attn_ln.weight"),
            ("blk.1.ffn_sub_norm.weight", "model.layers.1.mlp.ffn_layernorm.weight")):
        assert np.array_equal(reader.dequantize(gguf_name), ckpt.read(hf_name))
    # SentencePiece-style vocabulary, padded to the embedding's 540 rows
    assert md["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.merges" not in md
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    assert len(tokens) == 540 and tokens[-1] == "[PAD539]" and types[-1] == 5
    assert types[0] == 2 and tokens[0] == "<unk>"                          # unknown
    assert types[1] == 3 and types[2] == 3                                 # <s>, </s>: control
    assert all(types[tokens.index(f"<0x{b:02X}>")] == 6 for b in range(256))   # byte fallback tokens
    assert md["tokenizer.ggml.add_space_prefix"] is True
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert md["tokenizer.ggml.unknown_token_id"] == 0
    _assert_tokenizes_like_source(reader, src)


def _assert_tokenizes_like_source(reader: GGUFReader, src: Path) -> None:
    tok = Tokenizer.from_gguf_metadata(reader.metadata)
    hf = HFTokenizer.from_file(str(src / "tokenizer.json"))
    for text in SAMPLE_TEXTS + CORPUS.splitlines():
        assert tok.encode(text, add_bos=False) == hf.encode(text, add_special_tokens=False).ids, repr(text)


def _rope(x: np.ndarray, pos: int, neox: bool, base: float) -> np.ndarray:
    """Rotate one head vector: NEOX pairs (i, i + d/2) as Hugging Face does, NORM pairs (2i, 2i + 1)."""
    d = x.shape[-1]
    theta = pos * base ** (-2.0 * np.arange(d // 2) / d)
    cos, sin = np.cos(theta), np.sin(theta)
    a, b = (x[: d // 2], x[d // 2:]) if neox else (x[0::2], x[1::2])
    ra, rb = a * cos - b * sin, a * sin + b * cos
    return np.concatenate([ra, rb]) if neox else np.stack([ra, rb], axis=1).reshape(-1)


def test_llama_variant_permutes_qk_for_norm_rope(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", arch="llama", packed=True, linear_class="bitlinear")
    reader = GGUFReader(convert(src, tmp_path / "l.gguf"))
    md = reader.metadata
    assert md["general.architecture"] == "llama" and md["tokenizer.ggml.pre"] == "llama-bpe"
    assert "output.weight" in reader.tensors and "blk.0.attn_sub_norm.weight" not in reader.tensors
    ckpt = Checkpoint(src)
    n_heads, n_kv, hd = 4, 2, 64
    rng = np.random.default_rng(1)
    x = rng.standard_normal(256)
    for layer in range(2):
        hf = {}
        for kind, proj in (("q", "q_proj"), ("k", "k_proj")):
            packed = ckpt.read(f"model.layers.{layer}.self_attn.{proj}.weight")
            rows = packed.shape[0] * 4
            codes = np.concatenate([((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)])
            assert codes.shape == (rows, 256)
            hf[kind] = codes.astype(np.float64) @ x
        gg = {k: reader.dequantize(f"blk.{layer}.attn_{k}.weight").astype(np.float64) @ x for k in "qk"}
        # The attention scores must not change: HF's NEOX rope on its rows == NORM rope on the GGUF's rows.
        for h in range(n_heads):
            kv = h // (n_heads // n_kv)
            for pos in (0, 3, 17):
                want = _rope(hf["q"][h * hd:(h + 1) * hd], pos, True, 5e5) @ _rope(
                    hf["k"][kv * hd:(kv + 1) * hd], pos - 2, True, 5e5)
                got = _rope(gg["q"][h * hd:(h + 1) * hd], pos, False, 5e5) @ _rope(
                    gg["k"][kv * hd:(kv + 1) * hd], pos - 2, False, 5e5)
                scale = np.abs(reader.dequantize(f"blk.{layer}.attn_q.weight")).max()
                scale *= np.abs(reader.dequantize(f"blk.{layer}.attn_k.weight")).max()
                assert got == pytest.approx(want * scale, rel=1e-5, abs=1e-6)
    _assert_tokenizes_like_source(reader, src)


@pytest.mark.parametrize("kind", ["gpt-2", "llama-bpe"])
def test_byte_level_tokenizer_metadata(tmp_path: Path, kind: str) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    src = make_random_bitnet_checkpoint(tmp_path / "hf", tokenizer=kind, add_bos_token=False,
                                        chat_template=template, vocab_size=470)
    reader = GGUFReader(convert(src, tmp_path / "t.gguf"))
    md = reader.metadata
    spec = json.loads((src / "tokenizer.json").read_text())
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == kind
    assert md["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m
                                          for m in spec["model"]["merges"]]
    tokens, types = md["tokenizer.ggml.tokens"], md["tokenizer.ggml.token_type"]
    for text, idx in spec["model"]["vocab"].items():
        assert tokens[idx] == text and types[idx] == 1
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
    assert types[added["<|eot_id|>"]] == 3 and types[added[USER_TOKEN]] == 4
    assert types[-1] == 5 and tokens[-1] == "[PAD469]"
    assert md["tokenizer.ggml.bos_token_id"] == added["<|begin_of_text|>"]
    assert md["tokenizer.ggml.eos_token_id"] == added["<|end_of_text|>"]
    assert md["tokenizer.ggml.add_bos_token"] is False
    assert md["tokenizer.chat_template"] == template
    _assert_tokenizes_like_source(reader, src)


def test_add_bos_defaults_to_true(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", add_bos_token=None)
    md = GGUFReader(convert(src, tmp_path / "t.gguf")).metadata
    assert md["tokenizer.ggml.add_bos_token"] is True
    assert "tokenizer.chat_template" not in md


# ------------------------------------------------------------------------------ bad input

def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _rewrite_weights(src: Path, edit) -> None:
    ckpt = Checkpoint(src)
    tensors = {n: ckpt.read(n) for n in ckpt.tensors}
    edit(tensors)
    save_safetensors(src / "model.safetensors", tensors)


def _break(case: str, src: Path) -> None:
    if case == "missing config":
        (src / "config.json").unlink()
    elif case == "missing tokenizer":
        (src / "tokenizer.json").unlink()
    elif case == "missing weights":
        (src / "model.safetensors").unlink()
    elif case == "missing tensor":
        _rewrite_weights(src, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    elif case == "shape vs config":
        _edit_json(src / "config.json", intermediate_size=768)
    elif case == "nan":
        def put_nan(t):
            t["model.layers.0.self_attn.v_proj.weight"][3, 5] = np.nan
        _rewrite_weights(src, put_nan)
    elif case == "inf in embedding":
        def put_inf(t):
            t["model.embed_tokens.weight"][7, 1] = -np.inf
        _rewrite_weights(src, put_inf)
    elif case == "unknown architecture":
        _edit_json(src / "config.json", architectures=["GPT2LMHeadModel"])
    elif case == "unexpected tensor":
        def add_bias(t):
            t["model.layers.0.self_attn.q_proj.bias"] = np.zeros(256, np.float32)
        _rewrite_weights(src, add_bias)
    elif case == "unknown pre-tokenizer":
        spec = json.loads((src / "tokenizer.json").read_text())
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}"
        (src / "tokenizer.json").write_text(json.dumps(spec))
    elif case == "unigram tokenizer":
        spec = json.loads((src / "tokenizer.json").read_text())
        spec["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}
        (src / "tokenizer.json").write_text(json.dumps(spec))
    elif case == "wrong activation":
        _edit_json(src / "config.json", hidden_act="gelu")


BAD_CASES = {
    "missing config": r"model config not found: .*config\.json",
    "missing tokenizer": r"tokenizer not found: .*tokenizer\.json",
    "missing weights": r"no weights in .*model\.safetensors",
    "missing tensor": r"'model\.layers\.1\.mlp\.up_proj\.weight'.*missing",
    "shape vs config": r"'model\.layers\.0\.mlp\.gate_proj\.weight' has shape \[512, 256\].*\[768, 256\]",
    "nan": r"'model\.layers\.0\.self_attn\.v_proj\.weight' holds 1 non-finite value.*NaN",
    "inf in embedding": r"'model\.embed_tokens\.weight' holds 1 non-finite value.*Inf",
    "unknown architecture": r"unsupported architecture GPT2LMHeadModel; known architectures: "
                            r"BitNetForCausalLM",
    "unexpected tensor": r"does not use: model\.layers\.0\.self_attn\.q_proj\.bias",
    "unknown pre-tokenizer": r"unknown pre-tokenizer split regex .*known: gpt-2",
    "wrong activation": r"hidden_act 'gelu'",
    "unigram tokenizer": r"tokenizer\.json: model type 'Unigram' is not supported",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_a_clear_error(tmp_path: Path, case: str) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", dtype="f32", seed=9)
    _break(case, src)
    with pytest.raises(ConversionError, match=BAD_CASES[case]):
        convert(src, tmp_path / "out.gguf")
    assert list(tmp_path.glob("out.gguf*")) == []


def test_missing_shard_is_named(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", shards=2)
    (src / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ConversionError, match="model-00002-of-00002.safetensors"):
        convert(src, tmp_path / "out.gguf")


def test_i2s_needs_element_counts_that_are_multiples_of_128(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", hidden=72, ffn=144, n_heads=2, n_kv_heads=1)
    with pytest.raises(ConversionError, match=r"5184 elements, not a multiple of 128 as I2_S"):
        convert(src, tmp_path / "out.gguf")


@pytest.mark.parametrize("wtype", ["tq2_0", "tq1_0"])
def test_tq_formats_need_rows_that_are_multiples_of_256(tinya_hf: Path, tmp_path: Path, wtype: str) -> None:
    with pytest.raises(ConversionError, match=rf"rows of 128 weights; {wtype.upper()} needs .*256"):
        convert(tinya_hf, tmp_path / "out.gguf", weight_type=wtype)


def test_packed_code_3_is_rejected(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", packed=True)

    def corrupt(t):
        t["model.layers.0.mlp.down_proj.weight"][0, 0] = 0xFF
    _rewrite_weights(src, corrupt)
    with pytest.raises(ConversionError,
                       match=r"'model\.layers\.0\.mlp\.down_proj\.weight' holds the 2-bit value 3"):
        convert(src, tmp_path / "out.gguf")


def test_untied_lm_head_is_rejected_for_the_tied_graph(tmp_path: Path) -> None:
    src = make_random_bitnet_checkpoint(tmp_path / "hf", tied=False)
    with pytest.raises(ConversionError, match="always uses the token embedding as LM head"):
        convert(src, tmp_path / "out.gguf")


def test_unknown_types_are_rejected(random_b158: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="unknown weight type 'q4_0'; choose one of i2_s, tq2_0, tq1_0"):
        convert(random_b158, tmp_path / "o.gguf", weight_type="q4_0")
    with pytest.raises(ConversionError, match="unknown embedding type 'f8'"):
        convert(random_b158, tmp_path / "o.gguf", embedding_type="f8")


# ------------------------------------------------------------------------------ output file handling

def test_refuses_to_overwrite_without_force(random_b158: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(ConversionError, match="already exists"):
        convert(random_b158, out)
    assert out.read_bytes() == b"keep me"
    convert(random_b158, out, force=True)
    assert GGUFReader(out).metadata["general.architecture"] == "bitnet-b1.58"


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_write_leaves_no_file(random_b158: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          exc: type[BaseException]) -> None:
    from bitnet.convert import converter

    real = converter._encode
    calls = []

    def failing(ckpt, src):
        calls.append(src.plan.gguf_name)
        if len(calls) == 6:
            raise exc("interrupted")
        return real(ckpt, src)

    monkeypatch.setattr(converter, "_encode", failing)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    previous = out_dir / "model.gguf"
    previous.write_bytes(b"old")
    with pytest.raises(exc):
        convert(random_b158, previous, force=True)
    assert len(calls) == 6
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.gguf"]    # no temporary file left behind
    assert previous.read_bytes() == b"old"                                 # the old file untouched
    with pytest.raises(exc):
        calls.clear()
        convert(random_b158, out_dir / "new.gguf")
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.gguf"]


def test_memory_stays_near_the_largest_tensor(tmp_path: Path) -> None:
    import tracemalloc

    src = make_random_bitnet_checkpoint(tmp_path / "hf", n_layers=8, ffn=1024, dtype="f32", seed=2)
    ckpt = Checkpoint(src)
    model_bytes = sum(e.nbytes for e in ckpt.tensors.values())
    largest = max(e.nbytes for e in ckpt.tensors.values())
    tracemalloc.start()
    try:
        convert(src, tmp_path / "m.gguf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model_bytes > 25 * largest
    assert peak < 6 * largest, (peak, largest)     # a few working copies of one tensor, never the model


def test_progress_bar_only_when_asked_or_on_a_terminal(random_b158: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    convert(random_b158, tmp_path / "a.gguf")               # stderr is captured, not a terminal
    assert capsys.readouterr().err == ""
    convert(random_b158, tmp_path / "b.gguf", progress=True)
    assert "converting" in capsys.readouterr().err
    convert(random_b158, tmp_path / "c.gguf", progress=False)
    assert capsys.readouterr().err == ""


def test_cli_arguments_mount_on_a_parser(random_b158: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "cli.gguf"
    args = parser.parse_args([str(random_b158), "-o", str(out), "--type", "tq2_0", "--embedding-type", "q8_0",
                              "--no-progress"])
    assert run(args) == 0
    assert "wrote" in capsys.readouterr().out
    reader = GGUFReader(out)
    assert reader.tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.TQ2_0
    assert reader.tensors["token_embd.weight"].ggml_type == GGMLType.Q8_0
    with pytest.raises(ConversionError, match="already exists"):
        run(args)
    assert run(parser.parse_args([str(random_b158), "-o", str(out), "--force", "--no-progress"])) == 0
    assert GGUFReader(out).tensors["blk.0.attn_q.weight"].ggml_type == GGMLType.I2_S
