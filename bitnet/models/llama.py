"""LLaMA with ternary weights (`llama`: Llama3-8B-1.58, Falcon3 1.58-bit): SwiGLU, no sub-norms, NORM RoPE
(the converter permutes Q/K for it, as llama.cpp's does), and its own `output.weight` unless tied."""
from bitnet.models.common import ArchSpec

SPEC = ArchSpec(name="llama", ffn_silu=True, sub_norms=False, rope_neox=False, separate_output=True)
ALIASES = ("llama",)
