"""Soak `bitnet serve`: many concurrent clients, mixed and hostile requests, dropped streams, slow clients.

    python tools/hardening/soak_server.py [--clients 32] [--requests 20] [--parallel 4] [--model FILE] [--json OUT]

The server runs as a subprocess on a free loopback port. Each client thread sends its requests back to back:
text and chat completions, streamed or not (a quarter of the streams are dropped after their first events),
prompts longer than the context, and malformed ones (bad JSON, wrong types, unknown roles, bodies over the
size limit). Every answer must be what its kind calls for: 200 for good requests (or 503 when the queue is
full), 400 `context_length_exceeded` for the long prompts, 400/413 for the malformed; anything else (another
status, a stream without `[DONE]`, a connection error) counts as an unexpected error.

Then the slow clients: a body sent one byte a second must get 408 after --body-timeout without taking a slot,
and a stream that is never read (a small receive buffer, so the server's writes stall) must not keep its slot,
and is closed after --send-timeout.

Afterwards every slot must be idle with an empty queue, /health must answer, and the server's RSS must not
have grown by more than --rss-limit-mb since the warm-up. Prints one JSON report; exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_server  # noqa: E402  (benchmarks/bench_server.py: its Server starts and stops the server process)

WORDS = "the cat sat on a mat and then it ran to the sea where a big red boat was waiting".split()
MALFORMED = {
    "bad_json": (b'{"prompt": "hello", ', {400}),
    "wrong_type": (json.dumps({"prompt": "hi", "max_tokens": "many"}).encode(), {400}),
    "unknown_role": (json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(), {400}),
    "not_an_object": (b"[1, 2, 3]", {400}),
}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class SoakServer(bench_server.Server):
    """bench_server's server process with the soak's options, its /health and a wait for idle slots."""

    def __init__(self, args: argparse.Namespace, log_path: Path):
        options = ["--ctx-size", str(args.ctx), "--max-body-size", str(args.max_body),
                   "--body-timeout", str(args.body_timeout), "--send-timeout", str(args.send_timeout)]
        super().__init__(args.model, args.parallel, args.queue_size, 1, options, log_path)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def health(self) -> dict:
        return self.http.get("/health").json()

    def wait_idle(self, timeout: float) -> tuple[bool, float, dict]:
        start = time.monotonic()
        while True:
            health = self.health()
            if health["slots_idle"] == health["slots_total"] and health["queue_depth"] == 0:
                return True, time.monotonic() - start, health
            if time.monotonic() - start > timeout:
                return False, time.monotonic() - start, health
            time.sleep(0.01)

    def stop(self) -> int | None:
        self.http.close()
        return super().stop()


def _prompt(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def one_request(http: httpx.Client, rng: random.Random, args: argparse.Namespace) -> dict:
    """Send one request of a random kind; returns {kind, status, seconds, unexpected}."""
    roll = rng.random()
    max_tokens = rng.randint(4, args.max_tokens)
    chat = rng.random() < 0.5
    route = "/v1/chat/completions" if chat else "/v1/completions"
    prompt = _prompt(rng, rng.randint(2, 12))
    body: dict = ({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
    body.update(max_tokens=max_tokens, temperature=rng.choice([0, 0.8]), seed=rng.randint(0, 9999))
    start = time.monotonic()
    if roll < 0.40:
        kind = "complete"
        r = http.post(route, json=body)
        ok = r.status_code == 200 and "choices" in r.json() or r.status_code == 503
        return {"kind": kind, "status": r.status_code, "seconds": time.monotonic() - start, "unexpected": not ok}
    if roll < 0.80:
        drop = rng.random() < 0.25
        kind = "stream_dropped" if drop else "stream"
        body["stream"] = True
        with http.stream("POST", route, json=body) as r:
            if r.status_code != 200:
                r.read()
                return {"kind": kind, "status": r.status_code, "seconds": time.monotonic() - start,
                        "unexpected": r.status_code != 503}
            events, done = 0, False
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events += 1
                    done = line == "data: [DONE]"
                    if drop and events >= 2:
                        break          # leaving the with-block closes the connection mid-stream
        ok = drop or done
        return {"kind": kind, "status": 200, "seconds": time.monotonic() - start, "unexpected": not ok}
    if roll < 0.88:
        kind = "over_context"
        body.pop("messages", None)
        body["prompt"] = _prompt(rng, args.ctx * 2)
        r = http.post("/v1/completions", json=body)
        ok = r.status_code == 400 and r.json()["error"].get("code") == "context_length_exceeded"
        return {"kind": kind, "status": r.status_code, "seconds": time.monotonic() - start, "unexpected": not ok}
    if roll < 0.92:
        kind = "too_large"
        r = http.post("/v1/completions", content=b'{"prompt": "' + b"x" * (args.max_body + 10) + b'"}',
                      headers={"Content-Type": "application/json"})
        return {"kind": kind, "status": r.status_code, "seconds": time.monotonic() - start,
                "unexpected": r.status_code != 413}
    name = rng.choice(sorted(MALFORMED))
    raw, allowed = MALFORMED[name]
    r = http.post(route if name != "unknown_role" else "/v1/chat/completions", content=raw,
                  headers={"Content-Type": "application/json"})
    return {"kind": "malformed", "status": r.status_code, "seconds": time.monotonic() - start,
            "unexpected": r.status_code not in allowed}


def client(index: int, server: SoakServer, args: argparse.Namespace, results: list, lock: threading.Lock) -> None:
    rng = random.Random(args.seed * 1000 + index)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(args.requests):
            try:
                outcome = one_request(http, rng, args)
            except httpx.HTTPError as exc:
                outcome = {"kind": "transport", "status": None, "seconds": 0.0, "unexpected": True,
                           "error": f"{type(exc).__name__}: {exc}"}
            with lock:
                results.append(outcome)


def slow_body(server: SoakServer, args: argparse.Namespace) -> dict:
    """Headers, then a 40-byte body one byte a second: the answer must be 408 after the body timeout, and no
    slot is taken meanwhile."""
    body = json.dumps({"prompt": "the cat", "max_tokens": 2}).encode()
    body += b" " * max(0, 40 - len(body))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    start = time.monotonic()
    sock.setblocking(False)
    answer, idle_meanwhile, sent = b"", True, 0
    while time.monotonic() - start < args.body_timeout + 10 and b"\r\n\r\n" not in answer:
        if sent < len(body):
            try:
                sock.send(body[sent:sent + 1])
                sent += 1
            except OSError:
                break
        health = server.health()
        idle_meanwhile &= health["slots_idle"] == health["slots_total"]
        time.sleep(1.0)
        try:
            answer += sock.recv(65536)
        except BlockingIOError:
            pass
        except OSError:
            break
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return {"status": status, "seconds": round(time.monotonic() - start, 1), "bytes_sent": sent,
            "slots_idle_meanwhile": idle_meanwhile, "ok": status == 408 and idle_meanwhile}


def long_request(args: argparse.Namespace) -> dict:
    """A streamed completion that runs to max_tokens (most of the context) without an end-of-turn token: the
    seed is found by generating in this process with the same model."""
    import bitnet

    model = bitnet.load(args.model, n_threads=1, n_ctx=args.ctx)
    prompt = "The long story begins"
    max_tokens = args.ctx - len(model.tokenize(prompt)) - 1
    for seed in range(1, 17):
        if model.generate(prompt, max_tokens=max_tokens, seed=seed, temperature=1.0).finish_reason == "length":
            return {"prompt": prompt, "max_tokens": max_tokens, "seed": seed, "temperature": 1.0, "stream": True}
    raise RuntimeError("no seed makes a generation run to max_tokens")


def unread_stream(server: SoakServer, args: argparse.Namespace) -> dict:
    """A long streamed completion on a socket with a tiny receive buffer that is never read: the slot must be
    free again within the generation's time plus the send timeout, and the server must close the stream."""
    body = json.dumps(long_request(args)).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    start = time.monotonic()
    time.sleep(0.2)
    freed, freed_after, _ = server.wait_idle(timeout=60)
    marker = "closing a stream whose client took no data"
    before = server.log_path.read_text().count(marker)
    deadline = time.monotonic() + args.send_timeout + 10
    closed_by = None
    while time.monotonic() < deadline and closed_by is None:
        if server.log_path.read_text().count(marker) > before:
            closed_by = "send timeout"            # the writes stalled and the server gave up on them
        elif _peer_closed(sock):
            closed_by = "server after the end"    # the whole stream fit in the socket buffers
        time.sleep(0.1)
    sock.close()
    return {"slot_freed": freed, "slot_freed_after_s": round(freed_after + 0.2, 2), "closed_by": closed_by,
            "closed_after_s": round(time.monotonic() - start, 1), "ok": freed and closed_by is not None}


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (drains what is buffered to find out)."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def soak(args: argparse.Namespace) -> dict:
    log_path = args.log or Path("soak-server.log")
    server = SoakServer(args, log_path)
    try:
        warm = random.Random(0)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(2 * args.parallel):
                one_request(http, warm, args)
        rss_before = rss_mb(server.proc.pid)
        results: list[dict] = []
        lock = threading.Lock()
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(i, server, args, results, lock))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        idle, idle_after, health = server.wait_idle(timeout=10)
        rss_after = rss_mb(server.proc.pid)
        slow = slow_body(server, args) if args.slow_clients else None
        unread = unread_stream(server, args) if args.slow_clients else None
        idle_end, _, health_end = server.wait_idle(timeout=10)
        rss_end = rss_mb(server.proc.pid)
    finally:
        exit_code = server.stop()

    statuses = Counter(str(r["status"]) for r in results)
    kinds = Counter(r["kind"] for r in results)
    latencies = {kind: {"p50_ms": percentile([r["seconds"] for r in results if r["kind"] == kind], 0.5),
                        "p99_ms": percentile([r["seconds"] for r in results if r["kind"] == kind], 0.99)}
                 for kind in sorted(kinds)}
    unexpected = [r for r in results if r["unexpected"]]
    allowed_statuses = {"200", "400", "413", "429", "503"}
    checks = {
        "all_requests_answered": len(results) == args.clients * args.requests,
        "no_unexpected_answers": not unexpected,
        "only_intended_statuses": set(statuses) <= allowed_statuses,
        "slots_free_after": idle and idle_end,
        "health_answers": health.get("status") == "ok" and health_end.get("status") == "ok",
        "rss_growth_within_limit": rss_end - rss_before <= args.rss_limit_mb,
        "slow_body_408_without_a_slot": slow is None or slow["ok"],
        "unread_stream_released": unread is None or unread["ok"],
        "server_exit_0": exit_code == 0,
    }
    return {
        "clients": args.clients, "requests_per_client": args.requests, "parallel": args.parallel,
        "requests": len(results), "wall_s": round(wall, 1),
        "requests_per_s": round(len(results) / wall, 1) if wall else None,
        "by_kind": dict(kinds), "statuses": dict(statuses), "latency": latencies,
        "unexpected": unexpected[:20], "unexpected_count": len(unexpected),
        "slots_idle_after_s": round(idle_after, 2),
        "rss_mb": {"after_warmup": round(rss_before, 1), "after_soak": round(rss_after, 1),
                   "at_end": round(rss_end, 1), "growth": round(rss_end - rss_before, 1)},
        "slow_body": slow, "unread_stream": unread, "checks": checks, "ok": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--parallel", type=int, default=4, help="server slots")
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=2048, help="server context per slot")
    parser.add_argument("--max-tokens", type=int, default=48, help="largest max_tokens a request asks for")
    parser.add_argument("--max-body", type=int, default=65536, help="server --max-body-size")
    parser.add_argument("--body-timeout", type=float, default=3.0)
    parser.add_argument("--send-timeout", type=float, default=2.0)
    parser.add_argument("--rss-limit-mb", type=float, default=50.0)
    parser.add_argument("--no-slow-clients", dest="slow_clients", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, default=None, help="server log file (default: ./soak-server.log)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    report = soak(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
