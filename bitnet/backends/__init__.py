"""Where the model graph runs: the backends, siblings behind one small contract, found by name.

Architectures, weight binding and hyperparameters (bitnet.models) are shared and import no backend; the forward
pass has two implementations of the `Backend` contract below: the CPU's compiled one (bitnet.backends.cpu) and
the GPU's (bitnet.backends.cuda). Sessions, sampling, the engine, the CLI, the server and the C ABI see only
this contract, so none of them changes per backend.
"""
from __future__ import annotations

from typing import Any, Protocol

from bitnet import settings

DEVICES = ("cpu", "cuda")


class Backend(Protocol):
    n_vocab: int
    head_type: int          # the ggml type the LM head is computed from
    device_name: str        # "cpu", or the GPU's name
    n_threads: int          # host threads every forward runs on: a setting of the backend, built with it

    def new_context(self, n_ctx: int) -> Any:
        """A sequence's KV cache for n_ctx positions (in host or device memory). Its `threads_used` says how
        many threads the last `forward` or `greedy` step in it actually ran on."""

    def forward(self, ctx: Any, tokens, pos0: int, logits_out, all_logits: bool) -> None:
        """Evaluate `tokens` at positions pos0.. into ctx's cache; logits of the last (or, with all_logits,
        every) position into logits_out, a float32 [rows, vocab] array, unless it is None."""

    def forward_batch(self, contexts: list, tokens, positions, owners, logit_rows, logits_out) -> None:
        """One step over several sequences: row r evaluates tokens[r] at positions[r] in contexts[owners[r]],
        logits of rows `logit_rows` into logits_out; each row's result equals evaluating its sequence alone. The
        step's scratch is the backend's own (steps from several threads take turns)."""

    def greedy(self, ctx: Any, token: int, pos: int) -> int:
        """Evaluate one token and return the first index of its largest logit (on the GPU, computed there)."""

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


LM_HEADS = ("exact", "q8_0")
# The CPU's KV cache element types (bitnet.backends.cpu._forward): the ggml type a position of one K/V head is
# stored as
CACHE_TYPES = {"f16": "F16", "q8_0": "Q8_0"}


def check_cache_type(cache_type: str) -> None:
    if cache_type not in CACHE_TYPES:
        raise ValueError(f"cache_type must be one of {', '.join(CACHE_TYPES)}, got {cache_type!r}")


def kv_row_bytes(cache_type: str, head_dim: int) -> int:
    """Bytes one position of one K/V head takes in a CPU KV cache of `cache_type`; ValueError for a type that is
    not one, or a head_dim that type cannot hold."""
    from bitnet.gguf.constants import BLOCK_LAYOUT, GGMLType

    check_cache_type(cache_type)
    block, block_bytes = BLOCK_LAYOUT[GGMLType[CACHE_TYPES[cache_type]]]
    if head_dim % block:
        raise ValueError(f"the {cache_type} KV cache needs head_dim % {block} == 0, "
                         f"this model has head_dim {head_dim}")
    return head_dim // block * block_bytes


def build(reader, device: str = "cpu", lm_head: str = "exact", n_threads: int | None = None,
          widen_head_below: int = 0, ternary: str | None = None, max_ctx: int | None = None,
          cache_type: str = "f16"):
    """Bind the file's weights (bitnet.models) and build the backend named `device` over them: returns
    (backend, HParams, ArchSpec). The CUDA backend gets its RoPE table sized for contexts of up to max_ctx
    positions (default: the file's training context); widen_head_below and ternary are the CPU's (see
    bitnet.backends.cpu.build).

    lm_head "q8_0": the LM head (the tied F16 token embedding, or output.weight) is re-encoded as Q8_0 in memory
    at load (0.66 GB -> 0.35 GB read per token for the 2B model). The CPU computes it with int8 dot products on
    Q8-quantized activations (faster, not exact: benchmarks/README.md gives its perplexity cost); the GPU
    multiplies the same Q8_0 weights with float activations, so the two devices' int8-head logits differ
    slightly (the exact head gives the same numerics on both).

    cache_type "q8_0" keeps the CPU's KV cache as Q8_0 blocks (half the bytes a long context reads per token, at
    a small perplexity cost); "f16" (default) is exact. The CUDA backend keeps its own f16 cache."""
    from bitnet.models import bind

    if lm_head not in LM_HEADS:
        raise ValueError(f"lm_head must be one of {', '.join(LM_HEADS)}, got {lm_head!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    check_cache_type(cache_type)
    if device == "cuda" and cache_type != "f16":
        raise ValueError(f"cache_type {cache_type!r} is CPU-only: the CUDA backend keeps an f16 KV cache")
    weights, hp, spec = bind(reader)
    head_int8 = lm_head == "q8_0"
    if head_int8:
        head = weights["output"]
        weights["output"] = _int8_head(head, n_threads)
        if device == "cpu" and weights["output"].data is not head.data:
            # The float head was read once to re-encode it; only the token embedding's few rows per step are
            # read from it again (when tied), so its pages need not stay resident (0.66 GB for the 2B model).
            reader.release_pages(head.name)
    if device == "cuda":
        from bitnet.backends.cuda.forward import CudaTransformer

        return CudaTransformer(**weights, head_int8=head_int8, max_ctx=max_ctx or hp.n_ctx_train), hp, spec
    from bitnet.backends import cpu

    return cpu.build(weights, hp, reader, head_int8, n_threads, widen_head_below, ternary, cache_type), hp, spec


def _int8_head(head, n_threads: int | None):
    """The LM head as Q8_0 (re-encoded on the host, for either device)."""
    from bitnet.backends.cpu.kernels import GGML_Q8_0, encode_q80
    from bitnet.errors import ModelError
    from bitnet.models.common import BoundMatrix

    if head.K % 32:
        raise ModelError(f"the int8 LM head needs n_embd to be a multiple of 32, got {head.K}")
    data = head.data if head.ggml_type == GGML_Q8_0 else encode_q80(head.data, head.ggml_type, head.K, head.M,
                                                                    n_threads)
    return BoundMatrix(f"{head.name} (Q8_0, int8 head)", GGML_Q8_0, head.K, head.M, data, 1.0)


__all__ = ["DEVICES", "LM_HEADS", "Backend", "build", "resolve_device"]
