"""The CPU backend: the compiled forward pass (`_forward.pyx`) over the ISA kernels (`kernels/`: scalar, AVX2,
AVX-512 VNNI, NEON and WebAssembly SIMD128 bodies behind one signature, chosen at run time), built from the
weights bitnet.models binds (see bitnet.backends for the contract both backends keep)."""
from __future__ import annotations

from dataclasses import replace

from bitnet.gguf import GGMLType
from bitnet.models.common import BoundMatrix, HParams

TERNARY_KERNELS = ("mac", "lut")


def build(weights: dict, hp: HParams, reader, head_int8: bool, n_threads: int | None, widen_head_below: int = 0,
          ternary: str | None = None, cache_type: str = "f16"):
    """The CPU Transformer over `weights` (the head already re-encoded when head_int8).

    widen_head_below: an exact F16 head whose F32 copy is smaller than this many bytes is widened to F32 once at
    load (the same values, no per-token half-to-float conversion: the browser build uses it, SIMD128 having no
    such instruction; the SIMD128 F32 kernel gives the F16 kernel's results bit for bit).

    ternary: "mac" or "lut", the kernels the I2_S layers run with; None: BITNET_KERNEL or the choice measured
    for this CPU (kernels/choice.py). "lut" repacks them at load into the LUT form (same size) and drops the
    file's pages of them; both give the same bits."""
    from bitnet.backends.cpu._forward import Transformer

    if not head_int8 and weights["output"].ggml_type == GGMLType.F16 and \
            4 * hp.n_vocab * hp.n_embd < widen_head_below:
        weights["output"] = _widened_head(weights["output"])
    if any(m.ggml_type == GGMLType.I2_S for layer in weights["layers"] for m in _matrices(layer)):
        if ternary is None:
            from bitnet.backends.cpu.kernels.choice import ternary_path

            ternary = ternary_path(n_threads or 1)
        if ternary not in TERNARY_KERNELS:
            raise ValueError(f"ternary must be one of {', '.join(TERNARY_KERNELS)}, got {ternary!r}")
        if ternary == "lut":
            _repack_lut(reader, weights["layers"], n_threads)
    return Transformer(**weights, head_int8=head_int8, n_threads=n_threads or 1, cache_type=cache_type)


def _matrices(layer: dict) -> list[BoundMatrix]:
    return [m for m in layer.values() if isinstance(m, BoundMatrix)]


def _repack_lut(reader, layers: list[dict], n_threads: int | None) -> None:
    """Every I2_S matrix of the layers in the LUT form, in place; the file's pages of them are released. Calls
    the compiled packer directly (the browser build has no numpy); bind_weights has already checked that each
    matrix's bytes cover its M x K codes."""
    from bitnet.backends.cpu.kernels import _kernels

    for layer in layers:
        for key, m in list(layer.items()):
            if isinstance(m, BoundMatrix) and m.ggml_type == GGMLType.I2_S:
                packed = bytearray(_kernels.lut_bytes(m.K, m.M))
                _kernels.lut_pack(m.data, m.K, m.M, packed, n_threads)
                layer[key] = replace(m, name=f"{m.name} (LUT form)", data=memoryview(packed), lut=True)
                reader.release_pages(m.name)


def _widened_head(head: BoundMatrix) -> BoundMatrix:
    from array import array

    from bitnet.backends.cpu.kernels import _kernels

    out = array("f", bytes(4 * head.K * head.M))
    _kernels.f16_to_f32(memoryview(head.data).cast("H"), out)
    return BoundMatrix(f"{head.name} (widened to F32)", int(GGMLType.F32), head.K, head.M,
                       memoryview(out).cast("B"), 1.0)


__all__ = ["TERNARY_KERNELS", "build"]
