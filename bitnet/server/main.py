"""`bitnet serve` / `python -m bitnet.server`: options, model loading, and running uvicorn with a clean exit.

Only the standard library is imported at module level, so that the `bitnet` command can declare the `serve`
options (`add_arguments`) without the server extra installed; `run` says what to install when it is missing.
"""
from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from bitnet.argtypes import (
    add_cache_type_option,
    add_device_option,
    add_lm_head_option,
    device_from_args,
    int_at_least,
)
from bitnet.settings import api_key as env_api_key

log = logging.getLogger("bitnet.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
API_KEY_ENV = "BITNET_API_KEY"


def _port(text: str) -> int:
    value = int_at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `bitnet serve` on `parser`."""
    parser.add_argument("-m", "--model", metavar="PATH", default=None,
                        help="GGUF model to serve (default: the embedded model)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"TCP port (default: {DEFAULT_PORT}; 0 picks a free one, printed at start)")
    parser.add_argument("--api-key", metavar="KEY", default=None,
                        help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${API_KEY_ENV} if set, "
                             "else no key); /health and /metrics stay open")
    parser.add_argument("-c", "--ctx-size", type=int_at_least(2), default=None, metavar="N",
                        help="context length of each slot in tokens (default: the model's, at most 4096)")
    parser.add_argument("-np", "--parallel", type=int_at_least(1), default=1, metavar="N",
                        help="sequences decoded together in one continuous batch (one read of the weights per "
                             "step serves all of them), each with its own KV cache of --ctx-size tokens "
                             "(memory grows with N) (default: 1)")
    parser.add_argument("--prefill-chunk", type=int_at_least(1), default=32, metavar="N",
                        help="prompt tokens a new request adds to each step while others decode: larger "
                             "prefills faster, smaller delays the running streams less (default: 32)")
    add_lm_head_option(parser)
    add_cache_type_option(parser)
    add_device_option(parser)
    parser.add_argument("--queue-size", type=int_at_least(0), default=16, metavar="Q",
                        help="requests that may wait for a busy slot; beyond them the answer is 503 (default: 16)")
    parser.add_argument("-t", "--threads", type=int_at_least(1), default=None, metavar="T",
                        help="threads of the batch's forward pass (default: all cores)")
    parser.add_argument("--alias", metavar="NAME", default=None,
                        help="model id reported by /v1/models and in responses (default: the file's name)")
    parser.add_argument("--max-body-size", type=int_at_least(1024), default=1 << 20, metavar="BYTES",
                        help="largest request body accepted; larger ones get 413 (default: 1048576)")
    parser.add_argument("--shutdown-timeout", type=_seconds, default=10.0, metavar="S",
                        help="on SIGINT/SIGTERM, how long running requests may take to finish before they are "
                             "cancelled (default: 10)")
    parser.add_argument("--body-timeout", type=_positive_seconds, default=30.0, metavar="S",
                        help="time a client has to send its request body; slower ones get 408 (default: 30)")
    parser.add_argument("--send-timeout", type=_positive_seconds, default=30.0, metavar="S",
                        help="a stream whose client takes no data for this long is closed (default: 30)")
    ray = parser.add_argument_group("Ray Serve (beyond one machine; extra: pip install 'bitnet-engine[ray]')")
    ray.add_argument("--ray", action="store_true",
                     help="serve through a Ray Serve deployment of --replicas copies of this server")
    ray.add_argument("--replicas", type=int_at_least(1), default=1, metavar="K",
                     help="replicas, each holding the model (default: 1)")
    ray.add_argument("--max-replicas", type=int_at_least(1), default=None, metavar="M",
                     help="autoscale between --replicas and M replicas on requests in flight (default: fixed)")
    ray.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="Ray cluster to join ('auto' or HOST:PORT; default: start a local one)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="server log level; 'info' logs one line per request (default: info)")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it
    # every response on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _setup_logging(level: str) -> None:
    # The server's own handler (timestamps, one line per request) whatever the caller configured for the root.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
        uv = logging.getLogger("uvicorn")
        uv.addHandler(handler)
        uv.propagate = False
    log.setLevel(level.upper())
    logging.getLogger("uvicorn").setLevel("DEBUG" if level == "debug" else "WARNING")


def run(args: argparse.Namespace) -> int:
    """Load the model and serve until SIGINT/SIGTERM; returns the exit status (0 after a clean shutdown)."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("bitnet serve needs the server extra: pip install 'bitnet-engine[server]'") from None
    import bitnet
    from bitnet.server.app import ServerSettings, create_app
    from bitnet.server.graceful import GracefulServer

    _setup_logging(args.log_level)
    api_key = args.api_key if args.api_key is not None else env_api_key()
    if getattr(args, "ray", False):
        try:
            from bitnet.server import ray_serve
        except ImportError as exc:
            raise ImportError(f"bitnet serve --ray needs the ray extra: pip install 'bitnet-engine[ray]' ({exc})"
                              ) from None
        return ray_serve.run(args, api_key)
    sock = _bind(args.host, args.port)   # before loading: a busy port fails at once, not after a long load
    try:
        model = bitnet.load(args.model, n_threads=args.threads, n_ctx=args.ctx_size, lm_head=args.lm_head,
                            device=device_from_args(args), cache_type=args.cache_type)
        model_id = args.alias or Path(model.path).stem
        settings = ServerSettings(model_id=model_id, api_key=api_key, parallel=args.parallel,
                                  queue_size=args.queue_size, max_body_bytes=args.max_body_size,
                                  shutdown_timeout=args.shutdown_timeout, body_timeout=args.body_timeout,
                                  send_timeout=args.send_timeout, prefill_chunk=args.prefill_chunk)
        app = create_app(model, settings)
        pool = app.state.server.pool
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none",
                                timeout_graceful_shutdown=args.shutdown_timeout)
        host, port = sock.getsockname()[:2]
        log.info("serving %s on http://%s:%d (batch of %d slot(s) of %d tokens, queue %d, %d thread(s)%s)", model_id,
                 f"[{host}]" if ":" in host else host, port, args.parallel, model.n_ctx, args.queue_size,
                 model.n_threads, ", API key required" if api_key else "")
        if not api_key and host not in ("127.0.0.1", "::1"):
            log.warning("listening on %s without an API key: anyone who can reach it can use the model", host)
        GracefulServer(config, pool).run(sockets=[sock])
        if not pool.running:   # never unmap the weights under a forward pass that is still running
            model.close()
    finally:
        sock.close()
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bitnet.server`."""
    parser = argparse.ArgumentParser(prog="python -m bitnet.server",
                                     description="OpenAI-compatible HTTP server for BitNet b1.58 models.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from bitnet.errors import BitNetError

    try:
        return run(args)
    except (BitNetError, OSError, ValueError, ImportError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
