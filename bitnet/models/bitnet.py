"""1bitLLM BitNet b1.58 (`bitnet`: bitnet_b1_58-large / -3B): the 2B4T graph with a SiLU-gated FFN."""
from bitnet.models.common import ArchSpec

SPEC = ArchSpec(name="bitnet", ffn_silu=True, sub_norms=True, rope_neox=True, separate_output=True)
ALIASES = ("bitnet",)
