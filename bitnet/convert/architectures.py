"""What each supported Hugging Face architecture becomes in GGUF: arch name, hyperparameters, tensor plan.

The plan lists every GGUF tensor with the checkpoint tensor it comes from, its expected Hugging Face shape
(from config.json) and its role (ternary linear, embedding, LM head, norm). The converter checks the
checkpoint against it before writing anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitnet.errors import ConversionError
from bitnet.models import bitnet, bitnet_b158, llama
from bitnet.models.common import ArchSpec as GraphSpec

# Roles of tensors in the plan.
TERNARY, EMBEDDING, HEAD, NORM = "ternary", "embedding", "head", "norm"


@dataclass(frozen=True)
class ArchSpec:
    """A Hugging Face architecture and the GGUF graph it converts to. The graph's own facts (sub-norms, the FFN
    activation, the RoPE style, a separate LM head) are the engine's (bitnet.models), read from `graph`; only
    what the checkpoint side needs is stated here."""
    hf_name: str          # config.json "architectures" entry
    graph: GraphSpec      # the engine's description of the graph this converts to
    default_rope_theta: float
    default_rms_eps: float
    requires_bitnet_quant: bool   # a llama checkpoint is only ternary when its config says so

    @property
    def gguf_arch(self) -> str:   # general.architecture written by default
        return self.graph.name

    @property
    def sub_norms(self) -> bool:  # BitNet's extra RMSNorms before o_proj and down_proj
        return self.graph.sub_norms

    @property
    def permute_qk(self) -> bool:  # llama.cpp's NORM-style rope wants Q/K rows interleaved per head
        return not self.graph.rope_neox

    @property
    def hidden_act(self) -> str:  # the FFN activation the GGUF graph hard-codes
        return "silu" if self.graph.ffn_silu else "relu2"

    @property
    def separate_output(self) -> bool:  # the graph can take its own output.weight (else LM head = embedding)
        return self.graph.separate_output


ARCHITECTURES: dict[str, ArchSpec] = {
    "BitNetForCausalLM": ArchSpec("BitNetForCausalLM", bitnet_b158.SPEC, default_rope_theta=500000.0,
                                  default_rms_eps=1e-5, requires_bitnet_quant=False),
    "BitnetForCausalLM": ArchSpec("BitnetForCausalLM", bitnet.SPEC, default_rope_theta=10000.0,
                                  default_rms_eps=1e-5, requires_bitnet_quant=False),
    "LlamaForCausalLM": ArchSpec("LlamaForCausalLM", llama.SPEC, default_rope_theta=10000.0, default_rms_eps=1e-6,
                                 requires_bitnet_quant=True),
}
# Other spellings of the same graph that --arch-name may select (the reference engine writes "bitnet-25"): the
# engine's own aliases.
ARCH_ALIASES = {module.SPEC.name: module.ALIASES for module in (bitnet_b158, bitnet, llama) if len(module.ALIASES) > 1}

# Hugging Face layer-relative names -> GGUF names. Sub-norm names differ between the transformers BitNet
# port and 1bitLLM's remote code; both are accepted.
LINEARS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
NORMS = {"attn_norm": ("input_layernorm",), "ffn_norm": ("post_attention_layernorm",)}
SUB_NORMS = {"attn_sub_norm": ("self_attn.attn_sub_norm", "self_attn.inner_attn_ln"),
             "ffn_sub_norm": ("mlp.ffn_sub_norm", "mlp.ffn_layernorm")}
# Checkpoint tensors that carry nothing the GGUF needs.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass(frozen=True)
class HParams:
    vocab_size: int
    hidden: int
    ffn: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rope_theta: float
    rms_eps: float
    tied: bool


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    hf_candidates: tuple[str, ...]    # first one present in the checkpoint is used
    hf_shape: tuple[int, ...]         # [out, in] for matrices, as stored by Hugging Face
    role: str
    permute_heads: int = 0            # >0: permute rows for NORM rope with this many heads


def spec_for(config: dict[str, Any]) -> ArchSpec:
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs:
        raise ConversionError("config.json has no 'architectures' list; known architectures: "
                              + ", ".join(ARCHITECTURES))
    for name in archs:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise ConversionError(f"unsupported architecture {', '.join(map(str, archs))}; known architectures: "
                          + ", ".join(f"{k} (-> {v.gguf_arch})" for k, v in ARCHITECTURES.items()))


def _int(config: dict[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ConversionError(f"config.json lacks {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConversionError(f"config.json: {key!r} must be a positive integer, got {value!r}")
    return value


def _rope_theta(config: dict[str, Any], default: float) -> float:
    # transformers >= 5 writes rope settings as "rope_parameters"; older versions use rope_theta/rope_scaling.
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    for block in (params, scaling):
        kind = block.get("rope_type", block.get("type", "default"))
        if kind not in ("default", None) and not (kind == "linear" and block.get("factor", 1.0) == 1.0):
            raise ConversionError(f"config.json: rope scaling {block!r} is not supported (plain RoPE only)")
    theta = params.get("rope_theta", config.get("rope_theta", default))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise ConversionError(f"config.json: rope_theta must be a positive number, got {theta!r}")
    return float(theta)


def read_hparams(spec: ArchSpec, config: dict[str, Any]) -> HParams:
    act = config.get("hidden_act", spec.hidden_act)
    if act != spec.hidden_act:
        raise ConversionError(f"config.json: hidden_act {act!r} does not match the {spec.gguf_arch} graph, "
                              f"which uses {spec.hidden_act!r}")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise ConversionError(f"config.json: {flag}=true is not supported (the GGUF graph has no biases)")
    if spec.requires_bitnet_quant:
        qc = config.get("quantization_config") or {}
        if qc.get("quant_method") != "bitnet":
            raise ConversionError(f"{spec.hf_name} without quantization_config.quant_method = 'bitnet' is "
                                  "not a ternary model; the converter only writes ternary weights")
    hidden = _int(config, "hidden_size")
    n_heads = _int(config, "num_attention_heads")
    n_kv = _int(config, "num_key_value_heads", n_heads)
    head_dim = _int(config, "head_dim", hidden // n_heads)
    if n_heads % n_kv:
        raise ConversionError(f"config.json: num_attention_heads {n_heads} is not a multiple of "
                              f"num_key_value_heads {n_kv}")
    if spec.permute_qk and head_dim % 2:
        raise ConversionError(f"config.json: head_dim {head_dim} is odd; RoPE needs an even head dimension")
    eps = config.get("rms_norm_eps", spec.default_rms_eps)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise ConversionError(f"config.json: rms_norm_eps must be a positive number, got {eps!r}")
    return HParams(
        vocab_size=_int(config, "vocab_size"),
        hidden=hidden,
        ffn=_int(config, "intermediate_size"),
        n_layers=_int(config, "num_hidden_layers"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        context_length=_int(config, "max_position_embeddings", 2048),
        rope_theta=_rope_theta(config, spec.default_rope_theta),
        rms_eps=float(eps),
        tied=bool(config.get("tie_word_embeddings", False)),
    )


def tensor_plan(spec: ArchSpec, hp: HParams, has_lm_head: bool) -> list[PlannedTensor]:
    """Every GGUF tensor in writing order. An untied model without lm_head.weight falls back to the
    embedding as LM head, as llama.cpp does when output.weight is absent."""
    if not hp.tied and has_lm_head and not spec.separate_output:
        raise ConversionError(f"config.json: tie_word_embeddings is false and lm_head.weight exists, but the "
                              f"{spec.gguf_arch} graph always uses the token embedding as LM head")
    q_out, kv_out = hp.n_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim
    linear_shapes = {
        "attn_q": (q_out, hp.hidden), "attn_k": (kv_out, hp.hidden), "attn_v": (kv_out, hp.hidden),
        "attn_output": (hp.hidden, q_out), "ffn_gate": (hp.ffn, hp.hidden), "ffn_up": (hp.ffn, hp.hidden),
        "ffn_down": (hp.hidden, hp.ffn),
    }
    sub_norm_shapes = {"attn_sub_norm": (q_out,), "ffn_sub_norm": (hp.ffn,)}
    plan = [PlannedTensor("token_embd.weight", ("model.embed_tokens.weight",), (hp.vocab_size, hp.hidden),
                          EMBEDDING)]
    for i in range(hp.n_layers):
        hf, gg = f"model.layers.{i}.", f"blk.{i}."
        plan.append(PlannedTensor(gg + "attn_norm.weight", (hf + "input_layernorm.weight",), (hp.hidden,),
                                  NORM))
        for name, hf_name in LINEARS.items():
            heads = 0
            if spec.permute_qk and name in ("attn_q", "attn_k"):
                heads = hp.n_heads if name == "attn_q" else hp.n_kv_heads
            plan.append(PlannedTensor(gg + name + ".weight", (hf + hf_name + ".weight",), linear_shapes[name],
                                      TERNARY, heads))
        if spec.sub_norms:
            for name, hf_names in SUB_NORMS.items():
                plan.append(PlannedTensor(gg + name + ".weight", tuple(hf + n + ".weight" for n in hf_names),
                                          sub_norm_shapes[name], NORM))
        plan.append(PlannedTensor(gg + "ffn_norm.weight", (hf + "post_attention_layernorm.weight",),
                                  (hp.hidden,), NORM))
    plan.append(PlannedTensor("output_norm.weight", ("model.norm.weight",), (hp.hidden,), NORM))
    if not hp.tied and has_lm_head:
        plan.append(PlannedTensor("output.weight", ("lm_head.weight",), (hp.vocab_size, hp.hidden), HEAD))
    return plan


def metadata(arch: str, hp: HParams) -> list[tuple[str, Any, str]]:
    """The `<arch>.*` hyperparameter keys as (key, value, kind) with kind "u32" or "f32"."""
    keys: list[tuple[str, Any, str]] = [
        (f"{arch}.vocab_size", hp.vocab_size, "u32"),
        (f"{arch}.context_length", hp.context_length, "u32"),
        (f"{arch}.embedding_length", hp.hidden, "u32"),
        (f"{arch}.block_count", hp.n_layers, "u32"),
        (f"{arch}.feed_forward_length", hp.ffn, "u32"),
        (f"{arch}.rope.dimension_count", hp.head_dim, "u32"),
        (f"{arch}.attention.head_count", hp.n_heads, "u32"),
        (f"{arch}.attention.head_count_kv", hp.n_kv_heads, "u32"),
        (f"{arch}.attention.layer_norm_rms_epsilon", hp.rms_eps, "f32"),
        (f"{arch}.rope.freq_base", hp.rope_theta, "f32"),
    ]
    if hp.head_dim * hp.n_heads != hp.hidden:
        # llama.cpp derives the head size from embedding_length / head_count unless told otherwise.
        keys += [(f"{arch}.attention.key_length", hp.head_dim, "u32"),
                 (f"{arch}.attention.value_length", hp.head_dim, "u32")]
    return keys
