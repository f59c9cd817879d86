"""BitNet b1.58 2B4T (`bitnet-b1.58`, also written `bitnet-25`): relu² FFN, sub-norms, NEOX RoPE, tied head."""
from bitnet.models.common import ArchSpec

SPEC = ArchSpec(name="bitnet-b1.58", ffn_silu=False, sub_norms=True, rope_neox=True, separate_output=False)
ALIASES = ("bitnet-b1.58", "bitnet-25")
