"""Reading hyperparameters from GGUF metadata and binding weight tensors for the compiled forward pass.

Every check here names the metadata key or tensor at fault (ModelError), so a broken or unusual file fails at
load time with a useful message instead of computing garbage.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from bitnet.errors import ModelError
from bitnet.gguf import GGMLType, GGUFReader
from bitnet.gguf.constants import i2s_code_bytes

TERNARY_TYPES = (GGMLType.I2_S, GGMLType.TQ2_0, GGMLType.TQ1_0)
FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0)


@dataclass(frozen=True)
class ArchSpec:
    """What distinguishes one supported architecture's graph from another's."""

    name: str
    ffn_silu: bool        # SiLU-gated FFN (else relu² as in BitNet b1.58 2B4T)
    sub_norms: bool       # attn_sub_norm before Wo and ffn_sub_norm before Wdown
    rope_neox: bool       # NEOX rotation (pairs i, i + d/2) rather than NORM (adjacent pairs)
    separate_output: bool  # may carry its own output.weight (else the LM head is the tied token embedding)


@dataclass(frozen=True)
class HParams:
    arch: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    rope_dim: int
    rope_base: float
    eps: float
    n_ctx_train: int

    def as_dims(self, spec: ArchSpec) -> dict:
        return dict(n_embd=self.n_embd, n_layer=self.n_layer, n_head=self.n_head, n_head_kv=self.n_head_kv,
                    head_dim=self.head_dim, n_ff=self.n_ff, n_vocab=self.n_vocab, rope_dim=self.rope_dim,
                    rope_base=self.rope_base, eps=self.eps, rope_neox=spec.rope_neox, ffn_silu=spec.ffn_silu)


@dataclass(frozen=True)
class BoundMatrix:
    """A weight matrix [M rows of K] as the forward pass reads it: raw bytes in the mmap plus its type."""

    name: str
    ggml_type: int
    K: int
    M: int
    data: memoryview   # raw bytes, a zero-copy view of the mapping (or any uint8 buffer)
    wscale: float      # I2_S per-tensor scale (1.0 for other types)
    lut: bool = False  # I2_S repacked in the LUT form (the CPU backend's lut_pack) instead of the file's bytes


def _positive_int(md: dict, key: str, required: bool = True, default: int | None = None,
                  limit: int = 2**31) -> int:
    if key not in md:
        if required:
            raise ModelError(f"missing metadata key '{key}'")
        return default
    value = md[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > limit:
        raise ModelError(f"metadata key '{key}' must be a positive integer up to {limit}, got {value!r}")
    return value


def _positive_float(md: dict, key: str, required: bool = True, default: float | None = None) -> float:
    if key not in md:
        if required:
            raise ModelError(f"missing metadata key '{key}'")
        return default
    value = md[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(f"metadata key '{key}' must be a positive finite number, got {value!r}")
    return float(value)


def read_hparams(reader: GGUFReader, arch: str) -> HParams:
    md = reader.metadata
    p = f"{arch}."
    n_embd = _positive_int(md, p + "embedding_length")
    n_layer = _positive_int(md, p + "block_count")
    n_head = _positive_int(md, p + "attention.head_count")
    n_head_kv = _positive_int(md, p + "attention.head_count_kv", required=False, default=n_head)
    n_ff = _positive_int(md, p + "feed_forward_length")
    if n_embd % n_head:
        raise ModelError(f"'{p}embedding_length' ({n_embd}) is not a multiple of "
                         f"'{p}attention.head_count' ({n_head})")
    head_dim = _positive_int(md, p + "attention.key_length", required=False, default=n_embd // n_head)
    if n_head % n_head_kv:
        raise ModelError(f"'{p}attention.head_count' ({n_head}) is not a multiple of "
                         f"'{p}attention.head_count_kv' ({n_head_kv})")
    rope_dim = _positive_int(md, p + "rope.dimension_count", required=False, default=head_dim)
    if rope_dim != head_dim:
        raise ModelError(f"'{p}rope.dimension_count' ({rope_dim}) differs from the head dimension ({head_dim}); "
                         "partial rotary embeddings are not supported")
    if head_dim % 2:
        raise ModelError(f"head dimension {head_dim} must be even for rotary embeddings")
    eps = _positive_float(md, p + "attention.layer_norm_rms_epsilon")
    rope_base = _positive_float(md, p + "rope.freq_base", required=False, default=10000.0)
    # Only a default: the context a session allocates is capped (engine.MAX_DEFAULT_CTX) or asked for, so any
    # GGUF integer is a defined value here (a file claiming 2**40 positions still loads).
    n_ctx_train = _positive_int(md, p + "context_length", required=False, default=4096, limit=2**64 - 1)
    if "token_embd.weight" not in reader.tensors:
        raise ModelError("missing tensor 'token_embd.weight'")
    embd_vocab = reader.tensors["token_embd.weight"].dims[1] if len(reader.tensors["token_embd.weight"].dims) > 1 \
        else 0
    n_vocab = _positive_int(md, p + "vocab_size", required=False, default=0) if p + "vocab_size" in md else 0
    if not n_vocab:
        tokens = md.get("tokenizer.ggml.tokens")
        n_vocab = len(tokens) if isinstance(tokens, list) and tokens else embd_vocab
    if n_vocab != embd_vocab:
        raise ModelError(f"vocabulary size {n_vocab} disagrees with 'token_embd.weight' rows ({embd_vocab})")
    return HParams(arch=arch, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
                   head_dim=head_dim, n_ff=n_ff, n_vocab=n_vocab, rope_dim=rope_dim, rope_base=rope_base,
                   eps=eps, n_ctx_train=n_ctx_train)


def bind_matrix(reader: GGUFReader, name: str, K: int, M: int, allowed=TERNARY_TYPES + FLOAT_TYPES) -> BoundMatrix:
    info = reader.tensors.get(name)
    if info is None:
        raise ModelError(f"missing tensor '{name}'")
    if tuple(info.dims) != (K, M):
        raise ModelError(f"tensor '{name}' has shape {list(info.dims)} (ne0 first), expected [{K}, {M}]")
    if info.ggml_type not in allowed:
        raise ModelError(f"tensor '{name}' has type {GGMLType(info.ggml_type).name}, which this position "
                         f"does not support (expected one of {', '.join(GGMLType(t).name for t in allowed)})")
    data = reader.tensor_buffer(name)
    wscale = 1.0
    if info.ggml_type == GGMLType.I2_S:
        (wscale,) = struct.unpack_from("<f", data, i2s_code_bytes(K * M))
        if not math.isfinite(wscale):
            raise ModelError(f"tensor '{name}' has a non-finite I2_S scale ({wscale})")
    return BoundMatrix(name=name, ggml_type=int(info.ggml_type), K=K, M=M, data=data, wscale=wscale)


def bind_vector(reader: GGUFReader, name: str, n: int, required: bool = True) -> memoryview | None:
    info = reader.tensors.get(name)
    if info is None:
        if required:
            raise ModelError(f"missing tensor '{name}'")
        return None
    if tuple(info.dims) != (n,):
        raise ModelError(f"tensor '{name}' has shape {list(info.dims)}, expected [{n}]")
    if info.ggml_type != GGMLType.F32:
        raise ModelError(f"tensor '{name}' must be F32, got {GGMLType(info.ggml_type).name}")
    data = reader.tensor_buffer(name)
    # Norm weights are read by every token and scale values before they are quantized to int8, where a NaN or
    # an infinity would turn into plausible-looking integers; they are small, so check them all at load.
    values = struct.unpack_from(f"<{n}f", data)
    if not all(map(math.isfinite, values)):
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        raise ModelError(f"tensor '{name}' holds {len(bad)} non-finite value(s) (first at index {bad[0]})")
    return data


def bind_weights(reader: GGUFReader, spec: ArchSpec, hp: HParams) -> dict:
    """Check and bind every tensor of the graph; returns the keyword arguments of the compiled Transformer."""
    E, QD, KVD, F, V = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim, hp.n_ff, hp.n_vocab
    tok_embd = bind_matrix(reader, "token_embd.weight", E, V, allowed=FLOAT_TYPES)
    output = tok_embd
    if spec.separate_output and "output.weight" in reader.tensors:
        output = bind_matrix(reader, "output.weight", E, V, allowed=FLOAT_TYPES)
    layers = []
    for i in range(hp.n_layer):
        b = f"blk.{i}."
        layer = {
            "attn_norm": bind_vector(reader, b + "attn_norm.weight", E),
            "ffn_norm": bind_vector(reader, b + "ffn_norm.weight", E),
            "attn_q": bind_matrix(reader, b + "attn_q.weight", E, QD),
            "attn_k": bind_matrix(reader, b + "attn_k.weight", E, KVD),
            "attn_v": bind_matrix(reader, b + "attn_v.weight", E, KVD),
            "attn_output": bind_matrix(reader, b + "attn_output.weight", QD, E),
            "ffn_gate": bind_matrix(reader, b + "ffn_gate.weight", E, F),
            "ffn_up": bind_matrix(reader, b + "ffn_up.weight", E, F),
            "ffn_down": bind_matrix(reader, b + "ffn_down.weight", F, E),
        }
        if spec.sub_norms:
            layer["attn_sub_norm"] = bind_vector(reader, b + "attn_sub_norm.weight", QD)
            layer["ffn_sub_norm"] = bind_vector(reader, b + "ffn_sub_norm.weight", F)
        layers.append(layer)
    return dict(dims=hp.as_dims(spec), tok_embd=tok_embd, output=output,
                output_norm=bind_vector(reader, "output_norm.weight", E), layers=layers)
