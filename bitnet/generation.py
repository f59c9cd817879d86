"""The decoding core every surface drives: what happens to one sequence after its prompt, one set of logits at a
time: the non-finite-logit rule, sampling, the end of generation (an end-of-generation token, a stop sequence,
the token budget) and incremental detokenization that holds back text which might still become a stop sequence.

The one-sequence loop (`bitnet.engine.Session.stream_tokens`, under the Python API, the CLI, the server and the
C ABI), the batch scheduler (`bitnet.batching`) and the browser build (`bitnet.web`) each evaluate tokens their
own way and hand the logits here, so that they all produce the same tokens and the same text for the same logits.

Numpy-free (logits are any float32 buffer; the detokenizer is passed in): the browser build has no numpy.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from bitnet import settings
from bitnet.errors import non_finite_logit
from bitnet.limits import check_max_tokens, generation_budget

__all__ = ["DEFAULTS", "Completion", "Decoding", "SamplingParams", "Timings", "shared_prefix"]


@dataclass(frozen=True)
class SamplingParams:
    """The settings of one generation, the currency every surface passes: build one with `make`, which checks
    them and applies BITNET_SEED / BITNET_DETERMINISTIC (bitnet.settings) when no seed is given."""
    max_tokens: int = 128
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def make(cls, *, stop: str | Sequence[str] | None = None, seed: int | None = None,
             **values) -> SamplingParams:
        """The settings given (by name; the rest are the defaults above), checked: max_tokens, a seed (or
        BITNET_SEED / BITNET_DETERMINISTIC's), stop as one text or several."""
        unknown = set(values) - {"max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty"}
        if unknown:
            raise TypeError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        d = DEFAULTS
        if isinstance(stop, str):
            stop = (stop,)
        return cls(check_max_tokens(values.get("max_tokens", d.max_tokens)),
                   float(values.get("temperature", d.temperature)), int(values.get("top_k", d.top_k)),
                   float(values.get("top_p", d.top_p)), float(values.get("min_p", d.min_p)),
                   float(values.get("repeat_penalty", d.repeat_penalty)), settings.seed(seed),
                   tuple(s for s in (stop or ()) if s))

    def with_stop(self, stop: Sequence[str]) -> SamplingParams:
        return replace(self, stop=tuple(s for s in stop if s))


DEFAULTS = SamplingParams()     # the one statement of the sampling defaults (API, CLI, server, C ABI, browser)


@dataclass
class Timings:
    load_s: float | None = None
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefill_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0


@dataclass
class Completion:
    text: str
    tokens: list[int]
    finish_reason: str            # "stop" or "length"
    prompt_tokens: int
    timings: Timings = field(default_factory=Timings)

    def __str__(self) -> str:     # print(model.generate(...)) prints the generated text
        return self.text


class Decoding:
    """One sequence after its prompt. `push(logits, pos)` (or `push_token` for a token the backend chose) returns
    the text that is now final; then `finished` says whether the sequence ended and, if not, `last_token` is the
    next token to evaluate.

    n_ctx: the context the sequence lives in (with max_tokens, it bounds the budget); eog_ids: the vocabulary's
    end-of-generation tokens; decoder: an incremental detokenizer (push(id) -> str, flush() -> str), e.g.
    bitnet.tokenizer_spec.StreamDecoder."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, n_ctx: int, eog_ids: Iterable[int],
                 decoder, generated: list[int] | None = None):
        from bitnet.sampling import Sampler

        self.budget = generation_budget(prompt_ids, n_ctx, params.max_tokens)
        self.sampler = Sampler(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                               min_p=params.min_p, repeat_penalty=params.repeat_penalty, seed=params.seed)
        self.eog_ids = frozenset(eog_ids)
        self.decoder = decoder
        self.generated = generated if generated is not None else []
        # a typed buffer: the sampler reads it without numpy (the browser build has none)
        self.history = array("q", prompt_ids)
        self.stop = params.stop
        self.hold = max((len(s) for s in self.stop), default=1) - 1   # might still become a stop sequence
        self.pending = ""
        self.finish_reason = "length"
        self.finished = self.budget <= 0
        # arg-max of the raw logits: the backend can choose the token itself (on a GPU, without sending logits)
        self.plain_greedy = self.sampler.greedy and params.repeat_penalty == 1.0

    @property
    def last_token(self) -> int:
        return self.generated[-1]

    def push(self, logits, pos: int) -> str:
        """Sample the next token from `logits`, the float32 scores the forward pass gave at position `pos`. A
        non-finite score is the model's fault, not the sampler's: ModelError naming the position."""
        from bitnet.sampling import first_non_finite

        if first_non_finite(logits) >= 0:
            raise non_finite_logit(pos)
        return self.push_token(self.sampler.sample(logits, self.history))

    def push_token(self, token: int) -> str:
        """push() for a token already chosen (by the backend's greedy step)."""
        if token in self.eog_ids:
            self.finish_reason = "stop"
            return self._end()
        self.generated.append(token)
        self.history.append(token)
        self.pending += self.decoder.push(token)
        cut = _find_stop(self.pending, self.stop) if self.stop else None
        if cut is not None:
            self.finish_reason = "stop"
            self.finished = True
            return self.pending[:cut]
        if len(self.generated) >= self.budget:
            return self._end()
        if len(self.pending) <= self.hold:
            return ""
        text, self.pending = self.pending[:len(self.pending) - self.hold], self.pending[len(self.pending) - self.hold:]
        return text

    def cancel(self, reason: str = "stopped") -> str:
        """End the sequence early (a stop button, a client gone): the text still held back, if it holds no stop
        sequence."""
        if self.finished:
            return ""
        self.finish_reason = reason
        return self._end()

    def _end(self) -> str:
        self.finished = True
        text = self.pending + self.decoder.flush()
        cut = _find_stop(text, self.stop) if self.stop else None
        if cut is not None:
            self.finish_reason = "stop"
            text = text[:cut]
        self.pending = ""
        return text


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share (a cache holding `a` can skip that much of `b`)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _find_stop(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None
