"""Supported architectures: one small module each; this registry maps `general.architecture` to them."""
from __future__ import annotations

from bitnet.errors import ModelError
from bitnet.models import bitnet, bitnet_b158, llama
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


def bind(reader) -> tuple[dict, HParams, ArchSpec]:
    """Validate the file's graph and bind its weights: (the weights as BoundMatrix / float32 views of the file,
    HParams, ArchSpec). What a backend is built from (bitnet.backends.build)."""
    arch, spec = arch_spec(reader)
    hp = read_hparams(reader, arch)
    return bind_weights(reader, spec, hp), hp, spec


__all__ = ["ARCHITECTURES", "ArchSpec", "BoundMatrix", "HParams", "arch_spec", "bind", "read_hparams"]
