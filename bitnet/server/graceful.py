"""uvicorn's Server with signal handling for a server that is stopped on purpose."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from bitnet.server.slots import SlotPool

log = logging.getLogger("bitnet.server")


class GracefulServer(uvicorn.Server):
    """On SIGINT/SIGTERM: stop accepting, turn the waiting requests away at once, give the running ones the
    graceful-shutdown timeout to finish (then cancel them), and return normally so the process exits 0 — stock
    uvicorn re-raises the signal once it has shut down. A second SIGINT forces the exit."""

    def __init__(self, config: uvicorn.Config, pool: SlotPool):
        super().__init__(config)
        self.pool = pool

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():   # signals reach the main thread only
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first:
            log.info("%s: shutting down (running requests get %gs to finish)", signal.Signals(sig).name,
                     self.config.timeout_graceful_shutdown or 0)
            action = self.pool.begin_shutdown
        elif self.force_exit:
            # uvicorn skips the application's shutdown on a forced exit: stop the generations here, or their
            # worker threads would keep the process alive until they finish.
            log.info("%s again: cancelling running requests", signal.Signals(sig).name)
            action = self.pool.cancel_all
        else:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # A signal handler can interrupt the loop in the middle of its own work: schedule, don't touch.
        loop.call_soon_threadsafe(action)
