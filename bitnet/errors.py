"""One exception hierarchy for the whole engine, and the one way it reports a fallback (a warning, or an error
under BITNET_STRICT_MODE=1)."""
import warnings

from bitnet import settings


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


class StrictModeError(BitNetError, ValueError):
    """BITNET_STRICT_MODE=1 refused a fallback the engine would otherwise take with a warning."""


class FallbackWarning(UserWarning):
    """The engine took a fallback: it guessed or searched where the input did not say (BITNET_STRICT_MODE=1 makes
    each of these an error)."""


def fallback(message: str) -> None:
    """Report a fallback the engine is about to take: a FallbackWarning (shown once per place, as warnings are),
    or, under BITNET_STRICT_MODE=1, a StrictModeError instead of taking it."""
    if settings.strict_mode():
        raise StrictModeError(f"BITNET_STRICT_MODE=1 refuses a fallback: {message}")
    warnings.warn(message, FallbackWarning, stacklevel=3)


def non_finite_logit(pos: int, detail: str = "") -> ModelError:
    """The error of a forward pass that produced a NaN or infinite logit at position `pos` (every backend and the
    batch scheduler raise this one): non-finite weights never become finite again on the residual stream."""
    return ModelError(f"the forward pass produced a non-finite logit{detail} at position {pos}: the model file's "
                      "weights hold NaN/Inf or overflow")

