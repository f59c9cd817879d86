"""One exception hierarchy for the whole engine."""


class BitNetError(Exception):
    """Base class of every error the engine raises on purpose."""


class GGUFError(BitNetError, ValueError):
    """A GGUF file is malformed, truncated, hostile or uses something unsupported."""


class ModelError(BitNetError, ValueError):
    """Model metadata or tensors are missing or inconsistent with each other."""


class TokenizerError(BitNetError, ValueError):
    """The tokenizer cannot be rebuilt from the file, or input cannot be tokenized."""


class KernelError(BitNetError, RuntimeError):
    """A kernel variant was requested that this CPU or build cannot run."""


class ContextOverflowError(BitNetError, ValueError):
    """A prompt (plus requested tokens) does not fit in the model's context, or a context not in memory."""


class ConversionError(BitNetError, ValueError):
    """A Hugging Face checkpoint cannot be converted (missing file, bad shape, NaN, ...)."""


def non_finite_logit(pos: int, detail: str = "") -> ModelError:
    """The error of a forward pass that produced a NaN or infinite logit at position `pos` (every backend and the
    batch scheduler raise this one): non-finite weights never become finite again on the residual stream."""
    return ModelError(f"the forward pass produced a non-finite logit{detail} at position {pos}: the model file's "
                      "weights hold NaN/Inf or overflow")

