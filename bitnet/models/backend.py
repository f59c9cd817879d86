"""The boundary between the model graph and where it runs.

Architectures, weight binding and hyperparameters (bitnet.models) are shared; the forward pass has two
implementations behind the small interface below: the CPU's compiled one (bitnet.models._forward.Transformer)
and the GPU's (bitnet.cuda.forward.CudaTransformer). Sessions, sampling, the engine, the CLI, the server and
the C ABI see only this interface, so none of them changes per backend.
"""
from __future__ import annotations

from typing import Any, Protocol

from bitnet import settings

DEVICES = ("cpu", "cuda")


class Backend(Protocol):
    n_vocab: int
    head_type: int          # the ggml type the LM head is computed from
    device_name: str        # "cpu", or the GPU's name

    def new_context(self, n_ctx: int) -> Any:
        """A sequence's KV cache for n_ctx positions (in host or device memory). Its `threads_used` says how
        many threads the last `forward` or `greedy` step in it actually ran on (a `forward_batch` records into
        the workspace it was given instead)."""

    def new_workspace(self) -> Any:
        """Scratch for forward_batch (None where the backend keeps its own)."""

    def forward(self, ctx: Any, tokens, pos0: int, logits_out, all_logits: bool, n_threads: int) -> None:
        """Evaluate `tokens` at positions pos0.. into ctx's cache; logits of the last (or, with all_logits,
        every) position into logits_out, a float32 [rows, vocab] array, unless it is None."""

    def forward_batch(self, ws: Any, contexts: list, tokens, positions, owners, logit_rows, logits_out,
                      n_threads: int) -> None:
        """One step over several sequences: row r evaluates tokens[r] at positions[r] in contexts[owners[r]],
        logits of rows `logit_rows` into logits_out; each row's result equals evaluating its sequence alone."""

    def greedy(self, ctx: Any, token: int, pos: int, n_threads: int) -> int:
        """Evaluate one token and return the first index of its largest logit (on the GPU, computed there).
        n_threads as for forward: the greedy step is a decode step like any other."""

    def ran_kernels(self) -> list[str]:
        """Receipt ids ('<kernel>.<variant>') of the kernels that ran since reset_ran (bitnet.receipts)."""

    def reset_ran(self) -> None:
        """Start a new record of the kernels that ran."""

    def close(self) -> None:
        """Give back what the backend holds outside the model file's mapping (the GPU's memory)."""


def resolve_device(device: str | None) -> str:
    """`device`, else BITNET_DEVICE, else "cpu"; a name outside DEVICES is a ValueError naming them."""
    name, source = settings.device(device)
    name = name.strip().lower()
    if name not in DEVICES:
        raise ValueError(f"{source} must be one of {', '.join(DEVICES)}, got {name!r}")
    return name


__all__ = ["DEVICES", "Backend", "resolve_device"]
