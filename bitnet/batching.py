"""Continuous batching: many sequences decoded together, one weight read per step for all of them.

Decode is bound by reading the weights (1.18 GB per token for the 2B model); evaluating one new token for each
of B sequences in the same forward step reads them once, with the multi-token kernels, instead of B times.
`Scheduler` keeps the active sequences and runs one step at a time: every decoding sequence contributes its
last token, and sequences still reading their prompt contribute a chunk of it (so a long prompt joins the
batch over several steps instead of freezing the others). Each row's logits are bit-identical to evaluating
its sequence alone (see `Transformer.forward_batch`), and each sequence samples with its own parameters, seed
and stop sequences (`bitnet.generation.Decoding`), so the text does not depend on what else is in the batch.

`BatchWorker` runs a Scheduler on its own thread for the server: requests arrive and leave at any time.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bitnet.errors import BitNetError
from bitnet.generation import Completion, Decoding, SamplingParams, Timings, shared_prefix


# What the scheduler uses of a model and of its sessions (bitnet.engine.Model and Session): the engine imports
# this module for Model.generate_batch, so this one names what it needs instead of importing the engine.
class Session(Protocol):
    model: Model
    cached: list[int]

    def reset(self) -> None: ...

    def truncate(self, n: int) -> None: ...

    def record(self, tokens: list[int]) -> None: ...


class Model(Protocol):
    n_vocab: int

    def new_session(self) -> Session: ...

    def decoding(self, prompt_ids: list[int], params: SamplingParams) -> Decoding: ...

    def forward_batch(self, sessions: list[Session], tokens: list[int], positions: list[int],
                      owners: list[int], logit_rows: list[int], logits: np.ndarray) -> None: ...

    def _prompt_ids(self, prompt) -> list[int]: ...

# Prompt tokens evaluated per step while other sequences decode: larger chunks prefill faster, smaller ones
# delay the running sequences' next token less (at 200 tok/s of prefill, 32 tokens cost ~0.16 s).
DEFAULT_PREFILL_CHUNK = 32
# With nobody decoding, a prompt goes in steps of this many tokens (the forward pass's own internal block).
IDLE_PREFILL_CHUNK = 256


@dataclass
class Sequence:
    """One request inside a Scheduler. `on_text(text)` receives final text as it decodes and `on_end(seq)`
    is called once when it has finished, failed (`error`) or been cancelled, on the scheduler's thread."""
    session: Session
    prompt_ids: list[int]
    decoding: Decoding
    on_text: Callable[[str], None] | None = None
    on_end: Callable[[Sequence], None] | None = None
    timings: Timings = field(default_factory=Timings)
    text: str = ""
    error: BaseException | None = None
    cancelled: bool = False
    done: bool = False
    next_pos: int = 0          # the next prompt position to evaluate (== len(prompt_ids) once decoding)

    @property
    def tokens(self) -> list[int]:
        return self.decoding.generated

    @property
    def finish_reason(self) -> str:
        return self.decoding.finish_reason

    @property
    def prefilling(self) -> bool:
        return self.next_pos < len(self.prompt_ids)

    def cancel(self) -> None:
        """Stop at the next step (from any thread): the sequence leaves the batch and its session is free."""
        self.cancelled = True

    def completion(self) -> Completion:
        logprobs = self.decoding.logprobs
        return Completion(text=self.text, tokens=list(self.tokens), finish_reason=self.finish_reason,
                          prompt_tokens=len(self.prompt_ids), timings=self.timings,
                          logprobs=None if logprobs is None else list(logprobs))


class Scheduler:
    """Active sequences and the step that advances all of them. Used by one thread at a time."""

    def __init__(self, model: Model, max_batch: int = 8, prefill_chunk: int = DEFAULT_PREFILL_CHUNK):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
        self.model = model
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.active: list[Sequence] = []
        self.steps = 0               # forward steps run, and the sum of their sequence counts (for metrics)
        self.sequence_steps = 0

    def start(self, session: Session, prompt_ids: list[int], params: SamplingParams,
              on_text: Callable[[str], None] | None = None,
              on_end: Callable[[Sequence], None] | None = None) -> Sequence:
        """Make a sequence (see `make_sequence`) and add it to the batch."""
        seq = make_sequence(session, prompt_ids, params, on_text, on_end)
        self.add(seq)
        return seq

    def add(self, seq: Sequence) -> None:
        """Put `seq` in the batch, reusing the longest prefix its session's cache shares with the prompt.
        RuntimeError when the batch is full or the session is already in it."""
        if seq.session.model is not self.model:
            raise ValueError("the session belongs to another model")
        if len(self.active) >= self.max_batch:
            raise RuntimeError(f"the batch is full ({self.max_batch} sequences)")
        if any(s.session is seq.session for s in self.active):
            raise RuntimeError("the session is already generating in this batch")
        # the last prompt token is always evaluated: its logits are needed
        common = min(shared_prefix(seq.session.cached, seq.prompt_ids), len(seq.prompt_ids) - 1)
        seq.session.truncate(common)
        seq.next_pos = common
        self.active.append(seq)

    def step(self) -> list[Sequence]:
        """One forward step over every active sequence; returns those that ended in it (or were cancelled)."""
        ended = [s for s in self.active if s.cancelled]
        for seq in ended:
            self._end(seq)
        if not self.active:
            return ended
        tokens: list[int] = []
        positions: list[int] = []
        owners: list[int] = []
        wanted: list[int] = []
        wanted_seq: list[Sequence] = []
        decoding = [s for s in self.active if not s.prefilling]
        budget = self.prefill_chunk if decoding else IDLE_PREFILL_CHUNK
        spans: list[tuple[Sequence, int]] = []       # (sequence, rows it has in this step)
        for seq in self.active:
            if seq.prefilling:
                n = min(budget, len(seq.prompt_ids) - seq.next_pos)
                if n == 0:
                    continue                          # waits for the next step's share of prefill
                budget -= n
                ids = seq.prompt_ids[seq.next_pos:seq.next_pos + n]
                first = seq.next_pos
            else:
                n, ids, first = 1, [seq.decoding.last_token], len(seq.session.cached)
            index = len(spans)
            tokens += ids
            positions += range(first, first + n)
            owners += [index] * n
            spans.append((seq, n))
            if first + n == len(seq.prompt_ids) or not seq.prefilling:
                wanted.append(len(tokens) - 1)       # logits for the next token of this sequence
                wanted_seq.append(seq)
        logits = np.empty((len(wanted), self.model.n_vocab), dtype=np.float32)
        t0 = time.perf_counter()
        try:
            self.model.forward_batch([s.session for s, _ in spans], tokens, positions, owners,
                                     wanted, logits)
        except Exception as exc:  # noqa: BLE001 - every sequence of the step fails with it
            for seq, _ in spans:
                seq.error = exc
                self._end(seq)
                ended.append(seq)
            return ended
        elapsed = time.perf_counter() - t0
        self.steps += 1
        self.sequence_steps += len(spans)
        for seq, n in spans:
            if seq.prefilling:
                seq.session.record(seq.prompt_ids[seq.next_pos:seq.next_pos + n])
                seq.next_pos += n
                seq.timings.prefill_tokens += n
                seq.timings.prefill_s += elapsed
            else:
                seq.session.record([seq.decoding.last_token])
                seq.timings.decode_tokens += 1
                seq.timings.decode_s += elapsed
        for row, seq in zip(logits, wanted_seq):
            try:
                if not seq.decoding.finished:     # max_tokens 0: the prompt was evaluated, nothing is sampled
                    self._push(seq, row, len(seq.session.cached) - 1)
            except BitNetError as exc:     # a non-finite logit, a failed grammar: this sequence fails, not the others
                seq.error = exc
            if seq.error is not None or seq.decoding.finished:
                self._end(seq)
                ended.append(seq)
        return ended

    def _push(self, seq: Sequence, logits: np.ndarray, pos: int) -> None:
        t0 = time.perf_counter()
        text = seq.decoding.push(logits, pos)
        seq.timings.decode_s += time.perf_counter() - t0
        if text:
            seq.text += text
            if seq.on_text is not None:
                seq.on_text(text)

    def _end(self, seq: Sequence) -> None:
        if seq in self.active:
            self.active.remove(seq)
        _finish(seq)

    def run(self) -> None:
        """Step until every sequence has ended."""
        while self.active:
            self.step()


def make_sequence(session: Session, prompt_ids: list[int], params: SamplingParams,
                  on_text: Callable[[str], None] | None = None,
                  on_end: Callable[[Sequence], None] | None = None) -> Sequence:
    """A sequence ready to join a batch; a prompt that cannot run (empty, longer than the context) raises
    here, in the caller's thread, before it gets near a batch."""
    return Sequence(session, list(prompt_ids), session.model.decoding(prompt_ids, params), on_text, on_end)


def _finish(seq: Sequence) -> None:
    seq.done = True
    if seq.on_end is not None:
        seq.on_end(seq)


def generate_batch(model: Model, prompts: list, params: SamplingParams, max_batch: int | None = None,
                   prefill_chunk: int = DEFAULT_PREFILL_CHUNK) -> list[Completion]:
    """One Completion per prompt (text or ids), decoded together in batches of up to `max_batch` sequences
    (all of them by default), each with a fresh KV cache. Prompts that finish early make room for the next."""
    ids = [model._prompt_ids(p) for p in prompts]
    # Every prompt is checked (and gets its sampler) before anything runs: a bad one fails the call at once.
    seqs = [Sequence(None, p, model.decoding(p, params)) for p in ids]
    scheduler = Scheduler(model, max(1, min(max_batch or len(seqs), len(seqs))), prefill_chunk)
    free = [model.new_session() for _ in range(scheduler.max_batch)]
    waiting = list(seqs)
    while waiting or scheduler.active:
        while waiting and free:
            seq = waiting.pop(0)
            seq.session = free.pop()
            seq.session.reset()
            seq.on_end = lambda done: free.append(done.session)
            scheduler.add(seq)
        scheduler.step()
    for seq in seqs:
        if seq.error is not None:
            raise seq.error
    return [seq.completion() for seq in seqs]


class BatchWorker:
    """A Scheduler stepping on its own thread, for the server: `submit` and `Sequence.cancel` from any thread;
    the sequences' callbacks run on the worker thread."""

    def __init__(self, model: Model, max_batch: int, prefill_chunk: int = DEFAULT_PREFILL_CHUNK):
        self.scheduler = Scheduler(model, max_batch, prefill_chunk)
        self._inbox: queue.SimpleQueue[Sequence | None] = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="bitnet-batch", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def batch_size(self) -> int:
        """Sequences in the batch now."""
        return len(self.scheduler.active)

    def submit(self, seq: Sequence) -> None:
        """Have `seq` join the batch at the next step."""
        self._inbox.put(seq)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop stepping (sequences still in the batch are left as they are) and wait for the thread."""
        self._stopping = True
        self._inbox.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping:
            try:
                # Sleep while there is nothing to step; otherwise take whatever has arrived and step.
                item = self._inbox.get(block=not self.scheduler.active)
                while True:
                    if item is not None:
                        self._admit(item)
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            if not self._stopping:
                self.scheduler.step()

    def _admit(self, seq: Sequence) -> None:
        if seq.cancelled:
            _finish(seq)
            return
        try:
            self.scheduler.add(seq)
        except Exception as exc:  # noqa: BLE001 - handed to the request
            seq.error = exc
            _finish(seq)
