"""Supported architectures: one small module each; this registry maps `general.architecture` to them."""
from __future__ import annotations

from bitnet.errors import ModelError
from bitnet.models import bitnet, bitnet_b158, llama
from bitnet.models.common import ArchSpec, HParams, bind_weights, read_hparams

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


def build_transformer(reader):
    """Validate the file's graph and bind its weights: returns (Transformer, HParams, ArchSpec)."""
    from bitnet.models._forward import Transformer

    arch, spec = arch_spec(reader)
    hp = read_hparams(reader, arch)
    return Transformer(**bind_weights(reader, spec, hp)), hp, spec


__all__ = ["ARCHITECTURES", "ArchSpec", "HParams", "arch_spec", "build_transformer"]
