"""Token sampling: a compiled, GIL-free sampler with its own seeded RNG (see `Sampler`)."""
from bitnet.sampling._sampler import Sampler

__all__ = ["Sampler"]
