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

__all__ = ["DEFAULTS", "MAX_TOP_LOGPROBS", "Completion", "Decoding", "SamplingParams", "Timings", "TokenLogprob",
           "shared_prefix"]

MAX_TOP_LOGPROBS = 20      # OpenAI's bound on top_logprobs


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
    # OpenAI's settings: per-token log-probabilities (None: off; N: the chosen token's and the N most likely),
    # a bias added to some tokens' logits, and penalties on the tokens generated so far.
    logprobs: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: str | None = None      # the output's grammar, compiled by bitnet.constraints (llguidance's text)

    @classmethod
    def make(cls, *, stop: str | Sequence[str] | None = None, seed: int | None = None,
             logit_bias: dict | None = None, json_schema: dict | str | None = None, json_object: bool = False,
             grammar: str | None = None, **values) -> SamplingParams:
        """The settings given (by name; the rest are the defaults above), checked: max_tokens, a seed (or
        BITNET_SEED / BITNET_DETERMINISTIC's), stop as one text or several, logit_bias as {token id: bias}, and
        structured output as a JSON schema, json_object=True (any JSON object) or a Lark `grammar`."""
        unknown = set(values) - {"max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                 "logprobs", "presence_penalty", "frequency_penalty"}
        if unknown:
            raise TypeError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        d = DEFAULTS
        if isinstance(stop, str):
            stop = (stop,)
        logprobs = values.get("logprobs")
        if logprobs is not None and (not isinstance(logprobs, int) or isinstance(logprobs, bool)
                                     or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
            raise ValueError(f"logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}] (the top alternatives "
                             f"reported per token) or None, got {logprobs!r}")
        bias = tuple(sorted((_token_id(k), _bias(v)) for k, v in (logit_bias or {}).items()))
        penalties = [float(values.get(name, 0.0)) for name in ("presence_penalty", "frequency_penalty")]
        for name, value in zip(("presence_penalty", "frequency_penalty"), penalties):
            if not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2], got {value}")
        compiled = None
        if json_schema is not None or json_object or grammar is not None:
            from bitnet.constraints import compile_grammar

            compiled = compile_grammar(json_schema=json_schema, json_object=json_object, lark=grammar)
        return cls(check_max_tokens(values.get("max_tokens", d.max_tokens)),
                   float(values.get("temperature", d.temperature)), int(values.get("top_k", d.top_k)),
                   float(values.get("top_p", d.top_p)), float(values.get("min_p", d.min_p)),
                   float(values.get("repeat_penalty", d.repeat_penalty)), settings.seed(seed),
                   tuple(s for s in (stop or ()) if s), logprobs, bias, penalties[0], penalties[1], compiled)

    @property
    def adjusts_logits(self) -> bool:
        """Whether the logits are changed before sampling (bias, OpenAI penalties or a grammar)."""
        return bool(self.logit_bias or self.presence_penalty or self.frequency_penalty or self.grammar)

    def with_stop(self, stop: Sequence[str]) -> SamplingParams:
        return replace(self, stop=tuple(s for s in stop if s))


DEFAULTS = SamplingParams()     # the one statement of the sampling defaults (API, CLI, server, C ABI, browser)


def _token_id(key) -> int:
    try:
        value = int(key)            # JSON object keys are text: {"198": -100}
    except (TypeError, ValueError):
        raise ValueError(f"logit_bias keys must be token ids, got {key!r}") from None
    if value < 0:
        raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
    return value


def _bias(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100.0 <= value <= 100.0:
        raise ValueError(f"logit_bias values must be numbers in [-100, 100], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model (log-softmax of its raw logits), and the `top` most
    likely tokens at that step as (token id, log-probability), best first."""
    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


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
    logprobs: list[TokenLogprob] | None = None    # one per token of `tokens`, when asked for

    def __str__(self) -> str:     # print(model.generate(...)) prints the generated text
        return self.text


class Decoding:
    """One sequence after its prompt. `push(logits, pos)` (or `push_token` for a token the backend chose) returns
    the text that is now final; then `finished` says whether the sequence ended and, if not, `last_token` is the
    next token to evaluate.

    n_ctx: the context the sequence lives in (with max_tokens, it bounds the budget); eog_ids: the vocabulary's
    end-of-generation tokens; decoder: an incremental detokenizer (push(id) -> str, flush() -> str), e.g.
    bitnet.tokenizer_spec.StreamDecoder; constraint: the grammar's state for this sequence (mask(), accept(token),
    finished: bitnet.constraints.Constraint) when params has a grammar."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, n_ctx: int, eog_ids: Iterable[int],
                 decoder, generated: list[int] | None = None, constraint=None):
        from bitnet.sampling import Sampler

        if (params.grammar is None) != (constraint is None):
            raise ValueError("a grammar needs its constraint (and a constraint its grammar)")
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
        self.params = params
        self.constraint = constraint
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        self.counts: dict[int, int] = {}          # generated tokens, for the presence and frequency penalties
        # what _adjusted passes every step, built once: the bias as typed arrays, and the buffer it writes into
        self._bias_ids = array("q", (t for t, _ in params.logit_bias))
        self._bias_values = array("f", (b for _, b in params.logit_bias))
        self._scores = array("f")
        # arg-max of the raw logits: the backend can choose the token itself (on a GPU, without sending logits)
        self.plain_greedy = (self.sampler.greedy and params.repeat_penalty == 1.0 and not params.adjusts_logits
                             and self.logprobs is None)

    @property
    def last_token(self) -> int:
        return self.generated[-1]

    def push(self, logits, pos: int) -> str:
        """Sample the next token from `logits`, the float32 scores the forward pass gave at position `pos`. A
        non-finite score is the model's fault, not the sampler's: ModelError naming the position."""
        from bitnet.sampling import first_non_finite, log_softmax_top

        if first_non_finite(logits) >= 0:
            raise non_finite_logit(pos)
        scores = self._adjusted(logits) if self.params.adjusts_logits else logits
        token = self.sampler.sample(scores, self.history)
        if self.logprobs is not None and token not in self.eog_ids:
            lse, top = log_softmax_top(logits, self.params.logprobs)
            self.logprobs.append(TokenLogprob(token, float(logits[token]) - lse, tuple(top)))
        return self.push_token(token)

    def _adjusted(self, logits):
        """The logits the sampler draws from: with the bias, the penalties and the grammar's mask applied."""
        from bitnet.sampling import adjust_logits

        p = self.params
        if len(self._scores) != len(logits):
            self._scores = array("f", bytes(4 * len(logits)))
        mask = self.constraint.mask() if self.constraint is not None else None
        counted = array("q", self.counts) if p.presence_penalty or p.frequency_penalty else array("q")
        adjust_logits(logits, self._scores, self._bias_ids, self._bias_values, counted,
                      array("q", (self.counts[t] for t in counted)), p.presence_penalty, p.frequency_penalty, mask)
        return self._scores

    def push_token(self, token: int) -> str:
        """push() for a token already chosen (by the backend's greedy step)."""
        if self.constraint is not None:
            self.constraint.accept(token)
        if token in self.eog_ids:
            self.finish_reason = "stop"
            return self._end()
        self.generated.append(token)
        self.history.append(token)
        self.counts[token] = self.counts.get(token, 0) + 1
        self.pending += self.decoder.push(token)
        cut = _find_stop(self.pending, self.stop) if self.stop else None
        if cut is not None:
            self.finish_reason = "stop"
            self.finished = True
            return self.pending[:cut]
        if self.constraint is not None and self.constraint.finished:
            self.finish_reason = "stop"        # the grammar is complete: nothing more may follow
            return self._end()
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
