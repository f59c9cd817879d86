"""`python -m bitnet.server` as a subprocess on a free loopback port, for the server tests."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
# Server and reference share this context: long enough that a "long" request takes a good fraction of a second
# even with a small, fast model (the embedded model was trained at 256 positions; more is fine for these tests).
CTX = 2048


class ServerProcess:
    """`python -m bitnet.server` on port 0 (the kernel picks a free port; the server logs which)."""

    def __init__(self, model_path: Path, log_path: Path, *args: str):
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        env.pop("BITNET_SEED", None)
        with open(log_path, "w") as log:   # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bitnet.server", "--model", str(model_path), "--port", "0", "--threads",
                 "1", "--ctx-size", str(CTX), *args],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            match = re.search(r"on http://127\.0\.0\.1:(\d+) ", self.log())
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the server did not start:\n{self.log()}")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self) -> dict:
        return self.http.get("/health").json()

    def wait_health(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if predicate(health) or time.monotonic() > deadline:
                return health
            time.sleep(0.01)

    def metric(self, name: str) -> float:
        text = self.http.get("/metrics").text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} missing from /metrics"
        return float(match.group(1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "http"):
            self.http.close()
        return self.proc.returncode
