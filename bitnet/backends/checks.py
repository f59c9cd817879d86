"""What every backend checks before it evaluates anything, written once for both (numpy-free: the browser build
runs the CPU backend): token ids, positions, the row layout of a batch step, and the size of the internal step.

A backend calls these on its entry points and trusts their result inside (the CPU's compiled loops run without
bounds checks): a violation is a ValueError naming what is wrong, never a crash.
"""
from __future__ import annotations

from collections.abc import Sequence

# Tokens evaluated per pass through the layers: bounds the scratch memory of long prompts (both backends).
UBATCH = 256


def check_tokens(tokens: Sequence[int], n_vocab: int) -> None:
    if len(tokens) == 0:
        raise ValueError("forward needs at least one token")
    for i, t in enumerate(tokens):
        if not 0 <= t < n_vocab:
            raise ValueError(f"token id {t} at index {i} is outside the vocabulary (0..{n_vocab - 1})")


def check_span(pos0: int, n: int, n_ctx: int) -> None:
    """Positions pos0 .. pos0 + n - 1 of one sequence fit in its context of n_ctx."""
    if pos0 < 0 or pos0 + n > n_ctx:
        raise ValueError(f"positions {pos0}..{pos0 + n - 1} do not fit in the context of {n_ctx} tokens")


def batch_runs(positions: Sequence[int], owners: Sequence[int], context_sizes: Sequence[int],
               logit_rows: Sequence[int], n_tokens: int) -> list[tuple[int, int, int]]:
    """The layout of one batch step, checked: row r evaluates token r at positions[r] in context owners[r]; the
    rows of one context are one run of consecutive positions inside it; logit_rows are increasing row indices.
    Returns the runs as (context, first row, end row)."""
    n = n_tokens
    if len(positions) != n or len(owners) != n:
        raise ValueError(f"{n} tokens need {n} positions and {n} owners, got {len(positions)} and {len(owners)}")
    runs: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    r = 0
    while r < n:
        o = owners[r]
        if not 0 <= o < len(context_sizes):
            raise ValueError(f"row {r} belongs to context {o}, but there are {len(context_sizes)}")
        if o in seen:
            raise ValueError(f"the rows of context {o} are not one contiguous run")
        seen.add(o)
        end = r + 1
        while end < n and owners[end] == o:
            if positions[end] != positions[end - 1] + 1:
                raise ValueError(f"rows {end - 1} and {end} of context {o} are not consecutive positions")
            end += 1
        for p in (positions[r], positions[end - 1]):
            if not 0 <= p < context_sizes[o]:
                raise ValueError(f"position {p} does not fit in the context of {context_sizes[o]} tokens")
        runs.append((o, r, end))
        r = end
    for i, w in enumerate(logit_rows):
        if not 0 <= w < n or (i > 0 and w <= logit_rows[i - 1]):
            raise ValueError("logit_rows must be increasing row indices")
    return runs


def check_logits_out(shape: tuple[int, ...] | None, rows: int, n_vocab: int) -> None:
    """logits_out (its shape, or None when absent) for `rows` rows of logits."""
    if shape is None:
        if rows:
            raise ValueError("logit_rows given without logits_out")
        return
    if tuple(shape) != (rows, n_vocab):
        raise ValueError(f"logits_out has the wrong shape: expected ({rows}, {n_vocab})")


__all__ = ["UBATCH", "batch_runs", "check_logits_out", "check_span", "check_tokens"]
