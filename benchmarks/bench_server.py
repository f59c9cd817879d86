"""Load test for `bitnet serve`: requests/s, tokens/s and errors at 1, 4 and 16 concurrent clients.

Starts a server on a free loopback port (or uses one already running, given with --url, loopback only), then for
each concurrency level runs closed-loop clients — each sends its next request as soon as the previous one is
answered — until --requests requests have been answered or --duration seconds have passed, whichever comes
first. Completion tokens are counted from each response's `usage`.

    python benchmarks/bench_server.py [--model M.gguf] [--clients 1,4,16] [--parallel 4] [--requests 64]
                                      [--duration 20] [--max-tokens 32] [--stream] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
TINYA = ROOT / "tests" / "data" / "reference" / "tinyA" / "tinyA-i2s.gguf"
PROMPTS = ["Once upon a time", "The weather today", "In the beginning", "A short note about",
           "Here is a list of", "The best way to", "She opened the door and", "Yesterday the committee"]


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_model() -> Path | None:
    sys.path.insert(0, str(ROOT))
    from bitnet import default_model_path

    path = default_model_path()
    return path if path.exists() else (TINYA if TINYA.exists() else None)


class Server:
    """`python -m bitnet.server` on a free loopback port (also used by soak_server.py).

    `model` None serves the embedded model; `extra_args` are more `bitnet serve` options; the server's log goes
    to `log_path` when given (kept), else to a temporary file removed by `stop()`."""

    def __init__(self, model: Path | None, parallel: int, queue_size: int, threads: int | None,
                 extra_args: Sequence[str] = (), log_path: Path | None = None):
        self.log_path = log_path or Path(tempfile.mkstemp(suffix=".log")[1])
        self._temporary_log = log_path is None
        args = [sys.executable, "-m", "bitnet.server", "--port", "0", "--parallel", str(parallel),
                "--queue-size", str(queue_size), *extra_args]
        if model is not None:
            args += ["--model", str(model)]
        if threads:
            args += ["--threads", str(threads)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        with open(self.log_path, "w") as log:   # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while True:
            match = re.search(r"on (http://127\.0\.0\.1:(\d+)) ", self.log_path.read_text())
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log_path.read_text()
                self.stop()
                raise SystemExit(f"server did not start:\n{text}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._temporary_log:
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode


async def _one(http: httpx.AsyncClient, body: dict, stream: bool) -> tuple[int, float | None]:
    """One request: (completion tokens, seconds to the first token when streaming)."""
    t0 = time.perf_counter()
    if not stream:
        response = await http.post("/v1/completions", json=body)
        response.raise_for_status()
        return response.json()["usage"]["completion_tokens"], None
    first = None
    tokens = 0
    done = False
    async with http.stream("POST", "/v1/completions", json={**body, "stream": True,
                                                             "stream_options": {"include_usage": True}}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif first is None and event["choices"] and event["choices"][0]["text"]:
                first = time.perf_counter() - t0
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    return tokens, first


async def run_level(url: str, clients: int, n_requests: int, duration: float, max_tokens: int, stream: bool,
                    headers: dict) -> dict:
    issued = 0
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = 0
    errors: list[str] = []
    t_end = time.perf_counter() + duration

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal issued, tokens
        while issued < n_requests and time.perf_counter() < t_end:
            k = issued
            issued += 1
            body = {"prompt": PROMPTS[k % len(PROMPTS)], "max_tokens": max_tokens, "seed": k, "temperature": 0.8}
            t0 = time.perf_counter()
            try:
                n, ttft = await _one(http, body, stream)
            except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t0)
            tokens += n
            if ttft is not None:
                ttfts.append(ttft)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits, headers=headers) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - t0
    out = {"clients": clients, "requests": len(latencies), "errors": len(errors), "seconds": round(wall, 3),
           "requests_per_s": round(len(latencies) / wall, 2), "tokens_per_s": round(tokens / wall, 1),
           "completion_tokens": tokens}
    if latencies:
        q = sorted(latencies)
        out["latency_p50_s"] = round(statistics.median(q), 4)
        out["latency_p95_s"] = round(q[min(len(q) - 1, int(0.95 * len(q)))], 4)
    if ttfts:
        out["ttft_p50_s"] = round(statistics.median(ttfts), 4)
    if errors:
        out["first_error"] = errors[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--api-key", default=os.environ.get("BITNET_API_KEY"))
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: the embedded model, else tinyA)")
    parser.add_argument("--parallel", type=int, default=4, help="server slots when starting one (default 4)")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="threads per forward pass (server default)")
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level, at most (default 64)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level, at most (default 20)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--stream", action="store_true", help="stream the answers (also reports time to first token)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    server = None
    if args.url:
        if not _is_loopback(args.url):
            raise SystemExit("--url must be a loopback address: this load test never leaves the machine")
        url = args.url.rstrip("/")
    else:
        model = args.model or _default_model()
        if model is None:
            raise SystemExit("no model: pass --model (the embedded model is not built and tinyA is absent)")
        server = Server(model, args.parallel, args.queue_size, args.threads)
        url = server.url
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    results = []
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            health = http.get("/health").json()
            print(f"server {url}: model {health['model']}, {health['slots_total']} slot(s), queue "
                  f"{health['queue_size']}; max_tokens {args.max_tokens}, {'streamed' if args.stream else 'whole'} "
                  f"answers, at most {args.requests} requests / {args.duration:g} s per level")
            http.post("/v1/completions", json={"prompt": "warm up", "max_tokens": 4})
        print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'tok/s':>8} {'p50 s':>8} {'p95 s':>8}"
              + (f" {'ttft s':>8}" if args.stream else ""))
        for clients in levels:
            r = asyncio.run(run_level(url, clients, args.requests, args.duration, args.max_tokens, args.stream,
                                      headers))
            results.append(r)
            line = (f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['requests_per_s']:>8.2f} "
                    f"{r['tokens_per_s']:>8.1f} {r.get('latency_p50_s', 0):>8.3f} {r.get('latency_p95_s', 0):>8.3f}")
            if args.stream:
                line += f" {r.get('ttft_p50_s', 0):>8.3f}"
            print(line + (f"   first error: {r['first_error']}" if r["errors"] else ""))
    finally:
        if server is not None:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
