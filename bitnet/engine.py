"""Loading a model and generating text: prefill/decode loop, KV cache reuse, stop conditions, streaming, timings.

The per-token arithmetic runs in the compiled forward pass (`bitnet.backends.cpu._forward`) with the GIL released;
this module only orchestrates: tokenize, evaluate the part of the prompt not already in the KV cache, sample,
detokenize incrementally and decide when to stop.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from bitnet import settings
from bitnet.errors import BitNetError, ContextOverflowError, fallback, non_finite_logit
from bitnet.generation import DEFAULTS, Completion, Decoding, SamplingParams, Timings, TokenLogprob, shared_prefix
from bitnet.gguf import GGUFReader
from bitnet.limits import check_tokenizer_covers_head, prompt_token_ids
from bitnet.paths import default_model_path, model_path

MAX_DEFAULT_CTX = 4096


@dataclass
class Perplexity:
    value: float
    error: float
    n_chunks: int
    n_ctx: int
    n_scored: int


@dataclass
class Score:
    """The log-likelihood of a text (or of a continuation after a context) under the model: the sum of its tokens'
    log-probabilities, each one's, and whether greedy decoding would have produced every token."""
    logprob: float
    token_logprobs: list[float]
    tokens: list[int]
    is_greedy: bool


class Session:
    """One sequence's state: its own KV cache and the tokens already evaluated into it.

    A Model owns a default session; servers create one per concurrent slot (`Model.new_session`). A session is
    used by one thread at a time; different sessions of one model can run concurrently.
    """

    def __init__(self, model: Model):
        self.model = model
        self.context = model._transformer.new_context(model.n_ctx)
        self.cached: list[int] = []   # tokens whose K/V are in the cache, from position 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.cached = []

    def truncate(self, n: int) -> None:
        """Forget all but the first n cached tokens (the next evaluation starts at position n)."""
        del self.cached[n:]

    def record(self, tokens: Sequence[int]) -> None:
        """Note tokens evaluated into the cache at the next positions by someone else (the batch scheduler)."""
        self.cached.extend(tokens)

    @property
    def threads_used(self) -> int:
        """How many threads the last forward step of this session ran its matmuls on (0 before the first)."""
        return self.context.threads_used

    # -- evaluation
    def _evaluate(self, tokens: list[int], start: int, logits: np.ndarray | None) -> None:
        """Evaluate tokens[start:] at positions start.. (the cache must hold tokens[:start])."""
        self.cached = self.cached[:start]
        self.model._forward(self.context, tokens[start:], start, logits, all_positions=False)
        self.cached = list(tokens)

    def prefill(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        """Bring the cache to `tokens`, reusing the longest common prefix; returns (last logits, tokens evaluated).
        The logits are the backend's as they came (Decoding.push fails on a non-finite one)."""
        # the last token is always evaluated: its logits are needed
        common = min(shared_prefix(self.cached, tokens), len(tokens) - 1)
        logits = np.empty((1, self.model.n_vocab), dtype=np.float32)
        self._evaluate(tokens, common, logits)
        return logits[0], len(tokens) - common

    def step(self, token: int) -> np.ndarray:
        """Evaluate `token` at the next position; its logits as the backend gave them (see prefill)."""
        logits = np.empty((1, self.model.n_vocab), dtype=np.float32)
        self.model._forward(self.context, [token], len(self.cached), logits, all_positions=False)
        self.cached.append(token)
        return logits[0]

    def step_greedy(self, token: int) -> int:
        """Evaluate `token` and return the greedy choice of the next one, computed by the backend (on a GPU
        only the chosen id comes back, not the logits)."""
        best = self.model._transformer.greedy(self.context, token, len(self.cached))
        self.cached.append(token)
        return best

    # -- generation
    def stream_tokens(self, prompt_ids: list[int], params: SamplingParams, timings: Timings,
                      result: dict) -> Iterator[str]:
        """Yield decoded text pieces; fills result['tokens'] and result['finish_reason']."""
        decoding = self.model.decoding(prompt_ids, params, result.setdefault("tokens", []))
        result["finish_reason"] = decoding.finish_reason
        result["logprobs"] = decoding.logprobs
        t0 = time.perf_counter()
        logits, n_eval = self.prefill(prompt_ids)
        timings.prefill_tokens += n_eval
        timings.prefill_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        chosen = None    # the next token when the backend chose it (greedy), else it is sampled from `logits`
        try:
            while not decoding.finished:
                text = (decoding.push(logits, len(self.cached) - 1) if chosen is None
                        else decoding.push_token(chosen))
                result["finish_reason"] = decoding.finish_reason
                if text:
                    yield text
                if not decoding.finished:
                    if decoding.plain_greedy:
                        chosen = self.step_greedy(decoding.last_token)
                    else:
                        logits = self.step(decoding.last_token)
                    timings.decode_tokens += 1
        finally:
            timings.decode_s += time.perf_counter() - t0


class CompletionStream:
    """An in-progress generation: iterate it for text pieces; `tokens`, `finish_reason` and `timings` fill in as
    it runs. `close()` stops it early (e.g. a client disconnected) and releases the session at once."""

    def __init__(self, session: Session, prompt_ids: list[int], params: SamplingParams, load_s: float | None):
        self.session = session
        self.prompt_tokens = len(prompt_ids)
        self.timings = Timings(load_s=load_s)
        self.text = ""
        self._result: dict = {"tokens": [], "finish_reason": None}
        self._pieces = self._run(prompt_ids, params)

    def _run(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[str]:
        with self.session.lock:
            for piece in self.session.stream_tokens(prompt_ids, params, self.timings, self._result):
                self.text += piece
                yield piece

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    @property
    def tokens(self) -> list[int]:
        return self._result["tokens"]

    @property
    def finish_reason(self) -> str | None:
        return self._result["finish_reason"]

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        """One TokenLogprob per token so far, when the settings ask for logprobs."""
        return self._result.get("logprobs")

    def close(self) -> None:
        self._pieces.close()

    def complete(self) -> Completion:
        """Run to the end and return the whole Completion."""
        for _ in self:
            pass
        logprobs = self.logprobs
        return Completion(text=self.text, tokens=list(self.tokens), finish_reason=self.finish_reason or "length",
                          prompt_tokens=self.prompt_tokens, timings=self.timings,
                          logprobs=None if logprobs is None else list(logprobs))


class Model:
    """A loaded BitNet model: `bitnet.load(path)` returns one."""

    def __init__(self, path: str | os.PathLike | None = None, n_threads: int | None = None,
                 n_ctx: int | None = None, tokenizer_path: str | os.PathLike | None = None, lm_head: str = "exact",
                 device: str | None = None, tokenizer_pre: str | None = None, cache_type: str = "f16"):
        from bitnet.backends import build, resolve_device
        from bitnet.models import arch_spec, read_hparams
        from bitnet.tokenizer import find_tokenizer

        t0 = time.perf_counter()
        self.path = path = model_path(path)
        if n_threads is not None and (not isinstance(n_threads, int) or isinstance(n_threads, bool)
                                      or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
        n_threads = settings.threads(n_threads)
        self.device = resolve_device(device)
        self.reader = GGUFReader(path, populate=self.device == "cpu")   # the GPU reads each weight once
        self.metadata = self.reader.metadata
        hparams = read_hparams(self.reader, arch_spec(self.reader)[0])
        if n_ctx is None:
            n_ctx = min(hparams.n_ctx_train, MAX_DEFAULT_CTX)
        if not isinstance(n_ctx, int) or n_ctx < 2:
            raise ValueError(f"n_ctx must be an integer >= 2, got {n_ctx!r}")
        if n_ctx > hparams.n_ctx_train:
            fallback(f"a context of {n_ctx} tokens exceeds the {hparams.n_ctx_train} the model was trained on: "
                     "positions beyond them are extrapolated and its output degrades")
        if self.device == "cpu":
            _check_kv_fits(hparams, n_ctx, cache_type)     # on a GPU the backend checks the device's memory
        self._transformer, self.hparams, self.spec = build(self.reader, self.device, lm_head, n_threads,
                                                           max_ctx=n_ctx, cache_type=cache_type)
        self.lm_head = lm_head
        self.cache_type = cache_type
        self.arch = self.hparams.arch
        self.n_vocab = self.hparams.n_vocab
        self.tokenizer = find_tokenizer(path, self.metadata, tokenizer_path, tokenizer_pre)
        check_tokenizer_covers_head(self.tokenizer.vocab_size, self.n_vocab)
        self.n_ctx = n_ctx
        self._session = Session(self)
        self._guidance = None        # llguidance's tokenizer, built on the first structured request
        self.load_s = time.perf_counter() - t0

    # -- properties
    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def tensor_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for info in self.reader.tensors.values():
            name = info.ggml_type.name
            counts[name] = counts.get(name, 0) + 1
        return counts

    def new_session(self) -> Session:
        return Session(self)

    def decoding(self, prompt_ids: list[int], params: SamplingParams, generated: list[int] | None = None
                 ) -> Decoding:
        """The decoding core (bitnet.generation) for one sequence of this model after `prompt_ids`."""
        from bitnet.tokenizer import StreamDecoder

        constraint = None
        if params.grammar is not None:
            from bitnet.constraints import Constraint, guidance_tokenizer

            if self._guidance is None:
                self._guidance = guidance_tokenizer(self.tokenizer, self.n_vocab)
            constraint = Constraint(self._guidance, params.grammar)
        return Decoding(prompt_ids, params, self.n_ctx, self.tokenizer.eog_ids, StreamDecoder(self.tokenizer),
                        generated, constraint)

    # -- the backend, as the rest of the package sees it
    @property
    def n_threads(self) -> int:
        """The threads the backend runs every forward on (settable: `bitnet bench` sweeps it on one model)."""
        return self._transformer.n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"n_threads must be a positive integer, got {value!r}")
        self._transformer.n_threads = settings.threads(value)     # BITNET_DETERMINISTIC keeps it at 1
    @property
    def device_name(self) -> str:
        """"cpu", or the GPU's name."""
        return self._transformer.device_name

    def ran_kernels(self) -> list[str]:
        """Receipt ids ('<kernel>.<variant>') of the kernels that ran since reset_ran (bitnet.receipts)."""
        return self._transformer.ran_kernels()

    def reset_ran(self) -> None:
        self._transformer.reset_ran()

    def forward_batch(self, sessions: Sequence[Session], tokens: list[int], positions: list[int],
                      owners: list[int], logit_rows: list[int], logits: np.ndarray) -> None:
        """One step over several sessions: row r evaluates tokens[r] at positions[r] in sessions[owners[r]]'s
        cache; the logits of rows `logit_rows` go to `logits` (see bitnet.backends.Backend)."""
        self._transformer.forward_batch([s.context for s in sessions], tokens, positions, owners,
                                        logit_rows, logits)

    def close(self) -> None:
        self._transformer.close()     # the GPU's memory goes back at once
        self.reader.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- tokens
    def tokenize(self, text: str, add_bos: bool | None = None) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")     # as the CLI, the server and the browser say
            return self.tokenize(prompt)
        return prompt_token_ids(prompt, self.n_vocab)

    # -- generation
    def stream(self, prompt: str | Sequence[int], max_tokens: int = DEFAULTS.max_tokens,
               temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k, top_p: float = DEFAULTS.top_p,
               min_p: float = DEFAULTS.min_p, repeat_penalty: float = DEFAULTS.repeat_penalty,
               seed: int | None = None, stop: str | Sequence[str] | None = None, *,
               session: Session | None = None, params: SamplingParams | None = None, **more) -> CompletionStream:
        """Like `generate`, but returns an iterator of text pieces as they decode (see CompletionStream)."""
        params = _params(params, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop, **more)
        return CompletionStream(session or self._session, self._prompt_ids(prompt), params, self.load_s)

    def generate(self, prompt: str | Sequence[int], max_tokens: int = DEFAULTS.max_tokens,
                 temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                 top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                 repeat_penalty: float = DEFAULTS.repeat_penalty, seed: int | None = None,
                 stop: str | Sequence[str] | None = None, *, session: Session | None = None,
                 params: SamplingParams | None = None, **more) -> Completion:
        """Generate a completion of `prompt` (text, no chat template, BOS added when the file says so; or ids).
        temperature=0 is greedy. The settings come as keywords or, built once, as `params`
        (SamplingParams.make), not both. Beyond the common ones above, `more` takes SamplingParams.make's other
        settings: logprobs=N (Completion.logprobs), logit_bias, presence_penalty, frequency_penalty, and
        structured output: json_schema=, json_object=True or grammar= (Lark; needs llguidance)."""
        return self.stream(prompt, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop,
                           session=session, params=params, **more).complete()

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], max_tokens: int = DEFAULTS.max_tokens,
                       temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                       top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                       repeat_penalty: float = DEFAULTS.repeat_penalty, seed: int | None = None,
                       stop: str | Sequence[str] | None = None, *, max_batch: int | None = None,
                       params: SamplingParams | None = None) -> list[Completion]:
        """One Completion per prompt, the prompts decoded together (up to `max_batch` at a time, all by
        default): one read of the weights per step serves every sequence. Each result equals what `generate`
        gives for that prompt alone with the same settings (each prompt's sampler gets `seed`)."""
        from bitnet.batching import generate_batch

        params = _params(params, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop)
        return generate_batch(self, list(prompts), params, max_batch=max_batch)

    def render_chat(self, messages: list[dict], mode: str = "auto", system_prompt: str | None = None,
                    tools: list[dict] | None = None):
        """The chat prompt for `messages` under the template rules of the CLI (see bitnet.chat); `tools` go to a
        template that renders them (bitnet.chat.renders_tools)."""
        from bitnet.chat import render_chat

        template = self.chat_template
        if mode == "auto" and not template:
            mode = "bitnet"   # a model with no template still chats, in the built-in BitNet format
        tok = self.tokenizer
        return render_chat(messages, template=template, mode=mode, bos_token=tok.token_text(tok.bos_id)
                           if tok.bos_id is not None else "", eos_token=tok.token_text(tok.eos_id)
                           if tok.eos_id is not None else "", add_generation_prompt=True,
                           system_prompt=system_prompt, tools=tools)

    def chat_ids(self, messages: list[dict], mode: str = "auto", system_prompt: str | None = None,
                 tools: list[dict] | None = None):
        prompt = self.render_chat(messages, mode=mode, system_prompt=system_prompt, tools=tools)
        # prompt.add_bos is False when the rendered text already starts with BOS, None to let the file decide.
        return self.tokenizer.encode(prompt.text, add_bos=prompt.add_bos), prompt

    def chat_stream(self, messages: list[dict], *, mode: str = "auto", system_prompt: str | None = None,
                    session: Session | None = None, params: SamplingParams | None = None,
                    **settings) -> CompletionStream:
        """Stream the assistant's reply to `messages` (chat template rules: bitnet.chat / Model.render_chat);
        the template's end-of-turn texts join the stop sequences."""
        ids, prompt = self.chat_ids(messages, mode=mode, system_prompt=system_prompt)
        params = _params(params, **settings)
        return CompletionStream(session or self._session, ids, params.with_stop(prompt.stops(params.stop)),
                                self.load_s)

    def chat(self, messages: list[dict], *, mode: str = "auto", system_prompt: str | None = None,
             session: Session | None = None, params: SamplingParams | None = None, **settings) -> Completion:
        return self.chat_stream(messages, mode=mode, system_prompt=system_prompt, session=session, params=params,
                                **settings).complete()

    # -- evaluation
    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Float32 logits [n, vocab] for every position of `token_ids`, evaluated from position 0 in a scratch
        context (generation state is left untouched)."""
        ids = self._prompt_ids(token_ids)
        if not ids:
            raise ValueError("logits() needs at least one token")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{len(ids)} tokens do not fit in the context of {self.n_ctx} tokens")
        return self._all_logits(ids, self._transformer.new_context(len(ids)))

    def _all_logits(self, ids: list[int], ctx) -> np.ndarray:
        """Logits at every position of `ids`, evaluated from position 0 in `ctx` (a scratch Context), checked
        to be numbers (generation checks the logits it samples from in Decoding.push instead).

        Non-finite weights (a NaN in an embedding row, an infinite block scale, an overflow) never become
        finite again on the residual stream, so they reach the logits; a file that lies about its values
        fails with ModelError instead of scoring or sampling plausible-looking tokens."""
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
        self._forward(ctx, ids, 0, out, all_positions=True)
        if not np.isfinite(out).all():
            row, col = np.argwhere(~np.isfinite(out))[0]
            raise non_finite_logit(int(row), f" ({out[row, col]}, token {int(col)})")
        return out

    def _forward(self, ctx, ids: Sequence[int], pos: int, logits: np.ndarray | None, all_positions: bool) -> None:
        """The backend's forward pass (its logits unchecked: see _all_logits)."""
        self._transformer.forward(ctx, np.asarray(ids, dtype=np.int32), pos, logits, all_positions)

    def prompt_logprobs(self, token_ids: Sequence[int], top: int = 0) -> list[TokenLogprob | None]:
        """Each token's log-probability given the ones before it (log-softmax of the raw logits; None for the
        first, which nothing predicts), with the `top` most likely tokens at its position: OpenAI's echo."""
        from bitnet.sampling import log_softmax_top

        ids = self._prompt_ids(token_ids)
        logits = self.logits(ids)
        out: list[TokenLogprob | None] = [None]
        for i in range(1, len(ids)):
            lse, best = log_softmax_top(logits[i - 1], top)
            out.append(TokenLogprob(ids[i], float(logits[i - 1, ids[i]]) - lse, tuple(best)))
        return out

    def score(self, continuation: str | Sequence[int], context: str | Sequence[int] | None = None) -> Score:
        """The log-likelihood of `continuation` after `context` (what evaluation harnesses call loglikelihood):
        texts are tokenized apart, the context with BOS when the file adds one, the continuation without. With no
        context, of the whole `continuation` (BOS first when the file adds one; else its first token is given)."""
        if context is None:
            ids = self._prompt_ids(continuation)
            if len(ids) < 2:
                raise ValueError("score() needs a text of at least two tokens (or a context)")
            start = 1
        else:
            ctx = self._prompt_ids(context)
            cont = (self.tokenize(continuation, add_bos=False) if isinstance(continuation, str)
                    else prompt_token_ids(continuation, self.n_vocab))
            if not cont:
                raise ValueError("the continuation is empty")
            ids, start = ctx + cont, len(ctx)
        rows = self.prompt_logprobs(ids, top=1)[start:]
        return Score(logprob=sum(r.logprob for r in rows), token_logprobs=[r.logprob for r in rows],
                     tokens=ids[start:], is_greedy=all(r.top[0][0] == r.token for r in rows))

    def perplexity(self, text: str, n_ctx: int = 512) -> Perplexity:
        """Perplexity as llama.cpp's tool computes it: non-overlapping chunks of n_ctx tokens, each from a fresh
        context with BOS as its first token when the vocabulary adds one, scoring the second half of each chunk."""
        if n_ctx < 4:
            raise ValueError("n_ctx must be at least 4")
        if n_ctx > self.n_ctx:
            raise ContextOverflowError(f"perplexity context {n_ctx} exceeds the model context {self.n_ctx}")
        tokens = self.tokenize(text)
        n_chunks = len(tokens) // n_ctx
        if n_chunks == 0:
            raise ValueError(f"the text has {len(tokens)} tokens: at least {n_ctx} are needed for one chunk")
        add_bos = self.tokenizer.add_bos and self.tokenizer.bos_id is not None
        first = n_ctx // 2
        scratch = self._transformer.new_context(n_ctx)   # one KV cache for every chunk: each starts at position 0
        nll = nll2 = 0.0
        count = 0
        for c in range(n_chunks):
            chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
            if add_bos:
                chunk[0] = self.tokenizer.bos_id
            logits = self._all_logits(chunk, scratch).astype(np.float64)
            rows = logits[first:n_ctx - 1]
            targets = np.asarray(tokens[c * n_ctx + first + 1:(c + 1) * n_ctx])
            peak = rows.max(axis=1)
            logsum = np.log(np.exp(rows - peak[:, None]).sum(axis=1)) + peak
            losses = logsum - rows[np.arange(len(targets)), targets]
            nll += float(losses.sum())
            nll2 += float((losses ** 2).sum())
            count += len(targets)
        mean = nll / count
        ppl = math.exp(mean)
        var = max(nll2 / count - mean * mean, 0.0)
        err = ppl * math.sqrt(var / (count - 1)) if count > 1 else float("nan")
        return Perplexity(value=ppl, error=err, n_chunks=n_chunks, n_ctx=n_ctx, n_scored=count)


def _check_kv_fits(hp, n_ctx: int, cache_type: str = "f16") -> None:
    """A context whose K and V caches exceed the machine's memory fails here, naming sizes, rather than in
    an allocation (or, with overcommit, in the kernel's OOM killer half-way through a prompt)."""
    from bitnet.backends import kv_row_bytes

    kv_bytes = 2 * hp.n_layer * n_ctx * hp.n_head_kv * kv_row_bytes(cache_type, hp.head_dim)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):   # not every platform (Windows, Pyodide) reports it
        return
    if kv_bytes > memory:
        raise ContextOverflowError(f"a context of {n_ctx} tokens needs a {kv_bytes / 2**30:.1f} GiB KV cache, more "
                                   f"than this machine's {memory / 2**30:.1f} GiB of memory; ask for a smaller n_ctx")


def _params(params: SamplingParams | None, **settings) -> SamplingParams:
    """`params` as given, or the keyword settings made into SamplingParams; both at once is an error."""
    if params is None:
        return SamplingParams.make(**settings)
    given = [k for k, v in settings.items()
             if (v not in (None, False) if k == "stop" or not hasattr(DEFAULTS, k) else v != getattr(DEFAULTS, k))]
    if given:
        raise ValueError(f"give the sampling settings as params= or as keywords, not both (got {', '.join(given)})")
    return params


def load(path: str | os.PathLike | None = None, n_threads: int | None = None, n_ctx: int | None = None,
         tokenizer_path: str | os.PathLike | None = None, lm_head: str = "exact", device: str | None = None,
         tokenizer_pre: str | None = None, cache_type: str = "f16") -> Model:
    """Load a GGUF model: `path`, else $BITNET_GGUF, else the embedded default model.

    n_threads: None reads OMP_NUM_THREADS, else every CPU this process may use. tokenizer_path: a tokenizer.json
    or GGUF to take the tokenizer from (without it: the file's own, else a tokenizer.json beside it or in the
    folder above). tokenizer_pre: the byte-level pre-tokenizer to use instead of the file's
    `tokenizer.ggml.pre` (e.g. "default": llama.cpp's behaviour for a file without the key; without the key and
    this argument, the LLaMA-3 vocabulary gets "llama-bpe", with a warning).

    device: "cpu" or "cuda" (an NVIDIA GPU, sm_80 or newer, with `pip install 'bitnet-engine[cuda]'`); None
    reads BITNET_DEVICE, else "cpu". Without a usable GPU, "cuda" raises CudaUnavailableError saying why.

    lm_head="q8_0" re-encodes the LM head as Q8_0 at load and computes it with int8 dot products: faster
    decoding (the head is half the bytes read per token of the 2B model), at a small perplexity cost; the
    default "exact" computes it from the file's weights in float.

    cache_type="q8_0" keeps the KV cache as Q8_0 blocks (as llama.cpp's -ctk/-ctv q8_0): about half the memory
    and the bytes a long context reads per token, at a small perplexity cost (README); the default "f16" is
    exact. CPU only."""
    return Model(path, n_threads=n_threads, n_ctx=n_ctx, tokenizer_path=tokenizer_path, lm_head=lm_head,
                 device=device, tokenizer_pre=tokenizer_pre, cache_type=cache_type)


__all__ = ["BitNetError", "Completion", "CompletionStream", "Model", "Perplexity", "Score", "Session", "Timings",
           "default_model_path", "load"]
