"""Slots: the sessions (KV caches) the server generates with, the bounded wait queue in front of them, and the
jobs whose generations run in one continuous batch while the event loop streams their pieces.

A job that gets a slot joins the pool's BatchWorker (bitnet.batching): one thread steps every running
generation together, so N busy slots share each read of the weights instead of reading them N times. Everything
here is driven from the event loop thread except the sequence callbacks, which run on the batch thread and talk
back only through `loop.call_soon_threadsafe`; the forward pass releases the GIL, so the loop keeps serving.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from bitnet.batching import DEFAULT_PREFILL_CHUNK, BatchWorker, Sequence, make_sequence
from bitnet.engine import Session
from bitnet.generation import SamplingParams, Timings, shared_prefix

log = logging.getLogger("bitnet.server")


class QueueFullError(Exception):
    """Every slot is busy and the wait queue is full."""


class ShuttingDownError(Exception):
    """The server is shutting down and takes no new work."""


@dataclass
class Slot:
    index: int
    session: Session


@dataclass
class JobResult:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"
    timings: Timings = field(default_factory=Timings)
    logprobs: list | None = None         # TokenLogprob per generated token, when asked for


class Job:
    """One admitted request: waits for a slot, then generates in the pool's batch.

    Iterate `batches()` on the event loop for the text; `result` is filled when it ends. `close()` (idempotent)
    leaves the queue, or stops the generation after the piece being decoded; the slot returns to the pool as
    soon as the worker has let go of its session.
    """

    def __init__(self, pool: SlotPool, prompt_ids: list[int], params: SamplingParams):
        self.pool = pool
        self.prompt_ids = prompt_ids
        self.params = params
        self._seq: Sequence | None = None
        self._slot: Slot | None = None
        self._assigned = asyncio.Event()
        self._rejected = False          # dropped from the queue by a shutdown
        self._started = False           # handed to the batch (which then owns the slot)
        self._cancel = threading.Event()
        self.result = JobResult(prompt_tokens=len(prompt_ids))

    # -- called by the pool
    def _assign(self, slot: Slot) -> None:
        self._slot = slot
        self._assigned.set()

    def _reject(self) -> None:
        self._rejected = True
        self._assigned.set()

    # -- the event loop side
    async def batches(self) -> AsyncIterator[list[str]]:
        """The text pieces, in lists of those decoded since the last step: when the worker runs ahead of the
        network, the pieces that piled up leave in one write instead of one write each."""
        await self._assigned.wait()
        if self._cancel.is_set():
            return
        if self._rejected:
            raise ShuttingDownError("the server is shutting down")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self._started = True
        self.pool._running.add(self)
        try:
            self._seq = make_sequence(self._slot.session, self.prompt_ids, self.params,
                                      on_text=lambda text: self._post(loop, events, "piece", text),
                                      on_end=lambda seq: self._ended(loop, events, seq))
        except Exception:
            self.pool._finished(self)
            raise
        self.pool._worker.submit(self._seq)
        while True:
            batch: list[str] = []
            kind, value = await events.get()
            while kind == "piece":
                batch.append(value)
                if events.empty():
                    break
                kind, value = events.get_nowait()
            if batch:
                yield batch
            if kind == "error":
                raise value
            if kind == "done":
                return

    async def text(self) -> str:
        return "".join([piece async for batch in self.batches() for piece in batch])

    @property
    def logprobs(self) -> list | None:
        """The TokenLogprob of each token generated so far (None when not asked for, or before the start)."""
        return self._seq.decoding.logprobs if self._seq is not None else None

    @property
    def waiting(self) -> bool:
        return not self._assigned.is_set()

    def close(self) -> None:
        if self._cancel.is_set():
            return
        self._cancel.set()
        if not self._assigned.is_set():
            self.pool._leave_queue(self)
        elif self._slot is not None and not self._started:
            self.pool._release(self._slot)   # had a slot but never used it
        elif self._seq is not None:
            self._seq.cancel()               # leaves the batch at its next step

    # -- the batch thread side
    @staticmethod
    def _post(loop: asyncio.AbstractEventLoop, events: asyncio.Queue, kind: str, value=None) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))
        except RuntimeError:   # the loop is gone (hard shutdown): nobody is listening any more
            pass

    def _ended(self, loop: asyncio.AbstractEventLoop, events: asyncio.Queue, seq: Sequence) -> None:
        self.result.finish_reason = seq.finish_reason
        self.result.prompt_tokens = len(seq.prompt_ids)
        self.result.completion_tokens = len(seq.tokens)
        self.result.timings = seq.timings
        self.result.logprobs = seq.decoding.logprobs
        # The slot goes back before the request hears "done": once a client has its answer, the slot it
        # used is already free again.
        try:
            loop.call_soon_threadsafe(self.pool._finished, self)
        except RuntimeError:   # the loop is gone (hard shutdown)
            pass
        if seq.error is not None:
            self._post(loop, events, "error", seq.error)
        else:
            self._post(loop, events, "done")


class SlotPool:
    """`n` slots, each a Session with its own KV cache, decoded together in one batch, and a FIFO queue of at
    most `queue_size` waiting jobs."""

    def __init__(self, sessions: list[Session], queue_size: int,
                 on_finished: Callable[[Job], None] | None = None, prefill_chunk: int = DEFAULT_PREFILL_CHUNK):
        if not sessions:
            raise ValueError("a slot pool needs at least one session")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.slots = [Slot(i, s) for i, s in enumerate(sessions)]
        self.queue_size = queue_size
        self._free: list[Slot] = list(self.slots)
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._closing = False
        self._on_finished = on_finished
        self._worker = BatchWorker(sessions[0].model, len(sessions), prefill_chunk)

    @property
    def total(self) -> int:
        return len(self.slots)

    @property
    def idle(self) -> int:
        return len(self._free)

    @property
    def busy(self) -> int:
        return self.total - self.idle

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def batch_size(self) -> int:
        """Sequences in the running batch now."""
        return self._worker.batch_size

    @property
    def scheduler(self):
        return self._worker.scheduler

    def admit(self, prompt_ids: list[int], params: SamplingParams) -> Job:
        """Take a slot now or a place in the queue; raises QueueFullError / ShuttingDownError otherwise."""
        if self._closing:
            raise ShuttingDownError("the server is shutting down")
        job = Job(self, prompt_ids, params)
        if self._free and not self._queue:
            job._assign(self._take_best(prompt_ids))
        elif len(self._queue) < self.queue_size:
            self._queue.append(job)
        else:
            raise QueueFullError(f"all {self.total} slots are busy and {self.waiting} requests are waiting")
        return job

    def _take_best(self, prompt_ids: list[int]) -> Slot:
        # The free slot whose cache shares the longest prefix with the prompt skips the most prefill work
        # (a follow-up chat turn lands where its conversation already is).
        best = max(self._free, key=lambda slot: shared_prefix(slot.session.cached, prompt_ids))
        self._free.remove(best)
        return best

    def _leave_queue(self, job: Job) -> None:
        try:
            self._queue.remove(job)
        except ValueError:
            pass

    def _release(self, slot: Slot) -> None:
        if self._queue:
            self._queue.popleft()._assign(slot)   # FIFO: the oldest waiter gets the slot
        else:
            self._free.append(slot)

    def _finished(self, job: Job) -> None:
        if job not in self._running:
            return
        self._running.discard(job)
        self._release(job._slot)
        if self._on_finished is not None:
            self._on_finished(job)

    def begin_shutdown(self) -> None:
        """Take no new work and turn the waiting requests away; running generations go on."""
        self._closing = True
        while self._queue:
            self._queue.popleft()._reject()

    def cancel_all(self) -> None:
        """Shut down and stop every running generation (each stops after the token it is decoding)."""
        self.begin_shutdown()
        for job in list(self._running):
            job.close()

    @property
    def running(self) -> int:
        """Generations whose worker has not let go of its session yet."""
        return len(self._running)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop everything: cancel running generations and wait (up to `timeout`) for the workers to let go."""
        self.cancel_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._running and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._running:
            log.warning("%d generation(s) still running at shutdown", len(self._running))
        self._worker.stop()
