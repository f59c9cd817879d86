"""Token sampling: a compiled, GIL-free sampler with its own seeded RNG (see `Sampler`)."""
from bitnet.sampling._sampler import Sampler, adjust_logits, first_non_finite, log_softmax_top

__all__ = ["Sampler", "adjust_logits", "first_non_finite", "log_softmax_top"]
