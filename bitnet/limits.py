"""The checks every generation surface makes on its inputs, with one wording: the engine (`bitnet.engine`) and
the browser build (`bitnet.web`, which runs without numpy) both use these."""
from __future__ import annotations

from collections.abc import Iterable

from bitnet.errors import ContextOverflowError, ModelError

__all__ = ["check_max_tokens", "check_tokenizer_covers_head", "generation_budget", "prompt_token_ids"]


def check_max_tokens(max_tokens: object) -> int:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative integer, got {max_tokens!r}")
    return max_tokens


def prompt_token_ids(ids: Iterable[int], n_vocab: int) -> list[int]:
    """A prompt given as token ids, as plain ints, each checked against the vocabulary."""
    ids = [int(t) for t in ids]
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{n_vocab - 1})")
    return ids


def generation_budget(prompt_ids: list[int], n_ctx: int, max_tokens: int) -> int:
    """How many tokens may follow the prompt: max_tokens, or fewer where the context ends first."""
    if not prompt_ids:
        raise ValueError("the prompt is empty (no tokens)")
    if len(prompt_ids) >= n_ctx:
        raise ContextOverflowError(f"prompt of {len(prompt_ids)} tokens does not fit in the context of {n_ctx} tokens")
    return min(max_tokens, n_ctx - len(prompt_ids))


def check_tokenizer_covers_head(vocab_size: int, n_vocab: int) -> None:
    """The head would score ids that have no text; refuse at load rather than fail mid-generation."""
    if vocab_size < n_vocab:
        raise ModelError(f"the tokenizer has {vocab_size} tokens but the model's head scores {n_vocab}: the "
                         "vocabulary is smaller than the LM head")
