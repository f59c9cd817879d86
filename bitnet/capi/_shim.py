"""The Python half of libbitnet: what the C functions of include/bitnet.h call, with the GIL held.

Every function takes and returns plain objects that are easy to handle from C (bytes in, bytes out), so the
C side stays a thin marshalling layer and the semantics are exactly those of the Python API.
"""
from __future__ import annotations

import array
import gc
import sys

import bitnet
from bitnet.engine import CompletionStream, Model
from bitnet.errors import ContextOverflowError, GGUFError, ModelError
from bitnet.generation import SamplingParams

# Mirrors the BITNET_ERR_* values of include/bitnet.h (tests/integration/test_capi.py checks that they agree).
OK = 0
ERR_INVALID_ARGUMENT = -1
ERR_BUFFER_TOO_SMALL = -2
ERR_CONTEXT_OVERFLOW = -3
ERR_MODEL = -4
ERR_BUSY = -5
ERR_RUNTIME = -6
ERR_NO_MEMORY = -7


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8: {exc.reason} (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start})") from None


def load(path: bytes | None, n_threads: int | None, n_ctx: int | None) -> Model:
    # Paths are bytes in the filesystem encoding, as open() would take them in C.
    return bitnet.load(None if path is None else path.decode(sys.getfilesystemencoding(), "surrogateescape"),
                       n_threads=n_threads, n_ctx=n_ctx)


def _sampling(max_tokens: int, temperature: float, top_k: int, top_p: float, min_p: float,
              repeat_penalty: float, seed: int | None, json_schema: bytes | None,
              grammar: bytes | None) -> SamplingParams:
    """bitnet_gen_params (include/bitnet.h), field for field, as the engine's SamplingParams. json_schema and
    grammar are None for NULL; a schema or grammar that does not compile raises GrammarError (a ValueError)."""
    if json_schema is not None and grammar is not None:
        # Checked here, not left to SamplingParams.make, whose message also lists json_object, which C lacks.
        raise ValueError("json_schema and grammar are both set; give at most one")
    # Passed only when set, so an unconstrained call stays exactly the call the Python API makes.
    structured = {}
    if json_schema is not None:
        structured["json_schema"] = _text(json_schema, "json_schema")
    if grammar is not None:
        structured["grammar"] = _text(grammar, "grammar")
    return SamplingParams.make(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, **structured)


def generate(model: Model, prompt: bytes, *params) -> bytes:
    completion = model.generate(_text(prompt, "prompt"), params=_sampling(*params))
    return completion.text.encode("utf-8", "replace")


def stream(model: Model, prompt: bytes, *params) -> CompletionStream:
    """The C side iterates this and calls piece.encode() itself; it closes the stream when the callback stops."""
    return model.stream(_text(prompt, "prompt"), params=_sampling(*params))


def tokenize(model: Model, text: bytes) -> bytes:
    """Token ids as native int32 bytes, ready to memcpy."""
    return array.array("i", model.tokenize(_text(text, "text"))).tobytes()


def close(model: Model) -> None:
    model.close()


def collect() -> None:
    """Called by bitnet_model_free once the C side dropped its reference: a Model and its default Session refer
    to each other, so reference counting alone never frees them; collecting now returns the weights and the KV
    cache to the system when the C caller frees the model, not at some later collection."""
    gc.collect()


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The bitnet.h error code and the message for an exception raised by one of the functions above."""
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        return ERR_NO_MEMORY, message
    if isinstance(exc, ContextOverflowError):
        return ERR_CONTEXT_OVERFLOW, message
    if isinstance(exc, (GGUFError, ModelError, OSError)):
        return ERR_MODEL, message
    # TokenizerError, bad parameters, invalid UTF-8, a schema or grammar that does not compile (GrammarError)
    if isinstance(exc, (ValueError, TypeError)):
        return ERR_INVALID_ARGUMENT, message
    return ERR_RUNTIME, message
