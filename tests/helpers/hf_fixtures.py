"""Small Hugging Face style checkpoints built from numpy, for converter and engine tests.

`make_random_bitnet_checkpoint(dir, ...)` writes config.json, safetensors weights (bf16/f16/f32 master
weights or packed uint8 ternary weights, optionally sharded), tokenizer.json and tokenizer_config.json for
the three architectures the converter knows:
- "bitnet-b1.58": `BitNetForCausalLM` (transformers' BitNet port: relu², sub-norms, tied embeddings);
- "bitnet": `BitnetForCausalLM` (1bitLLM remote code: SiLU FFN, `inner_attn_ln` / `ffn_layernorm` sub-norms,
  untied LM head, SentencePiece-style tokenizer);
- "llama": ternary `LlamaForCausalLM` (HF1BitLLM style: bitnet quantization_config, untied LM head).
Tokenizers are trained on the spot with the `tokenizers` library on a small built-in English text (cached per
process): byte-level BPE with the GPT-2 or the LLaMA-3 split regex, or SentencePiece-style BPE with byte
fallback. Everything is deterministic for a given seed.
"""
from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """\
The little engine read the file one tensor at a time, and it never held more than it needed.
Weights were ternary: minus one, zero or plus one, with a single scale for the whole matrix.
She said, "It's 12:45 already; we'll test 3 more cases before lunch." He didn't agree.
Numbers like 1024, 65536 and 3.14159 appear in logs, tables and the odd error message (code E42).
A tokenizer splits text into pieces; the pieces become ids; the ids go into the model.
Rain fell on the old stone bridge while the river carried leaves toward the sea.
Can you convert the checkpoint? Yes -- but only if the shapes agree with the config!
Café, naïve, résumé and jalapeño keep their accents; 東京 and Москва keep their scripts.
    Indented lines, tabs\tand trailing spaces   survive the round trip.
I've seen models that were large, and I'd rather run small ones that are fast.
"""
SAMPLE_TEXTS = [
    "Hello world", " leading space", "don't stop, they're here", "numbers 1234567 and 3.14",
    "Café naïve 東京 Москва", "tabs\tand\nnewlines\n\n  indented", "ÿ€😀 symbols $^~| <=>", "",
    "The little engine read the file.", "I've 42 apples", "a<|eot_id|>b", "x <sep> y",
]

ARCHS = {
    # arch key: (HF architecture, model_type, hidden_act, rope_theta, default tokenizer, tied)
    "bitnet-b1.58": ("BitNetForCausalLM", "bitnet", "relu2", 500000.0, "llama-bpe", True),
    "bitnet": ("BitnetForCausalLM", "llama", "silu", 10000.0, "spm", False),
    "llama": ("LlamaForCausalLM", "llama", "silu", 500000.0, "llama-bpe", False),
}
BYTE_LEVEL_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")
SPM_SPECIALS = ("<unk>", "<s>", "</s>")
USER_TOKEN = "<sep>"   # a non-special added token of the byte-level tokenizers (GGUF type user-defined)
SPM_PAD = "<pad>"


# ----------------------------------------------------------------------------------------- safetensors

class BF16:
    """A tensor to be stored as bfloat16 (numpy has no such dtype): float32 values rounded to nearest even."""

    def __init__(self, values: np.ndarray) -> None:
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        self.bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        self.shape = tuple(values.shape)

    def values(self) -> np.ndarray:
        return (self.bits.astype(np.uint32) << 16).view(np.float32).reshape(self.shape)


_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.uint8): "U8",
              np.dtype(np.int8): "I8", np.dtype(np.float64): "F64"}


def save_safetensors(path: str | Path, tensors: dict[str, np.ndarray | BF16]) -> None:
    """Write a safetensors file (header: u64 length + JSON of dtype/shape/byte range; then the data).

    Written by hand because numpy cannot hold bf16, which is what real BitNet checkpoints use.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if isinstance(t, BF16):
            dtype, shape, blob = "BF16", t.shape, t.bits.tobytes()
        else:
            arr = np.ascontiguousarray(t)
            blob = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            dtype, shape = _ST_DTYPES[arr.dtype], arr.shape
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for blob in blobs:
            f.write(blob)


def save_sharded(directory: Path, tensors: dict[str, np.ndarray | BF16], shards: int) -> None:
    """model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json."""
    if shards <= 1:
        save_safetensors(directory / "model.safetensors", tensors)
        return
    names = list(tensors)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_safetensors(directory / file, {n: tensors[n] for n in part})
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))


def pack_ternary(codes: np.ndarray) -> np.ndarray:
    """Hugging Face packed layout: int8 codes [out, in] -> uint8 [out/4, in]; packed row p holds rows
    p, P+p, 2P+p, 3P+p (P = out/4) in bits 1:0, 3:2, 5:4, 7:6 as code + 1."""
    out = codes.shape[0]
    assert out % 4 == 0, "output features must be a multiple of 4 to pack"
    parts = (codes.astype(np.int16) + 1).astype(np.uint8).reshape(4, out // 4, -1)
    return parts[0] | (parts[1] << 2) | (parts[2] << 4) | (parts[3] << 6)


def absmean_ternary(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Per-tensor absmean ternarization (docs/formats.md §6), float32 throughout: (int8 codes, scale)."""
    w = np.asarray(w, dtype=np.float32)
    mean = np.float32(np.abs(w).astype(np.float64).sum()) / np.float32(w.size)
    s = np.float32(1) / max(mean, np.float32(1e-5))
    return np.clip(np.rint(w * s), -1, 1).astype(np.int8), np.float32(np.float32(1) / s)


# ----------------------------------------------------------------------------------------- tokenizers

@functools.lru_cache(maxsize=8)
def tokenizer_json(kind: str, n_merges: int = 200) -> str:
    """A trained tokenizer.json: "gpt-2" / "llama-bpe" byte-level BPE or "spm" SentencePiece-style BPE."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    lines = CORPUS.splitlines() * 4
    if kind in ("gpt-2", "llama-bpe"):
        tok = Tokenizer(models.BPE())
        if kind == "gpt-2":
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        else:
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + n_merges, initial_alphabet=alphabet,
                                      show_progress=False)
        tok.train_from_iterator(lines, trainer)
        tok.add_special_tokens(list(BYTE_LEVEL_SPECIALS))
        tok.add_tokens([USER_TOKEN])
        return tok.to_str()
    if kind == "spm":
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        # Train on "▁"-marked words, then give the file LLaMA-2's layout: Prepend + Replace normalizer and
        # no pre-tokenizer (merges never contain a word boundary in the middle, as in SentencePiece).
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        chars = sorted({c for line in lines for c in line.replace(" ", "\u2581")} | {"\u2581"})
        trainer = trainers.BpeTrainer(vocab_size=len(SPM_SPECIALS) + 256 + len(chars) + n_merges,
                                      special_tokens=[*SPM_SPECIALS, *byte_tokens], initial_alphabet=chars,
                                      show_progress=False)
        tok.train_from_iterator(lines, trainer)
        spec = json.loads(tok.to_str())
        # Byte tokens are ordinary vocabulary entries in LLaMA-2 files, not added tokens.
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SPM_SPECIALS]
        spec["normalizer"] = json.loads(normalizers.Sequence(
            [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]).__getstate__())
        spec["pre_tokenizer"] = None
        spec["decoder"] = json.loads(decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
             decoders.Strip(" ", 1, 0)]).__getstate__())
        result = Tokenizer.from_str(json.dumps(spec))
        result.add_special_tokens([SPM_PAD])   # 1bitLLM's vocabulary ends in an added <pad> token too
        return result.to_str()
    raise ValueError(f"unknown tokenizer kind {kind!r}")


# ----------------------------------------------------------------------------------------- checkpoints

def make_random_bitnet_checkpoint(directory: str | Path, *, arch: str = "bitnet-b1.58", hidden: int = 256,
                                  ffn: int = 512, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2,
                                  head_dim: int | None = None, vocab_size: int | None = None,
                                  tokenizer: str | None = None, packed: bool = False,
                                  linear_class: str = "autobitlinear", dtype: str = "bf16",
                                  tied: bool | None = None, shards: int = 1, context_length: int = 512,
                                  add_bos_token: bool | None = True, chat_template: str | None = None,
                                  seed: int = 0) -> Path:
    """Write a random checkpoint of `arch` into `directory` (created) and return it.

    packed=True stores every linear as uint8 [out/4, in] + `weight_scale` (ternarized by absmean first), with
    `linear_class` "autobitlinear" (scale multiplies) or "bitlinear" (scale divides); otherwise master
    weights in `dtype` ("bf16", "f16" or "f32"). vocab_size defaults to the tokenizer's size; a larger value
    leaves embedding rows without a token (written as padding). add_bos_token=None leaves the key out.
    """
    hf_arch, model_type, act, theta, default_tok, default_tied = ARCHS[arch]
    tied = default_tied if tied is None else tied
    tok_kind = tokenizer or default_tok
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    hd = head_dim or hidden // n_heads

    tok_str = tokenizer_json(tok_kind)
    tok_spec = json.loads(tok_str)
    n_tokens = max([*tok_spec["model"]["vocab"].values(), *(t["id"] for t in tok_spec["added_tokens"])]) + 1
    vocab = vocab_size or n_tokens
    (directory / "tokenizer.json").write_text(tok_str, encoding="utf-8")
    specials = SPM_SPECIALS[1:] if tok_kind == "spm" else BYTE_LEVEL_SPECIALS[:2]
    tok_config: dict[str, Any] = {"bos_token": specials[0], "eos_token": specials[1],
                                  "tokenizer_class": "PreTrainedTokenizerFast",
                                  "model_max_length": context_length}
    if tok_kind == "spm":
        tok_config["unk_token"] = SPM_SPECIALS[0]
    if add_bos_token is not None:
        tok_config["add_bos_token"] = add_bos_token
    if chat_template is not None:
        tok_config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1), encoding="utf-8")

    vocab_ids = {**tok_spec["model"]["vocab"], **{t["content"]: t["id"] for t in tok_spec["added_tokens"]}}
    config: dict[str, Any] = {
        "architectures": [hf_arch], "model_type": model_type, "hidden_size": hidden, "intermediate_size": ffn,
        "num_hidden_layers": n_layers, "num_attention_heads": n_heads, "num_key_value_heads": n_kv_heads,
        "vocab_size": vocab, "max_position_embeddings": context_length, "rms_norm_eps": 1e-5,
        "rope_theta": theta, "hidden_act": act, "tie_word_embeddings": tied,
        "bos_token_id": vocab_ids[specials[0]], "eos_token_id": vocab_ids[specials[1]],
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype],
    }
    if head_dim is not None:
        config["head_dim"] = head_dim
    if arch != "bitnet":
        config["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class,
                                         "quantization_mode": "offline" if packed else "online"}
    else:
        config.update(weight_bits=1, input_bits=8)
    (directory / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")

    def floats(values: np.ndarray) -> np.ndarray | BF16:
        values = values.astype(np.float32)
        if dtype == "bf16":
            return BF16(values)
        return values.astype(np.float16 if dtype == "f16" else np.float32)

    def linear(name: str, out: int, inp: int) -> None:
        w = rng.normal(0.0, 0.05, size=(out, inp)).astype(np.float32)
        if not packed:
            tensors[name + ".weight"] = floats(w)
            return
        codes, scale = absmean_ternary(w)
        tensors[name + ".weight"] = pack_ternary(codes)
        stored = scale if linear_class == "autobitlinear" else np.float32(1) / scale
        tensors[name + ".weight_scale"] = floats(np.array([stored], dtype=np.float32))

    def norm(name: str, n: int) -> None:
        tensors[name + ".weight"] = floats(1.0 + 0.1 * rng.standard_normal(n))

    sub_attn, sub_ffn = (("inner_attn_ln", "ffn_layernorm") if arch == "bitnet" else
                         ("attn_sub_norm", "ffn_sub_norm"))
    tensors: dict[str, np.ndarray | BF16] = {}
    tensors["model.embed_tokens.weight"] = floats(rng.normal(0.0, 0.5, size=(vocab, hidden)))
    for i in range(n_layers):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm", hidden)
        linear(p + "self_attn.q_proj", n_heads * hd, hidden)
        linear(p + "self_attn.k_proj", n_kv_heads * hd, hidden)
        linear(p + "self_attn.v_proj", n_kv_heads * hd, hidden)
        linear(p + "self_attn.o_proj", hidden, n_heads * hd)
        norm(p + "post_attention_layernorm", hidden)
        linear(p + "mlp.gate_proj", ffn, hidden)
        linear(p + "mlp.up_proj", ffn, hidden)
        linear(p + "mlp.down_proj", hidden, ffn)
        if arch != "llama":
            norm(p + f"self_attn.{sub_attn}", n_heads * hd)
            norm(p + f"mlp.{sub_ffn}", ffn)
    norm("model.norm", hidden)
    if not tied:
        tensors["lm_head.weight"] = floats(rng.normal(0.0, 0.5, size=(vocab, hidden)))
    save_sharded(directory, tensors, shards)
    return directory
