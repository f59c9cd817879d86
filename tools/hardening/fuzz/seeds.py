"""Seed corpora for the fuzz targets: the smallest real files of every kind the engine loads.

`models/`: complete tiny models (one layer, the smallest shapes the block formats allow) for every ternary
type (I2_S, TQ1_0, TQ2_0) times every embedding type (F16, BF16, Q8_0, F32), in the three architectures, each
with a small SentencePiece vocabulary; every one of them loads and generates. `tokenizers/`: tensor-less
GGUF files carrying only tokenizer metadata (byte-level BPE with merges, SentencePiece with scores and byte
tokens, special ids, a chat template). `templates/`: chat templates as they come in files.

Written with the project's own GGUF writer and quantizers, from a fixed seed, so a corpus is reproducible.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bitnet.gguf import GGMLType, GGUFValueType, GGUFWriter, quants
from bitnet.tokenizer import byte_level_tokens

TERNARY = {"i2_s": GGMLType.I2_S, "tq1_0": GGMLType.TQ1_0, "tq2_0": GGMLType.TQ2_0}
EMBEDDING = {"f16": GGMLType.F16, "bf16": GGMLType.BF16, "q8_0": GGMLType.Q8_0, "f32": GGMLType.F32}
# TQ1_0/TQ2_0 blocks hold 256 weights of a row, so 256 is the smallest row length every ternary type accepts.
N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_CTX = 256, 256, 4, 1, 64
HEAD_DIM = N_EMBD // N_HEAD
SPM_PIECES = ["\u2581the", "\u2581a", "\u2581cat", "\u2581sat", "\u2581on", "\u2581mat", "\u2581", "t", "h", "e",
              "a", "c", "s", "o", "n", "m"]

TEMPLATES = {
    "chatml.jinja": ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llama3.jinja": ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
                     "\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    "bitnet-2b4t.jinja": ("{% for message in messages %}{% set content = message['role'] | capitalize + ': ' + "
                          "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                          "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                          "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"),
    "loops.jinja": ("{% set ns = namespace(n=0) %}{% for m in messages %}{% for c in m['content'] %}"
                    "{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }}{{ messages | length }}"
                    "{{ (messages[0]['content'] * 3) | upper }}{{ range(10) | join(',') }}"),
    "raise.jinja": "{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}",
}


def spm_vocabulary(n_bytes: int) -> tuple[list[str], list[float], list[int]]:
    """<unk> <s> </s>, the first n_bytes byte tokens <0x00>.. (byte fallback), then a few pieces by score."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(n_bytes)] + SPM_PIECES
    scores = [0.0, 0.0, 0.0] + [0.0] * n_bytes + [-float(i) for i in range(len(SPM_PIECES))]
    types = [2, 3, 3] + [6] * n_bytes + [1] * len(SPM_PIECES)
    return tokens, scores, types


def add_spm_tokenizer(w: GGUFWriter, n_bytes: int = 256) -> int:
    """A SentencePiece vocabulary; models get a few byte tokens only, so that their embedding stays small and
    most of a seed file is the weights and header the fuzzer should be mutating, not embedding rows."""
    tokens, scores, types = spm_vocabulary(n_bytes)
    w.add("tokenizer.ggml.model", "llama")
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.scores", scores, elem_type=GGUFValueType.FLOAT32)
    w.add("tokenizer.ggml.token_type", types, elem_type=GGUFValueType.INT32)
    w.add("tokenizer.ggml.unknown_token_id", 0, vtype=GGUFValueType.UINT32)
    w.add("tokenizer.ggml.bos_token_id", 1, vtype=GGUFValueType.UINT32)
    w.add("tokenizer.ggml.eos_token_id", 2, vtype=GGUFValueType.UINT32)
    w.add("tokenizer.ggml.add_bos_token", True)
    return len(tokens)


def add_bpe_tokenizer(w: GGUFWriter) -> int:
    byte_tokens = byte_level_tokens()
    merges = ["Ġ t", "h e", "Ġt he", "a t", "Ġ c", "Ġc at", "Ġ s", "Ġs at"]
    tokens = byte_tokens + [m.replace(" ", "") for m in merges] + ["<|begin_of_text|>", "<|eot_id|>"]
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", "llama-bpe")
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.token_type", [1] * (len(tokens) - 2) + [3, 3], elem_type=GGUFValueType.INT32)
    w.add("tokenizer.ggml.merges", merges)
    w.add("tokenizer.ggml.bos_token_id", len(tokens) - 2, vtype=GGUFValueType.UINT32)
    w.add("tokenizer.ggml.eos_token_id", len(tokens) - 1, vtype=GGUFValueType.UINT32)
    w.add("tokenizer.chat_template", TEMPLATES["llama3.jinja"])
    return len(tokens)


def _ternary(rng: np.random.Generator, rows: int, cols: int, gtype: GGMLType) -> bytes:
    w = rng.integers(-1, 2, size=(rows, cols)).astype(np.float32) * np.float32(0.05)
    return quants.quantize(w, gtype).tobytes()


def _floats(rng: np.random.Generator, shape: tuple[int, ...], gtype: GGMLType, scale: float = 0.5) -> bytes:
    return quants.quantize((rng.standard_normal(shape) * scale).astype(np.float32), gtype).tobytes()


def write_model(path: Path, arch: str, ternary: GGMLType, embedding: GGMLType, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path)
    w.add("general.architecture", arch)
    w.add("general.name", f"fuzz-seed-{arch}")
    u32 = GGUFValueType.UINT32
    for key, value in (("context_length", N_CTX), ("embedding_length", N_EMBD), ("block_count", 1),
                       ("feed_forward_length", N_FF), ("attention.head_count", N_HEAD),
                       ("attention.head_count_kv", N_HEAD_KV), ("rope.dimension_count", HEAD_DIM)):
        w.add(f"{arch}.{key}", value, vtype=u32)
    w.add(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5, vtype=GGUFValueType.FLOAT32)
    w.add(f"{arch}.rope.freq_base", 10000.0, vtype=GGUFValueType.FLOAT32)
    n_vocab = add_spm_tokenizer(w, n_bytes=16)
    f32 = GGMLType.F32
    w.add_tensor("token_embd.weight", (n_vocab, N_EMBD), embedding, _floats(rng, (n_vocab, N_EMBD), embedding))
    if arch == "llama":   # an untied head (bitnet may carry one too; its seed is tied)
        w.add_tensor("output.weight", (n_vocab, N_EMBD), embedding, _floats(rng, (n_vocab, N_EMBD), embedding, 0.1))
    w.add_tensor("output_norm.weight", (N_EMBD,), f32, _floats(rng, (N_EMBD,), f32, 1.0))
    kv = N_HEAD_KV * HEAD_DIM
    shapes = {"attn_q": (N_EMBD, N_EMBD), "attn_k": (kv, N_EMBD), "attn_v": (kv, N_EMBD),
              "attn_output": (N_EMBD, N_EMBD), "ffn_gate": (N_FF, N_EMBD), "ffn_up": (N_FF, N_EMBD),
              "ffn_down": (N_EMBD, N_FF)}
    w.add_tensor("blk.0.attn_norm.weight", (N_EMBD,), f32, _floats(rng, (N_EMBD,), f32, 1.0))
    w.add_tensor("blk.0.ffn_norm.weight", (N_EMBD,), f32, _floats(rng, (N_EMBD,), f32, 1.0))
    if arch != "llama":
        w.add_tensor("blk.0.attn_sub_norm.weight", (N_EMBD,), f32, _floats(rng, (N_EMBD,), f32, 1.0))
        w.add_tensor("blk.0.ffn_sub_norm.weight", (N_FF,), f32, _floats(rng, (N_FF,), f32, 1.0))
    for name, (rows, cols) in shapes.items():
        w.add_tensor(f"blk.0.{name}.weight", (rows, cols), ternary, _ternary(rng, rows, cols, ternary))
    w.write()
    return path


def write_tokenizer_file(path: Path, kind: str) -> Path:
    w = GGUFWriter(path)
    w.add("general.architecture", "llama")
    (add_bpe_tokenizer if kind == "bpe" else add_spm_tokenizer)(w)
    w.write()
    return path


def write_corpora(root: Path) -> dict[str, Path]:
    """Write the seed folders under `root`; returns {folder name: folder}."""
    folders = {name: root / name for name in ("models", "tokenizers", "templates", "selftest")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    seed = 0
    for tname, ternary in TERNARY.items():
        for ename, embedding in EMBEDDING.items():
            write_model(folders["models"] / f"b158-{tname}-{ename}.gguf", "bitnet-b1.58", ternary, embedding, seed)
            seed += 1
    write_model(folders["models"] / "bitnet-i2_s-f16.gguf", "bitnet", GGMLType.I2_S, GGMLType.F16, seed)
    write_model(folders["models"] / "llama-tq2_0-q8_0.gguf", "llama", GGMLType.TQ2_0, GGMLType.Q8_0, seed + 1)
    for kind in ("bpe", "spm"):
        write_tokenizer_file(folders["tokenizers"] / f"{kind}.gguf", kind)
    for name, text in TEMPLATES.items():
        (folders["templates"] / name).write_text(text, encoding="utf-8")
    (folders["selftest"] / "planted").write_bytes(b"an input that makes the selftest target crash")
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write models/, tokenizers/ and templates/ into")
    args = parser.parse_args()
    for target, folder in write_corpora(args.root).items():
        files = sorted(folder.iterdir())
        print(f"{target}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes in {folder}")


if __name__ == "__main__":
    main()
