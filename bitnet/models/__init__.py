"""Supported architectures: one small module each; this registry maps `general.architecture` to them."""
from __future__ import annotations

from bitnet.errors import ModelError
from bitnet.gguf import GGMLType
from bitnet.models import bitnet, bitnet_b158, llama
from bitnet.models.backend import DEVICES, resolve_device
from bitnet.models.common import ArchSpec, BoundMatrix, HParams, bind_weights, read_hparams

ARCHITECTURES: dict[str, ArchSpec] = {
    alias: module.SPEC for module in (bitnet_b158, bitnet, llama) for alias in module.ALIASES
}


def arch_spec(reader) -> tuple[str, ArchSpec]:
    arch = reader.metadata.get("general.architecture")
    if arch is None:
        raise ModelError("missing metadata key 'general.architecture'")
    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise ModelError(f"unsupported architecture '{arch}' (supported: {', '.join(sorted(ARCHITECTURES))})")
    return arch, spec


LM_HEADS = ("exact", "q8_0")


def build_transformer(reader, lm_head: str = "exact", n_threads: int | None = None, widen_head_below: int = 0,
                      ternary: str | None = None, device: str = "cpu", max_ctx: int | None = None):
    """Validate the file's graph and bind its weights: returns (backend, HParams, ArchSpec), the backend being
    the CPU Transformer or, with device="cuda", the CudaTransformer (bitnet.models.backend) with the weights
    uploaded to the GPU and its RoPE table sized for contexts of up to max_ctx positions (default: the file's
    training context).

    lm_head "q8_0": the LM head (the tied F16 token embedding, or output.weight) is re-encoded as Q8_0 in memory
    at load (0.66 GB -> 0.35 GB read per token for the 2B model) and computed with int8 dot products on
    Q8-quantized activations: faster, not exact (see benchmarks/README.md for its perplexity cost).

    widen_head_below: an exact F16 head whose F32 copy is smaller than this many bytes is widened to F32 once at
    load (the same values, no per-token half-to-float conversion: the browser build uses it, SIMD128 having no
    such instruction; the SIMD128 F32 kernel gives the F16 kernel's results bit for bit).

    ternary: "mac" or "lut", the kernels the I2_S layers run with; None: BITNET_KERNEL or the choice measured
    for this CPU (bitnet.kernels.choice). "lut" repacks them at load into the LUT form (same size) and drops the
    file's pages of them; both give the same bits."""
    from bitnet.models._forward import Transformer

    if lm_head not in LM_HEADS:
        raise ValueError(f"lm_head must be one of {', '.join(LM_HEADS)}, got {lm_head!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    arch, spec = arch_spec(reader)
    hp = read_hparams(reader, arch)
    weights = bind_weights(reader, spec, hp)
    if device == "cuda":
        from bitnet.cuda.forward import CudaTransformer

        if lm_head == "q8_0":
            weights["output"] = _int8_head(weights["output"], n_threads)
        return (CudaTransformer(**weights, head_int8=lm_head == "q8_0", max_ctx=max_ctx or hp.n_ctx_train), hp,
                spec)
    if lm_head == "q8_0":
        head = weights["output"]
        weights["output"] = _int8_head(head, n_threads)
        if weights["output"].data is not head.data:
            # The float head was read once to re-encode it; only the token embedding's few rows per step are
            # read from it again (when tied), so its pages need not stay resident (0.66 GB for the 2B model).
            reader.release_pages(head.name)
    elif weights["output"].ggml_type == GGMLType.F16 and 4 * hp.n_vocab * hp.n_embd < widen_head_below:
        weights["output"] = _widened_head(weights["output"])
    if any(m.ggml_type == GGMLType.I2_S for layer in weights["layers"] for m in _matrices(layer)):
        if ternary is None:
            from bitnet.kernels.choice import ternary_path

            ternary = ternary_path(n_threads or 1)
        if ternary not in TERNARY_KERNELS:
            raise ValueError(f"ternary must be one of {', '.join(TERNARY_KERNELS)}, got {ternary!r}")
        if ternary == "lut":
            _repack_lut(reader, weights["layers"], n_threads)
    return Transformer(**weights, head_int8=lm_head == "q8_0"), hp, spec


TERNARY_KERNELS = ("mac", "lut")


def _matrices(layer: dict) -> list[BoundMatrix]:
    return [m for m in layer.values() if isinstance(m, BoundMatrix)]


def _repack_lut(reader, layers: list[dict], n_threads: int | None) -> None:
    """Every I2_S matrix of the layers in the LUT form, in place; the file's pages of them are released. Calls
    the compiled packer directly (the browser build has no numpy); bind_weights has already checked that each
    matrix's bytes cover its M x K codes."""
    from dataclasses import replace

    from bitnet.kernels import _kernels

    for layer in layers:
        for key, m in list(layer.items()):
            if isinstance(m, BoundMatrix) and m.ggml_type == GGMLType.I2_S:
                packed = bytearray(_kernels.lut_bytes(m.K, m.M))
                _kernels.lut_pack(m.data, m.K, m.M, packed, n_threads)
                layer[key] = replace(m, name=f"{m.name} (LUT form)", data=memoryview(packed), lut=True)
                reader.release_pages(m.name)


def _widened_head(head: BoundMatrix) -> BoundMatrix:
    from array import array

    from bitnet.kernels import GGML_F32, _kernels

    out = array("f", bytes(4 * head.K * head.M))
    _kernels.f16_to_f32(memoryview(head.data).cast("H"), out)
    return BoundMatrix(f"{head.name} (widened to F32)", GGML_F32, head.K, head.M, memoryview(out).cast("B"), 1.0)


def _int8_head(head: BoundMatrix, n_threads: int | None) -> BoundMatrix:
    from bitnet.kernels import GGML_Q8_0, encode_q80

    if head.K % 32:
        raise ModelError(f"the int8 LM head needs n_embd to be a multiple of 32, got {head.K}")
    data = head.data if head.ggml_type == GGML_Q8_0 else encode_q80(head.data, head.ggml_type, head.K, head.M,
                                                                    n_threads)
    return BoundMatrix(f"{head.name} (Q8_0, int8 head)", GGML_Q8_0, head.K, head.M, data, 1.0)


__all__ = ["ARCHITECTURES", "DEVICES", "LM_HEADS", "TERNARY_KERNELS", "ArchSpec", "HParams", "arch_spec",
           "build_transformer", "resolve_device"]
