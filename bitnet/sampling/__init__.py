"""Token sampling: a compiled, GIL-free sampler with its own seeded RNG (see `Sampler`)."""
from bitnet.sampling._sampler import Sampler, first_non_finite

__all__ = ["Sampler", "first_non_finite"]
